#!/usr/bin/env python3
"""Differential check: the VMDK guest half's report vs `qemu-img info --output=json` (7.2 and 10.0).

Runs the hosted tool twice like the host does: the first pass names the extent files (NeedFiles),
the second gets them (resolved against the image's directory). Extent "filename"s are compared
after the substitution the host makes: "" is the image's own path, other names are joined to the
image's directory unless absolute (qemu's path_combine).

usage: vmdk_differential.py HOSTED_TOOL
"""
import json
import os
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, compare_report, report, run, start  # noqa: E402

NEED_FILES = 7  # guest::Status::NeedFiles


def resolve(image, name):
    if name == '':
        return image
    return name if os.path.isabs(name) else os.path.join(os.path.dirname(image), name)


def ours(tool, path):
    first = json.loads(run([tool, path]))
    if first.get('status') != NEED_FILES:
        return first
    extents = [f['name'] for f in first['info']['files'] if f['role'] == 'extent']
    return json.loads(run([tool, path] + [resolve(path, e) for e in extents]))


def compare(tool, path, label, results):
    def resolve_extents(spec):
        for e in spec['data'].get('extents', []):
            e['filename'] = resolve(path, e['filename'])
    compare_report(ours(tool, path), 'vmdk', path, label, results, resolve_extents)

def main():
    tools, status = start(__doc__, 1)
    if tools is None:
        return status
    tool = tools[0]
    qemu_img, qemu_io = QEMUS['7.2']
    results = []
    subformats = ('monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat',
                  'streamOptimized')
    with tempfile.TemporaryDirectory() as d:
        n = 0

        def make(opts, size, label, data=False):
            nonlocal n
            n += 1
            sub = os.path.join(d, f'case{n}')
            os.mkdir(sub)
            path = os.path.join(sub, 'disk.vmdk')
            run([qemu_img, 'create', '-q', '-f', 'vmdk', '-o', opts, path, size])
            if data:
                run([qemu_io, '-f', 'vmdk', '-c', 'write -P 0x55 0 3M', '-c', 'write -P 0xaa 40M 1M', path])
            compare(tool, path, f'{opts} {size}{" with data" if data else ""}', results)
            return path

        for sub in subformats:
            for size in ('1M', '100M', '3G', '5G'):
                make(f'subformat={sub}', size, sub)
        for adapter in ('ide', 'lsilogic', 'buslogic', 'legacyESX'):
            make(f'subformat=monolithicSparse,adapter_type={adapter}', '64M', adapter)
        make('subformat=monolithicSparse,compat6=on', '64M', 'compat6')
        make('subformat=twoGbMaxExtentFlat,hwversion=7', '64M', 'hwversion')
        make('subformat=monolithicSparse,zeroed_grain=on', '64M', 'zeroed')
        for sub in ('monolithicSparse', 'twoGbMaxExtentSparse', 'monolithicFlat'):
            make(f'subformat={sub}', '64M', sub, data=True)
        base = make('subformat=monolithicSparse', '64M', 'base')
        over = os.path.join(os.path.dirname(base), 'over.vmdk')
        run([qemu_img, 'create', '-q', '-f', 'vmdk', '-b', 'disk.vmdk', '-F', 'vmdk', over])
        compare(tool, over, 'with backing', results)
        src = os.path.join(d, 'src.raw')
        run([qemu_img, 'create', '-q', '-f', 'raw', src, '20M'])
        run([qemu_io, '-f', 'raw', '-c', 'write -P 0x11 0 5M', src])
        so = os.path.join(d, 'converted.vmdk')
        run([qemu_img, 'convert', '-O', 'vmdk', '-o', 'subformat=streamOptimized', src, so])
        compare(tool, so, 'streamOptimized converted with data', results)
        # Hand-built: a KDMV header with capacity 0 pointing at a descriptor (qemu reads it as a
        # descriptor file, with its CID window still at 0x200), and RDONLY/NOACCESS lines (skipped).
        hand = os.path.join(d, 'hand')
        os.mkdir(hand)
        header = bytearray(64 * 1024)
        header[0:4] = b'KDMV'
        struct.pack_into('<IIQQQQI', header, 4, 1, 3, 0, 128, 1, 20, 512)
        desc = (b'# Disk DescriptorFile\nversion=1\nCID=abcdef01\nparentCID=ffffffff\n'
                b'createType="monolithicFlat"\nRW 2048 FLAT "e-flat.vmdk" 0\n')
        header[512:512 + len(desc)] = desc
        with open(os.path.join(hand, 'e.vmdk'), 'wb') as f:
            f.write(header)
        with open(os.path.join(hand, 'e-flat.vmdk'), 'wb') as f:
            f.write(bytes(2048 * 512))
        compare(tool, os.path.join(hand, 'e.vmdk'), 'KDMV header pointing at a descriptor', results)
        with open(os.path.join(hand, 'ro.vmdk'), 'w') as f:
            f.write('# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n'
                    'createType="twoGbMaxExtentFlat"\nRDONLY 4096 FLAT "x.vmdk" 0\n'
                    'RW 2048 FLAT "e-flat.vmdk" 0\nNOACCESS 8 FLAT "y.vmdk" 0\n')
        compare(tool, os.path.join(hand, 'ro.vmdk'), 'RDONLY and NOACCESS extents', results)
        with open(os.path.join(hand, 'blank.vmdk'), 'w') as f:
            f.write('# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n'
                    'createType="monolithicFlat"\n\n\nRW 2048 FLAT "e-flat.vmdk" 0\n')
        compare(tool, os.path.join(hand, 'blank.vmdk'), 'blank lines repeat an extent (sscanf quirk)', results)
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
