#!/usr/bin/env python3
"""Differential check for the raw guest half against `qemu-img info -f raw --output=json`
(7.2 and 10.0), plus the probe decision (MBR/GPT only) and detect_other names.

usage: raw_differential.py HOSTED_TOOL
"""
import json
import os
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests", "formats"))
from oracle_retry import run_fixture  # noqa: E402

QEMUS = {'7.2': '/usr/bin/qemu-img', '10.0': '/opt/qemu-img-10/root/usr/bin/qemu-img'}
FIELDS = ('virtual-size', 'cluster-size', 'encrypted', 'dirty-flag', 'backing-filename-format')


def run(cmd):
    return run_fixture(cmd, check=True).stdout


def mbr(size):
    d = bytearray(size)
    d[446] = 0x80
    d[450] = 0x83
    struct.pack_into('<II', d, 454, 2048, max(1, size // 512 - 2048))
    d[510:512] = b'\x55\xaa'
    return d


def gpt(size, sector):
    d = bytearray(size)
    d[450] = 0xEE
    struct.pack_into('<II', d, 454, 1, size // sector - 1)
    d[510:512] = b'\x55\xaa'
    d[sector:sector + 8] = b'EFI PART'
    struct.pack_into('<II', d, sector + 8, 0x10000, 92)
    return d


def iso(size):
    d = bytearray(size)
    d[0x8000:0x8006] = b'\x01CD001'
    return d


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    tool = sys.argv[1]
    for ver, qemu_img in QEMUS.items():
        if not os.access(qemu_img, os.X_OK):
            print(f'SKIP: qemu {ver} oracle missing ({qemu_img}); differential check NOT run')
            return 77
    qemu_img = QEMUS['7.2']
    results = []
    with tempfile.TemporaryDirectory() as d:
        # (name, bytes or qemu-img create args, expected probe, expected detect_other)
        cases = [
            ('mbr-1M', mbr(1 << 20), True, None),
            ('mbr-odd', mbr(12345 * 512 + 7), True, None),
            ('gpt512', gpt(4 << 20, 512), True, None),
            ('gpt4096', gpt(4 << 20, 4096), True, None),
            ('unpartitioned', bytearray(1 << 20), False, None),
            ('random', bytearray(os.urandom(65536)), False, None),
            ('iso', iso(1 << 20), False, 'iso'),
            ('empty', bytearray(), False, None),
        ]
        made = [('vdi', ['-f', 'vdi'], 'vdi'), ('qed', ['-f', 'qed'], 'qed'), ('qcow', ['-f', 'qcow'], 'qcow'),
                ('parallels', ['-f', 'parallels'], 'parallels'),
                ('luks', ['-f', 'luks', '--object', 'secret,id=s0,data=pw', '-o', 'key-secret=s0,iter-time=10'], 'luks')]
        for name, args, other in made:
            path = os.path.join(d, name)
            run([qemu_img, 'create', '-q'] + args + [path, '1M'])
            cases.append((name, path, False, other))
        for name, content, want_probe, want_other in cases:
            if isinstance(content, str):
                path = content
            else:
                path = os.path.join(d, name)
                with open(path, 'wb') as f:
                    f.write(content)
            ours = json.loads(run([tool, path]))
            detected = json.loads(run([tool, '--detect', path]))
            for ver, q in QEMUS.items():
                qi = json.loads(run([q, 'info', '-f', 'raw', '--output=json', path]))
                problems = []
                info = ours.get('info')
                if ours.get('status') != 0 or info is None:
                    problems.append(f'status {ours.get("status")}')
                else:
                    if info['format'] != qi['format']:
                        problems.append(f'format {info["format"]} != {qi["format"]}')
                    for k in FIELDS:
                        if info.get(k) != qi.get(k):
                            problems.append(f'{k}: ours {info.get(k)!r} qemu {qi.get(k)!r}')
                    if info.get('format-specific') != qi.get('format-specific'):
                        problems.append('format-specific differs')
                    if info['files'] or 'backing-filename' in qi:
                        problems.append('unexpected backing')
                if ours.get('probe') != want_probe:
                    problems.append(f'probe {ours.get("probe")} expected {want_probe}')
                if detected.get('other') != want_other:
                    problems.append(f'detect_other {detected.get("other")} expected {want_other}')
                results.append((f'{name} [qemu {ver}]', problems))
    failed = 0
    for label, problems in results:
        if problems:
            failed += 1
            print(f'FAIL {label}: ' + '; '.join(problems))
    print(f'{len(results) - failed} passed, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
