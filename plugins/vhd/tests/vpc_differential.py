#!/usr/bin/env python3
"""Differential check: the VHD guest half's report vs `qemu-img info --output=json` (7.2 and 10.0).

usage: vpc_differential.py HOSTED_TOOL
"""
import json
import os
import subprocess
import sys
import tempfile

QEMUS = {'7.2': ('/usr/bin/qemu-img', '/usr/bin/qemu-io'),
         '10.0': ('/opt/qemu-img-10/root/usr/bin/qemu-img', '/opt/qemu-img-10/root/usr/bin/qemu-io')}
FIELDS = ('virtual-size', 'cluster-size', 'encrypted', 'dirty-flag', 'backing-filename-format')
FORMAT = 'vpc'


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def compare(tool, path, label, results):
    ours = json.loads(run([tool, path]))
    for ver, (qemu_img, _) in QEMUS.items():
        qi = json.loads(run([qemu_img, 'info', '-f', FORMAT, '--output=json', path]))
        problems = []
        if ours.get('status') != 0 or 'info' not in ours:
            problems.append(f'status {ours.get("status")} {ours.get("decode-error", "")}')
        else:
            info = ours['info']
            if not ours.get('probe'):
                problems.append('probe false')
            if info['format'] != qi['format']:
                problems.append(f'format {info["format"]} != {qi["format"]}')
            for k in FIELDS:
                if info.get(k) != qi.get(k):
                    problems.append(f'{k}: ours {info.get(k)!r} qemu {qi.get(k)!r}')
            backing = [f['name'] for f in info['files'] if f['role'] == 'backing']
            want = [qi['backing-filename']] if 'backing-filename' in qi else []
            if backing != want:
                problems.append(f'backing: ours {backing} qemu {want}')
            if info.get('format-specific') != qi.get('format-specific'):
                problems.append(f'format-specific: ours {info.get("format-specific")} qemu {qi.get("format-specific")}')
        results.append((f'{label} [qemu {ver}]', problems))


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    tool = sys.argv[1]
    for ver, (qemu_img, qemu_io) in QEMUS.items():
        if not (os.access(qemu_img, os.X_OK) and os.access(qemu_io, os.X_OK)):
            print(f'SKIP: qemu {ver} oracle missing ({qemu_img}); differential check NOT run')
            return 77
    qemu_img, qemu_io = QEMUS['7.2']
    results = []
    sizes = ['1M', '10M', '100M', '127M', '1G', '2049M', '12345678', '130G', '2040G']
    with tempfile.TemporaryDirectory() as d:
        n = 0
        for subformat in ('dynamic', 'fixed'):
            for force in ('off', 'on'):
                for size in sizes:
                    if subformat == 'fixed' and size in ('2040G',):
                        continue
                    n += 1
                    path = os.path.join(d, f'img{n}.vhd')
                    run([qemu_img, 'create', '-q', '-f', FORMAT, '-o',
                         f'subformat={subformat},force_size={force}', path, size])
                    compare(tool, path, f'{subformat} force_size={force} {size}', results)
        for subformat in ('dynamic', 'fixed'):
            n += 1
            path = os.path.join(d, f'img{n}.vhd')
            run([qemu_img, 'create', '-q', '-f', FORMAT, '-o', f'subformat={subformat}', path, '64M'])
            run([qemu_io, '-f', FORMAT, '-c', 'write -P 0x55 0 3M', '-c', 'write -P 0xaa 40M 1M', path])
            compare(tool, path, f'{subformat} 64M with data', results)
    failed = 0
    for label, problems in results:
        if problems:
            failed += 1
            print(f'FAIL {label}: ' + '; '.join(problems))
    print(f'{len(results) - failed} passed, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
