#!/usr/bin/env python3
"""Differential check: the VHDX guest half's report vs `qemu-img info --output=json` (7.2 and 10.0).

usage: vhdx_differential.py HOSTED_TOOL
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, compare_report, report, run, start  # noqa: E402

FORMAT = 'vhdx'


def compare(tool, path, label, results):
    compare_report(json.loads(run([tool, path])), FORMAT, path, label, results)


def main():
    tools, status = start(__doc__, 1)
    if tools is None:
        return status
    tool = tools[0]
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
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
