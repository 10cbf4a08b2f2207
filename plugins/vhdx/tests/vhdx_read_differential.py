#!/usr/bin/env python3
"""Differential check of the VHDX reader: the hosted dump vs `qemu-img convert -O raw`, and its
extents vs `qemu-img map --output=json`, for qemu-img 7.2 and 10.0.

usage: vhdx_read_differential.py HOSTED_READ HOSTED_CREATE

Images are made by each qemu version (fixed, dynamic with 1 MiB blocks and data across blocks,
zero writes, discards, block_state_zero=off). qemu's vhdx driver has no block status, so its map
says "data" everywhere; so does the reader. Differencing disks (qemu refuses them) are made by
instar's create (the hosted create tool, the same guest code as `instar create -f vhdx -b`) and
checked by construction: all Unallocated, zeros, the virtual size instar's info reports.
"""
import json
import os
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, report, run, start  # noqa: E402

FORMAT = 'vhdx'
M = 1 << 20
PEAK_LIMIT = 128 * 1024  # the reader's memory is bounded independently of the image


def qemu_classes(qemu_img, path):
    """qemu map as merged (start, length, class, offset) with class data/zero/unallocated."""
    out = []
    for e in json.loads(run([qemu_img, 'map', '-f', FORMAT, '--output=json', path])):
        if e['depth'] > 0:
            cls = 'unallocated'
        elif e['zero']:
            cls = 'zero'
        else:
            cls = 'data' if e['data'] else 'unallocated'
        out.append((e['start'], e['length'], cls, e.get('offset') if cls == 'data' else None))
    return merge(out)


def our_classes(ours, unallocated_as='unallocated'):
    out = []
    for e in ours['map']:
        cls = e['allocation']
        if cls == 'unallocated':
            cls = unallocated_as
        out.append((e['start'], e['length'], cls, e.get('offset') if cls == 'data' else None))
    return merge(out)


def merge(entries):
    merged = []
    for start, length, cls, off in entries:
        if merged:
            s, l, c, o = merged[-1]
            if c == cls and s + l == start and (o is None) == (off is None) and (o is None or o + l == off):
                merged[-1] = (s, l + length, c, o)
                continue
        merged.append((start, length, cls, off))
    return merged


def same_file(a, b):
    if os.path.getsize(a) != os.path.getsize(b):
        return f'size {os.path.getsize(a)} != {os.path.getsize(b)}'
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        pos = 0
        while True:
            x, y = fa.read(M), fb.read(M)
            if x != y:
                i = next(k for k in range(min(len(x), len(y))) if x[k] != y[k]) if x and y else 0
                return f'bytes differ at {pos + i}'
            if not x:
                return None
            pos += len(x)


def check(read_tool, path, label, d, results, unallocated_as='unallocated', expect_unallocated=False):
    dump = os.path.join(d, 'ours.raw')
    ours = json.loads(run([read_tool, path, dump]))
    for ver, (qemu_img, _) in QEMUS.items():
        problems = []
        if ours['status'] != 0:
            problems.append(f'status {ours["status"]} {ours["reason"]}')
        else:
            ref = os.path.join(d, 'qemu.raw')
            run([qemu_img, 'convert', '-f', FORMAT, '-O', 'raw', path, ref])
            diff = same_file(dump, ref)
            if diff:
                problems.append('dump: ' + diff)
            if ours['peak-memory'] > PEAK_LIMIT:
                problems.append(f'peak memory {ours["peak-memory"]} > {PEAK_LIMIT}')
            theirs = qemu_classes(qemu_img, path)
            mine = our_classes(ours, 'zero' if expect_unallocated else unallocated_as)
            if mine != theirs:
                problems.append(f'map: ours {mine[:6]} qemu {theirs[:6]}')
            if expect_unallocated and not any(e['allocation'] == 'unallocated' for e in ours['map']):
                problems.append('no Unallocated range in a differencing disk')
        results.append((f'{label} [qemu {ver}]', problems))
    return ours


def io(qemu_io, path, *cmds):
    args = [qemu_io, '-f', FORMAT]
    for c in cmds:
        args += ['-c', c]
    run(args + [path])


def bat_offset(path):
    """The BAT region's file offset from the region table at 192 KiB."""
    with open(path, 'rb') as f:
        f.seek(192 * 1024)
        rt = f.read(64 * 1024)
    count = struct.unpack_from('<I', rt, 8)[0]
    for i in range(count):
        e = 16 + 32 * i
        if rt[e:e + 16] == BAT_GUID:
            return struct.unpack_from('<Q', rt, e + 16)[0]
    raise RuntimeError('no BAT region')


BAT_GUID = bytes.fromhex('6677c22d23f600429d64115e9bfd4a08')


def check_differencing_with_data(read_tool, create_tool, base, d, results):
    """A differencing VHDX from instar's create, its BAT then edited by hand (1 MiB blocks, chunk
    ratio 4096): block 2 FULLY_PRESENT (0xab), block 5 PARTIALLY_PRESENT (0xcd, its first 256
    sectors set in chunk 0's sector bitmap), block 7 ZERO, block 9 UNMAPPED, the rest NOT_PRESENT."""
    ov = os.path.join(d, 'ov-data.vhdx')
    made = json.loads(run([create_tool, ov, str(20 * M), f'block_size={M}', '--backing', base,
                           '--backing-fmt', FORMAT]))
    label = 'differencing with FULLY/PARTIALLY_PRESENT, ZERO and UNMAPPED blocks'
    if made.get('status', 0) != 0:
        results.append((label, [f'create failed: {made}']))
        return
    bat = bat_offset(ov)
    end = (os.path.getsize(ov) + M - 1) // M * M
    with open(ov, 'r+b') as f:
        f.seek(end)
        f.write(b'\xab' * M + b'\xcd' * M + b'\0' * 1280 + b'\xff' * 32 + b'\0' * (M - 1312))
        for index, value in ((2, end | 6), (5, (end + M) | 7), (4096, (end + 2 * M) | 6), (7, 2), (9, 3)):
            f.seek(bat + 8 * index)
            f.write(struct.pack('<Q', value))
    raw = os.path.join(d, 'ours.raw')
    ours = json.loads(run([read_tool, ov, raw]))
    want = [(0, 2 * M, 'unallocated', None), (2 * M, M, 'data', end), (3 * M, 2 * M, 'unallocated', None),
            (5 * M, 128 * 1024, 'data', end + M), (5 * M + 128 * 1024, 2 * M - 128 * 1024, 'unallocated', None),
            (7 * M, M, 'zero', None), (8 * M, 12 * M, 'unallocated', None)]
    problems = []
    if ours['status'] != 0:
        problems.append(f'status {ours["status"]} {ours["reason"]}')
    else:
        got = our_classes(ours)
        if got != want:
            problems.append(f'map {got}')
        expect = bytearray(20 * M)
        expect[2 * M:3 * M] = b'\xab' * M
        expect[5 * M:5 * M + 128 * 1024] = b'\xcd' * (128 * 1024)
        with open(raw, 'rb') as f:
            if f.read() != bytes(expect):
                problems.append('dump differs from the constructed bytes')
    results.append((label, problems))


def main():
    tools, status = start(__doc__, 2)
    if tools is None:
        return status
    read_tool, create_tool = tools
    results = []
    with tempfile.TemporaryDirectory() as d:
        for maker, (qemu_img, qemu_io) in QEMUS.items():
            def img(name, size, opts=''):
                p = os.path.join(d, f'{maker}-{name}.vhdx')
                run([qemu_img, 'create', '-q', '-f', FORMAT] + (['-o', opts] if opts else []) + [p, size])
                return p
            writes = ('write -P 0x11 0 4k', 'write -P 0x22 1020k 8k', 'write -P 0x33 3M 512',
                      'write -P 0x44 5M 2M', 'write -z 6M 512k', 'write -z 9M 1M', 'discard 5M 1M',
                      'write -P 0x55 12M 3584k')
            p = img('dynamic', '16M', 'block_size=1M')
            io(qemu_io, p, *writes)
            check(read_tool, p, f'dynamic 1M blocks with data, zero writes, discards (made by {maker})', d, results)
            p = img('dynamic-nozero', '16M', 'block_size=1M,block_state_zero=off')
            io(qemu_io, p, *writes)
            check(read_tool, p, f'dynamic block_state_zero=off (made by {maker})', d, results)
            p = img('fixed', '8M', 'subformat=fixed,block_size=1M')
            io(qemu_io, p, 'write -P 0x66 1M 1536k', 'write -z 4M 1M', 'discard 6M 1M')
            check(read_tool, p, f'fixed 1M blocks (made by {maker})', d, results)
            p = img('fixed-nozero', '8M', 'subformat=fixed,block_size=1M,block_state_zero=off')
            io(qemu_io, p, 'write -P 0x67 3M 100k')
            check(read_tool, p, f'fixed block_state_zero=off (made by {maker})', d, results)
            p = img('odd', '10000001', 'block_size=2M')
            io(qemu_io, p, 'write -P 0x77 9999000 999')
            check(read_tool, p, f'dynamic odd size, data in the last block (made by {maker})', d, results)
            p = img('empty', '256M')
            ours = check(read_tool, p, f'empty dynamic 256M (made by {maker})', d, results)
            results.append((f'empty dynamic 256M is one extent (made by {maker})',
                            [] if len(ours.get('map', [])) == 1 else [f'{len(ours.get("map", []))} extents']))

        # Differencing disks made by instar's create over a base with data: by construction.
        qemu_img, qemu_io = QEMUS['7.2']
        base = os.path.join(d, 'base.vhdx')
        run([qemu_img, 'create', '-q', '-f', FORMAT, '-o', 'block_size=1M', base, '20M'])
        io(qemu_io, base, 'write -P 0x99 0 5M')
        for opts in ([], [f'block_size={M}'], ['block_state_zero=off']):
            ov = os.path.join(d, 'ov.vhdx')
            if os.path.exists(ov):
                os.unlink(ov)
            made = json.loads(run([create_tool, ov, str(20 * M)] + opts + ['--backing', base, '--backing-fmt', FORMAT]))
            label = f'differencing made by instar create {opts}'
            if made.get('status', 0) != 0:
                results.append((label, [f'create failed: {made}']))
                continue
            ours = json.loads(run([read_tool, ov, os.path.join(d, 'ours.raw')]))
            problems = []
            if ours['status'] != 0:
                problems.append(f'status {ours["status"]} {ours["reason"]}')
            else:
                if ours['virtual-size'] != 20 * M:
                    problems.append(f'virtual size {ours["virtual-size"]}')
                if [e['allocation'] for e in ours['map']] != ['unallocated']:
                    problems.append(f'map {ours["map"]}')
                with open(os.path.join(d, 'ours.raw'), 'rb') as f:
                    if f.read().strip(b'\0'):
                        problems.append('non-zero bytes')
            results.append((label, problems))
        check_differencing_with_data(read_tool, create_tool, base, d, results)
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
