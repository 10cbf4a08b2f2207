#!/usr/bin/env python3
"""Differential check: the VHD guest half's report vs `qemu-img info --output=json` (7.2 and 10.0).

usage: vpc_differential.py HOSTED_TOOL
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, compare_report, report, run, start  # noqa: E402

FORMAT = 'vpc'


def compare(tool, path, label, results):
    compare_report(json.loads(run([tool, path])), FORMAT, path, label, results)


def main():
    tools, status = start(__doc__, 1)
    if tools is None:
        return status
    tool = tools[0]
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
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
