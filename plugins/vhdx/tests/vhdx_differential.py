#!/usr/bin/env python3
"""Differential check: the VHDX guest half's report vs `qemu-img info --output=json` (7.2 and 10.0).

usage: vhdx_differential.py HOSTED_TOOL
"""
import json
import os
import subprocess
import sys
import tempfile

QEMUS = {'7.2': ('/usr/bin/qemu-img', '/usr/bin/qemu-io'),
         '10.0': ('/opt/qemu-img-10/root/usr/bin/qemu-img', '/opt/qemu-img-10/root/usr/bin/qemu-io')}
FIELDS = ('virtual-size', 'cluster-size', 'encrypted', 'dirty-flag', 'backing-filename-format')
FORMAT = 'vhdx'


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
    with tempfile.TemporaryDirectory() as d:
        n = 0
        cases = []
        for subformat in ('dynamic', 'fixed'):
            for bs in ('0', '1M', '8M', '32M', '256M'):
                for size in ('1M', '100M', '1G', '12345678', '2T'):
                    if subformat == 'fixed' and size == '2T':
                        continue
                    cases.append((subformat, bs, '1M', size, False))
        for log in ('1M', '4M', '32M'):
            cases.append(('dynamic', '0', log, '1G', True))
        cases.append(('dynamic', '1M', '1M', '64G', True))
        cases.append(('fixed', '8M', '1M', '64M', True))
        for subformat, bs, log, size, data in cases:
            n += 1
            path = os.path.join(d, f'img{n}.vhdx')
            opts = f'subformat={subformat},block_size={bs},log_size={log}'
            run([qemu_img, 'create', '-q', '-f', FORMAT, '-o', opts, path, size])
            if data:
                run([qemu_io, '-f', FORMAT, '-c', 'write -P 0x55 0 3M', '-c', 'write -P 0xaa 20M 1M', path])
            compare(tool, path, f'{opts} {size}{" with data" if data else ""}', results)
            os.unlink(path)
    failed = 0
    for label, problems in results:
        if problems:
            failed += 1
            print(f'FAIL {label}: ' + '; '.join(problems))
    print(f'{len(results) - failed} passed, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
