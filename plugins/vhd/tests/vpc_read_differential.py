#!/usr/bin/env python3
"""Differential check of the VHD reader: the hosted dump vs `qemu-img convert -O raw`, and its
extents vs `qemu-img map --output=json`, for qemu-img 7.2 and 10.0.

usage: vpc_read_differential.py HOSTED_READ HOSTED_CREATE

Images are made by each qemu version (fixed, dynamic, force_size=on, empty, data at block
boundaries). Differencing disks (qemu cannot make them) are made by instar's create (the hosted
create tool, the same guest code as `instar create -f vpc -b`); qemu opens them as dynamic disks,
so its depth-0 "zero" ranges are where instar says Unallocated (the parent's).
"""
import json
import os
import shutil
import subprocess
import time
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, report, run, start  # noqa: E402

FORMAT = 'vpc'
M = 1 << 20
PEAK_LIMIT = 128 * 1024  # the reader's memory is bounded independently of the image


def qemu_classes(qemu_img, path):
    """qemu map as merged (start, length, class, offset) with class data/zero/unallocated. A fixed
    disk's holes are "zero": true, "data": true in qemu (the raw pass-through): class zero."""
    out = []
    for e in json.loads(run([qemu_img, 'map', '-f', FORMAT, '--output=json', path])):
        if e['depth'] > 0:
            cls = 'unallocated'
        elif e['zero']:
            cls = 'zero'
        else:
            cls = 'data' if e['data'] else 'unallocated'
        out.append((e['start'], e['length'], cls, e.get('offset')))
    return merge(out)


def our_classes(ours, unallocated_as='unallocated'):
    out = []
    for e in ours['map']:
        cls = e['allocation']
        if cls == 'unallocated':
            cls = unallocated_as
        out.append((e['start'], e['length'], cls, e.get('offset')))
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


def set_creator(path, creator, current_size):
    """Rewrites the footer at the end: creator application and current size, new checksum."""
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.seek(size - 512)
        b = bytearray(f.read(512))
        b[28:32] = creator
        struct.pack_into('>Q', b, 48, current_size)
        b[64:68] = bytes(4)
        struct.pack_into('>I', b, 64, ~sum(b) & 0xffffffff)
        f.seek(size - 512)
        f.write(b)


def add_block(path, index, bitmap, fill):
    """Appends a block (sector bitmap + 2 MiB of `fill`) to a dynamic/differencing VHD where its
    footer was, points BAT entry `index` at it and rewrites the footer after it."""
    with open(path, 'r+b') as f:
        data = f.read()
        size = len(data)
        footer = data[-512:]
        header = struct.unpack_from('>Q', data, 16)[0]
        table = struct.unpack_from('>Q', data, header + 16)[0]
        block_size = struct.unpack_from('>I', data, header + 32)[0]
        at = size - 512
        f.seek(at)
        f.write(bitmap + bytes(512 - len(bitmap)) + bytes([fill]) * block_size + footer)
        f.seek(table + 4 * index)
        f.write(struct.pack('>I', at // 512))


def libvhdi_view(path, mnt):
    """The composed virtual disk of a differencing VHD as libvhdi's vhdimount shows it (vhdi2 is
    the child, vhdi1 its parent), or None when FUSE or vhdimount is not available."""
    if shutil.which('vhdimount') is None or shutil.which('umount') is None:
        return None
    os.makedirs(mnt, exist_ok=True)
    proc = subprocess.Popen(['vhdimount', '-X', 'allow_root', path, mnt], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if os.path.exists(os.path.join(mnt, 'vhdi2')):
                with open(os.path.join(mnt, 'vhdi2'), 'rb') as f:
                    return f.read()
            time.sleep(0.1)
        return None
    finally:
        subprocess.run(['umount', mnt], capture_output=True)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def check_against_libvhdi(read_tool, create_tool, d, results):
    """A differencing VHD from instar's create with two hand-written blocks: block 1 with a partial
    sector bitmap, block 3 with a full one. The parent's bytes (qemu convert) overlaid with the
    reader's Data ranges must equal libvhdi's composed view. libvhdi (20210425) extends a run of set
    bits to the end of its byte, so the bitmap's runs end on byte boundaries here."""
    qemu_img, qemu_io = QEMUS['7.2']
    base = os.path.join(d, 'vhdi-base.vhd')
    run([qemu_img, 'create', '-q', '-f', FORMAT, base, '8M'])
    io(qemu_io, base, 'write -P 0x99 0 5M')
    ov = os.path.join(d, 'vhdi-ov.vhd')
    made = json.loads(run([create_tool, ov, '8390656', '--backing', base, '--backing-fmt', FORMAT]))
    label = 'differencing with partial sector bitmaps vs libvhdi (vhdimount)'
    if made.get('status', 0) != 0:
        results.append((label, [f'create failed: {made}']))
        return
    add_block(ov, 1, bytes([0x0f, 0x01, 0xff, 0x00, 0x03]) + bytes(95) + bytes([0xff] * 4), 0x5a)
    add_block(ov, 3, bytes([0xff] * 512), 0x6b)
    raw = os.path.join(d, 'vhdi-ours.raw')
    ours = json.loads(run([read_tool, ov, raw]))
    if ours['status'] != 0:
        results.append((label, [f'status {ours["status"]} {ours["reason"]}']))
        return
    view = libvhdi_view(ov, os.path.join(d, 'mnt'))
    if view is None:
        print(f'SKIP: {label}: vhdimount or FUSE unavailable; this comparison NOT run')
        return
    parent = os.path.join(d, 'vhdi-base.raw')
    run([qemu_img, 'convert', '-f', FORMAT, '-O', 'raw', base, parent])
    with open(parent, 'rb') as f:
        composed = bytearray(f.read())
    with open(raw, 'rb') as f:
        mine = f.read()
    composed.extend(bytes(len(mine) - len(composed)))
    for e in ours['map']:
        if e['allocation'] != 'unallocated':
            composed[e['start']:e['start'] + e['length']] = mine[e['start']:e['start'] + e['length']]
    problems = []
    if bytes(composed) != view:
        first = next(i for i in range(min(len(view), len(composed))) if view[i] != composed[i]) \
            if len(view) == len(composed) else -1
        problems.append(f'composed bytes differ from libvhdi at {first} (sizes {len(composed)}, {len(view)})')
    results.append((label, problems))


def io(qemu_io, path, *cmds):
    args = [qemu_io, '-f', FORMAT]
    for c in cmds:
        args += ['-c', c]
    run(args + [path])


def main():
    tools, status = start(__doc__, 2)
    if tools is None:
        return status
    read_tool, create_tool = tools
    results = []
    with tempfile.TemporaryDirectory() as d:
        for maker, (qemu_img, qemu_io) in QEMUS.items():
            def img(name, size, opts=''):
                p = os.path.join(d, f'{maker}-{name}.vhd')
                run([qemu_img, 'create', '-q', '-f', FORMAT] + (['-o', opts] if opts else []) + [p, size])
                return p
            writes = ('write -P 0x11 0 4k', 'write -P 0x22 2044k 8k', 'write -P 0x33 4M 512',
                      'write -P 0x44 7M 1M', 'write -P 0x55 12M 3M')
            p = img('dynamic', '20M')
            io(qemu_io, p, *writes)
            check(read_tool, p, f'dynamic 20M with data (made by {maker})', d, results)
            p = img('fixed', '20M', 'subformat=fixed')
            io(qemu_io, p, *writes)
            check(read_tool, p, f'fixed 20M with data (made by {maker})', d, results)
            p = img('force', '10000000', 'force_size=on')
            io(qemu_io, p, 'write -P 0x66 9000k 765k', 'write -P 0x77 0 1k')
            check(read_tool, p, f'dynamic force_size=on 10000000 (made by {maker})', d, results)
            p = img('fixed-force', '10000000', 'subformat=fixed,force_size=on')
            io(qemu_io, p, 'write -P 0x66 9000k 765k')
            check(read_tool, p, f'fixed force_size=on 10000000 (made by {maker})', d, results)
            p = img('empty', '1G')
            ours = check(read_tool, p, f'empty dynamic 1G (made by {maker})', d, results)
            results.append((f'empty dynamic 1G is one Zero extent (made by {maker})',
                            [] if len(ours.get('map', [])) == 1 else [f'{len(ours.get("map", []))} extents']))
            p = img('win', '1M', 'subformat=fixed')
            io(qemu_io, p, 'write -P 0x12 0 64k')
            set_creator(p, b'win ', 3 * M)
            check(read_tool, p, f'fixed, creator "win ", current_size past the end of the file (made by {maker})',
                  d, results)
            p = img('odd', '12345678')
            io(qemu_io, p, 'write -P 0x88 12000000 300000')
            check(read_tool, p, f'dynamic 12345678 with data in the last block (made by {maker})', d, results)

        # Differencing disks: made by instar's create over a base with data.
        qemu_img, qemu_io = QEMUS['7.2']
        base = os.path.join(d, 'base.vhd')
        run([qemu_img, 'create', '-q', '-f', FORMAT, base, '20M'])
        io(qemu_io, base, 'write -P 0x99 0 5M')
        ov = os.path.join(d, 'ov.vhd')
        made = json.loads(run([create_tool, ov, str(20 * M), '--backing', base, '--backing-fmt', FORMAT]))
        if made.get('status', 0) != 0:
            results.append(('instar create -b base.vhd', [f'create failed: {made}']))
        else:
            ours = check(read_tool, ov, 'differencing made by instar create, empty', d, results,
                         expect_unallocated=True)
            results.append(('differencing: all Unallocated',
                            [] if [e['allocation'] for e in ours.get('map', [])] == ['unallocated']
                            else [f'map {ours.get("map")}']))
            # qemu writes into it as into a dynamic disk (bitmap all ones): those blocks are Data.
            io(qemu_io, ov, 'write -P 0xaa 2M 4k', 'write -P 0xbb 9M 1M')
            check(read_tool, ov, 'differencing with blocks written by qemu-io', d, results,
                  expect_unallocated=True)
        check_against_libvhdi(read_tool, create_tool, d, results)
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
