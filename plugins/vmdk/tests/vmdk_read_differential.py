#!/usr/bin/env python3
"""Differential check: the VMDK reader (vmdk_hosted_read) vs qemu-img 7.2 and 10.0.

For each image made with qemu-img/qemu-io (every subformat, data across extent boundaries, zeroed
grains, streamOptimized from a patterned raw file, a backing chain) and a few hand-written
descriptors: (a) the hosted dump equals `qemu-img convert -O raw` (images without backing), and
(b) the reader's extents agree with `qemu-img map --output=json` range by range: class
(data / zero / unallocated; for images with a backing file only depth-0 entries count as this
image's), offset where qemu reports one, and (10.0) the compressed flag.
The extent files are the ones vmdk_hosted_info reports, in its order.

usage: vmdk_read_differential.py HOSTED_READ HOSTED_INFO
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, data_segments, report, run, start  # noqa: E402
from vmdk_vmware_images import cowd, descriptor, sesparse  # noqa: E402

NEED_FILES = 7  # guest::Status::NeedFiles


def extent_files(info_tool, path):
    first = json.loads(run([info_tool, path]))
    if first.get('status') != NEED_FILES:
        return []
    names = [f['name'] for f in first['info']['files'] if f['role'] == 'extent']
    return [n if os.path.isabs(n) else os.path.join(os.path.dirname(path), n) for n in names]


def qemu_segments(qemu_img, path, has_backing):
    """[(start, end, class, offset or None, compressed)] from qemu-img map."""
    segs = []
    for m in json.loads(run([qemu_img, 'map', '--output=json', '-f', 'vmdk', path])):
        if m['depth'] > 0 or not m['present']:
            cls = 'unallocated'
        elif m['zero']:
            cls = 'zero'
        else:
            cls = 'data'
        off = m.get('offset') if cls != 'unallocated' else None
        segs.append((m['start'], m['start'] + m['length'], cls, off, m.get('compressed')))
    return segs


def our_segments(dump):
    return [(m['start'], m['start'] + m['length'], m['allocation'], m.get('offset'), m['compressed'])
            for m in dump['map']]


def compare_maps(ours, theirs, size):
    """Problems where the two segment lists disagree (split at every boundary of either)."""
    cuts = sorted({0, size} | {s for s, *_ in ours} | {e for _, e, *_ in ours}
                  | {s for s, *_ in theirs} | {e for _, e, *_ in theirs})

    def at(segs, pos):
        for s, e, cls, off, comp in segs:
            if s <= pos < e:
                return cls, (None if off is None else off + pos - s), comp
        return None

    problems = []
    for a, b in zip(cuts, cuts[1:]):
        o, t = at(ours, a), at(theirs, a)
        if o is None or t is None:
            problems.append(f'[{a}, {b}) missing: ours {o} qemu {t}')
        elif o[0] != t[0]:
            problems.append(f'[{a}, {b}) ours {o[0]} qemu {t[0]}')
        elif t[1] is not None and o[1] != t[1]:
            problems.append(f'[{a}, {b}) offset ours {o[1]} qemu {t[1]}')
        elif t[2] is not None and o[0] == 'data' and bool(o[2]) != t[2]:
            problems.append(f'[{a}, {b}) compressed ours {o[2]} qemu {t[2]}')
        if len(problems) > 4:
            break
    return problems


def check(tools, path, label, results, has_backing=False):
    read_tool, info_tool = tools
    files = extent_files(info_tool, path)
    out = path + '.ours.raw'
    args = [read_tool]
    for f in files:
        args += ['--file', f]
    dump = json.loads(run(args + [path, out]))
    for ver, (qemu_img, _) in QEMUS.items():
        problems = []
        if dump['status'] != 0:
            problems.append(f'status {dump["status"]}: {dump["reason"]}')
        else:
            qi = json.loads(run([qemu_img, 'info', '-f', 'vmdk', '--output=json', path]))
            if dump['virtual-size'] != qi['virtual-size']:
                problems.append(f'virtual size ours {dump["virtual-size"]} qemu {qi["virtual-size"]}')
            problems += compare_maps(our_segments(dump), qemu_segments(qemu_img, path, has_backing),
                                     qi['virtual-size'])
            if not has_backing:
                theirs = path + f'.qemu{ver}.raw'
                run([qemu_img, 'convert', '-f', 'vmdk', '-O', 'raw', path, theirs])
                if not same_bytes(out, theirs):
                    problems.append('dump differs from qemu-img convert -O raw')
                os.unlink(theirs)
        results.append((f'{label} [qemu {ver}]', problems))
    if os.path.exists(out):
        os.unlink(out)


def same_bytes(a, b):
    """Whether two sparse files hold the same bytes: only ranges allocated in either are read
    (holes read as zeros in both), so multi-GiB dumps compare quickly."""
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    ranges = sorted(data_segments(a) + data_segments(b))
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        done = 0
        for s, e in ranges:
            s = max(s, done)
            while s < e:
                n = min(e - s, 1 << 22)
                fa.seek(s)
                fb.seek(s)
                if fa.read(n) != fb.read(n):
                    return False
                s += n
            done = max(done, e)
    return True


def main():
    tools, status = start(__doc__, 2)
    if tools is None:
        return status
    results = []
    with tempfile.TemporaryDirectory() as d:
        n = 0

        def case_dir():
            nonlocal n
            n += 1
            sub = os.path.join(d, f'case{n}')
            os.mkdir(sub)
            return sub

        def make(opts, size, label, writes=(), qemu='7.2'):
            qemu_img, qemu_io = QEMUS[qemu]
            path = os.path.join(case_dir(), 'disk.vmdk')
            run([qemu_img, 'create', '-q', '-f', 'vmdk', '-o', opts, path, size])
            if writes:
                cmd = [qemu_io, '-f', 'vmdk']
                for w in writes:
                    cmd += ['-c', w]
                run(cmd + [path])
            check(tools, path, f'{label} ({opts} {size}, made by {qemu})', results)
            return path

        pattern = ('write -P 0x55 0 3M', 'write -P 0xaa 40M 1M', 'write -P 0x11 5000k 3k', 'write -P 0x22 63M 1M')
        for sub in ('monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat',
                    'streamOptimized'):
            make(f'subformat={sub}', '64M', 'empty')
            if sub != 'streamOptimized':
                make(f'subformat={sub}', '64M', 'data', pattern)
        for sub in ('monolithicSparse', 'monolithicFlat', 'twoGbMaxExtentSparse'):
            make(f'subformat={sub}', '64M', 'data', pattern, qemu='10.0')
        for prealloc in ('falloc', 'full'):
            make(f'subformat=monolithicFlat,preallocation={prealloc}', '8M', 'preallocated flat',
                 ('write -P 0x21 1M 64k',))
        # 3 GiB split images: two extents; data across the 2 GiB boundary and at the end.
        across = ('write -P 0x33 2047M 2M', 'write -P 0x44 0 64k', 'write -P 0x66 3071M 1M')
        make('subformat=twoGbMaxExtentSparse', '3G', 'across extents', across)
        make('subformat=twoGbMaxExtentFlat', '3G', 'across extents', across)
        make('subformat=twoGbMaxExtentSparse', '5G', 'three extents', ('write -P 0x77 4095M 2M',))
        # Descriptor counts that disagree with the sparse extents' capacities: qemu opens the image
        # with the capacities (nothing to refuse), and so must the reader.
        odd = make('subformat=twoGbMaxExtentSparse', '3G', 'before editing', across)
        with open(odd) as f:
            text = f.read().replace('RW 4194304 SPARSE', 'RW 1000 SPARSE')
        with open(odd, 'w') as f:
            f.write(text)
        check(tools, odd, 'descriptor sector counts that do not add up', results)
        # Zero writes: zeroed grains where the grain is whole, data elsewhere (qemu's fallback).
        zeros = ('write -P 0x55 0 4M', 'write -z 1M 128k', 'write -z 3M 4k', 'write -z 8M 1M', 'write -z 2M 64k')
        make('subformat=monolithicSparse,zeroed_grain=on', '64M', 'write -z', zeros)
        make('subformat=monolithicSparse', '64M', 'write -z without zeroed_grain', zeros)
        make('subformat=twoGbMaxExtentSparse,zeroed_grain=on', '3G', 'write -z split',
             ('write -P 1 2046M 4M', 'write -z 2047M 2M'))
        make('subformat=monolithicSparse,compat6=on', '64M', 'compat6', pattern)
        make('subformat=monolithicSparse,adapter_type=lsilogic,hwversion=7', '64M', 'hwversion', pattern)
        make('subformat=streamOptimized', '8M', 'streamOptimized written by qemu-io',
             ('write -P 0x12 0 1M', 'write -P 0x34 2M 64k'))
        make('subformat=monolithicSparse', '1G', 'large and empty')

        # streamOptimized by convert from patterned raw files (odd size, incompressible grains too).
        for qemu in ('7.2', '10.0'):
            qemu_img, qemu_io = QEMUS[qemu]
            sub = case_dir()
            src = os.path.join(sub, 'src.raw')
            run([qemu_img, 'create', '-q', '-f', 'raw', src, str(20 * 1024 * 1024 + 3 * 512)])
            run([qemu_io, '-f', 'raw', '-c', 'write -P 0x11 0 5M', '-c', 'write -P 0x5a 9M 64k',
                 '-c', 'write -P 0x7 20M 1536', src])
            with open(src, 'r+b') as f:
                f.seek(12 * 1024 * 1024)
                f.write(os.urandom(256 * 1024))
            so = os.path.join(sub, 'stream.vmdk')
            run([qemu_img, 'convert', '-f', 'raw', '-O', 'vmdk', '-o', 'subformat=streamOptimized', src, so])
            check(tools, so, f'streamOptimized converted by {qemu}', results)

        # A backing chain: compare depth 0.
        base = make('subformat=monolithicSparse', '64M', 'base', pattern)
        qemu_img, qemu_io = QEMUS['7.2']
        over = os.path.join(os.path.dirname(base), 'over.vmdk')
        run([qemu_img, 'create', '-q', '-f', 'vmdk', '-b', 'disk.vmdk', '-F', 'vmdk', over])
        run([qemu_io, '-f', 'vmdk', '-c', 'write -P 0x99 1M 128k', '-c', 'write -P 0x98 40M 4k', over])
        check(tools, over, 'overlay with parentFileNameHint', results, has_backing=True)
        zover = os.path.join(os.path.dirname(base), 'zover.vmdk')
        run([qemu_img, 'create', '-q', '-f', 'vmdk', '-o', 'zeroed_grain=on', '-b', 'disk.vmdk', '-F', 'vmdk', zover])
        run([qemu_io, '-f', 'vmdk', '-c', 'write -z 0 1M', '-c', 'write -P 3 2M 64k', zover])
        check(tools, zover, 'overlay with zeroed grains over data', results, has_backing=True)

        # Hand-written descriptors: extents at offsets, VMFS, a ZERO line (qemu skips it), a flat
        # file shorter than its extent, a hole-only file, a sparse extent among flat ones.
        hand = case_dir()
        with open(os.path.join(hand, 'a.bin'), 'wb') as f:
            f.write(os.urandom(1024 * 1024))
        with open(os.path.join(hand, 'hole.bin'), 'wb') as f:
            f.truncate(512 * 1024)
        run([qemu_img, 'create', '-q', '-f', 'vmdk', os.path.join(hand, 's.vmdk'), '2M'])
        run([qemu_io, '-f', 'vmdk', '-c', 'write -P 0x3c 64k 64k', os.path.join(hand, 's.vmdk')])
        desc = os.path.join(hand, 'mixed.vmdk')
        with open(desc, 'w') as f:
            f.write('# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n'
                    'createType="monolithicFlat"\n'
                    'RW 2048 FLAT "a.bin" 0\nRW 4096 ZERO\nRW 2048 FLAT "hole.bin" 0\n'
                    'RW 2048 FLAT "a.bin" 1024\nRW 4096 SPARSE "s.vmdk"\nRW 100 FLAT "a.bin" 7\n')
        check(tools, desc, 'hand-written mixed descriptor', results)
        vmfs = os.path.join(hand, 'vmfs.vmdk')
        with open(vmfs, 'w') as f:
            f.write('# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType="vmfs"\n'
                    'RW 2048 VMFS "a.bin"\n')
        check(tools, vmfs, 'vmfs descriptor', results)
        # Sparse extents named by a descriptor: a streamOptimized one (compressed grains on device
        # 1), one with zeroed grains, and a flat one between them.
        run([qemu_img, 'convert', '-q', '-f', 'vmdk', '-O', 'vmdk', '-o', 'subformat=streamOptimized',
             os.path.join(hand, 's.vmdk'), os.path.join(hand, 'so.vmdk')])
        zg = os.path.join(hand, 'zg.vmdk')
        run([qemu_img, 'create', '-q', '-f', 'vmdk', '-o', 'zeroed_grain=on', zg, '1M'])
        run([qemu_io, '-f', 'vmdk', '-c', 'write -P 0x61 0 256k', '-c', 'write -z 64k 128k', zg])
        sparse_desc = os.path.join(hand, 'sparse.vmdk')
        with open(sparse_desc, 'w') as f:
            f.write('# Disk DescriptorFile\nversion=1\nCID=5\nparentCID=ffffffff\n'
                    'createType="vmfsSparse"\n'
                    'RW 4096 SPARSE "so.vmdk"\nRW 2048 FLAT "a.bin" 0\nRW 2048 VMFSSPARSE "zg.vmdk"\n')
        check(tools, sparse_desc, 'descriptor with streamOptimized, flat and zeroed-grain extents', results)

        # VMware-only extents qemu reads but cannot create, built by hand (vmdk_vmware_images.py):
        # COWD alone and behind VMFSSPARSE/SPARSE lines (a missing grain table, 64 KiB grains), and
        # seSparse with zero and unmapped grains, tables far apart, a data run across tables.
        vm = case_dir()
        grains = {0: b'\x11' * 4096, 3: b'\x22' * 100, 1000: b'\x33' * 4096, 4095: b'\x44' * 4096,
                  4096: b'\x55' * 4096, 9000: b'\x66' * 4096}
        cowd(os.path.join(vm, 'cowd.vmdk'), 100000, 8, grains)
        check(tools, os.path.join(vm, 'cowd.vmdk'), 'COWD file (4 KiB grains)', results)
        cowd(os.path.join(vm, 'gap.vmdk'), 3 * 4096 * 8, 8, {0: b'\x01' * 4096, 8192: b'\x02' * 4096},
             missing_tables=(1,))
        check(tools, os.path.join(vm, 'gap.vmdk'), 'COWD file with a missing grain table', results)
        cowd(os.path.join(vm, 'big-x.vmdk'), 4096 * 128 + 128, 128, {0: os.urandom(65536), 1: b'\x07' * 65536,
                                                                      4096: b'\x08' * 512}, cid_text=False)
        cowd(os.path.join(vm, 'small-x.vmdk'), 2048, 8, {2: b'\x09' * 4096}, cid_text=False)
        descriptor(os.path.join(vm, 'vmfs.vmdk'), 'vmfsSparse',
                   [(4096 * 128 + 128, 'VMFSSPARSE', 'big-x.vmdk'), (2048, 'SPARSE', 'small-x.vmdk')])
        check(tools, os.path.join(vm, 'vmfs.vmdk'), 'vmfsSparse descriptor with two COWD extents', results)
        se_grains = {0: b'\x11' * 4096, 1: 'zero', 2: 'unmapped', 5: os.urandom(4096),
                     6: b'\x12' * 4096, 4095: b'\x13' * 4096, 4096: b'\x14' * 4096, 20000: b'\x15' * 10}
        sesparse(os.path.join(vm, 'se-x.vmdk'), 200000, se_grains)
        sesparse(os.path.join(vm, 'se2-x.vmdk'), 8192, {1: b'\x16' * 4096, 3: 'zero'})
        descriptor(os.path.join(vm, 'se.vmdk'), 'seSparse',
                   [(200000, 'SESPARSE', 'se-x.vmdk'), (8192, 'SESPARSE', 'se2-x.vmdk')])
        check(tools, os.path.join(vm, 'se.vmdk'), 'seSparse descriptor with two extents', results)
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
