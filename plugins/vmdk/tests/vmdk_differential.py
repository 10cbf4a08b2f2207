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
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, compare_report, report, run, start  # noqa: E402
from vmdk_vmware_images import cowd, descriptor, sesparse  # noqa: E402

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

        # VMware-only extents qemu reads but cannot create (vmdk_vmware_images.py): a COWD file
        # alone (qemu reports an empty create type and extent format), COWD behind VMFSSPARSE and
        # SPARSE lines, seSparse; then headers qemu refuses, with its words.
        vm = os.path.join(d, 'vmware')
        os.mkdir(vm)
        cowd(os.path.join(vm, 'cowd.vmdk'), 100000, 8, {0: b'\x11' * 4096, 7: b'\x22' * 4096})
        compare(tool, os.path.join(vm, 'cowd.vmdk'), 'COWD file', results)
        cowd(os.path.join(vm, 'a-x.vmdk'), 4096 * 128, 128, {1: b'\x07' * 65536}, cid_text=False)
        cowd(os.path.join(vm, 'b-x.vmdk'), 2048, 8, {}, cid_text=False)
        descriptor(os.path.join(vm, 'vmfs.vmdk'), 'vmfsSparse',
                   [(4096 * 128, 'VMFSSPARSE', 'a-x.vmdk'), (2048, 'SPARSE', 'b-x.vmdk')])
        compare(tool, os.path.join(vm, 'vmfs.vmdk'), 'vmfsSparse descriptor, COWD extents', results)
        sesparse(os.path.join(vm, 'se-x.vmdk'), 200000, {0: b'\x11' * 4096, 9: 'zero'})
        descriptor(os.path.join(vm, 'se.vmdk'), 'seSparse', [(200000, 'SESPARSE', 'se-x.vmdk')])
        compare(tool, os.path.join(vm, 'se.vmdk'), 'seSparse descriptor', results)
        bad = {'dirty': dict(replay_journal=1), 'version': dict(version=5)}
        for name, kw in bad.items():
            sesparse(os.path.join(vm, f'{name}-x.vmdk'), 8192, {1: b'\x01' * 4096}, **kw)
            descriptor(os.path.join(vm, f'{name}.vmdk'), 'seSparse', [(8192, 'SESPARSE', f'{name}-x.vmdk')])
            refused(tool, os.path.join(vm, f'{name}.vmdk'), f'seSparse refused ({name})', results)
        with open(os.path.join(vm, 'magic-x.vmdk'), 'wb') as f:
            f.write(bytes(4096))
        descriptor(os.path.join(vm, 'magic.vmdk'), 'seSparse', [(8, 'SESPARSE', 'magic-x.vmdk')])
        refused(tool, os.path.join(vm, 'magic.vmdk'), 'seSparse refused (magic)', results)
        cowd(os.path.join(vm, 'gran.vmdk'), 8192, 0x400000, {})
        refused(tool, os.path.join(vm, 'gran.vmdk'), 'COWD refused (granularity)', results)
        cowd(os.path.join(vm, 'nocid.vmdk'), 8192, 8, {}, cid_text=False)
        refused(tool, os.path.join(vm, 'nocid.vmdk'), 'COWD refused (no CID window)', results)
    return report(results)


def refused(tool, path, label, results):
    """Both refuse the image: instar's reason is qemu-img's message after "Could not open 'PATH': "."""
    got = ours(tool, path)
    reason = (got.get('info') or {}).get('reason', '').replace('{image}', path)
    for ver, (qemu_img, _) in QEMUS.items():
        rc, _out, err = run_status([qemu_img, 'info', '-f', 'vmdk', path])
        want = err.strip().split(': ', 2)[-1] if rc != 0 else None
        problems = []
        if got.get('status') == 0 or reason != want:
            problems.append(f'ours status {got.get("status")} {reason!r}, qemu rc {rc} {want!r}')
        results.append((f'{label} [qemu {ver}]', problems))


def run_status(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


if __name__ == '__main__':
    sys.exit(main())
