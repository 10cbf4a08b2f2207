#!/usr/bin/env python3
"""Differential check of the bochs plugin end to end: the instar binary against qemu-img 7.2 and 10.0
on images this script generates (qemu-img cannot create bochs): info (human and JSON), convert from
bochs (the raw bytes), map, compare, the refusals of create / convert -O bochs / check, and open
refusals on damaged headers.

Generated layout (block/bochs.c; little-endian): a 512-byte header (magic "Bochs Virtual HD Image",
type "Redolog", subtype "Growing", version 0x00020000 with the disk size at 88, or the older
0x00010000 with it at 84; catalog offset, catalog entries, bitmap bytes and extent bytes at 68..80),
the catalog (u32 slot per extent, 0xffffffff unallocated), then per slot a bitmap of `bitmap` bytes
padded to sectors (bit i set: sector i of the extent is stored) followed by the extent's sectors.

usage: bochs_differential.py INSTAR
"""
import os
import random
import shutil
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, start, report, run_fixture  # noqa: E402
from oracle_diff import OracleDiff as Diff, patch  # noqa: E402

def make_bochs(path, disk, extent=4096, bitmap=None, version=2, catalog=None, header_at=512, fill=0.5,
               seed=1, tail=b''):
    """Writes a growing redolog of `disk` bytes; about `fill` of the extents get a slot (in shuffled
    order), each with a random bitmap and random sector bytes. Returns the file's bytes."""
    rnd = random.Random(seed)
    sectors = extent // 512
    if bitmap is None:
        bitmap = max(1, (sectors + 7) // 8)
    bitmap_blocks = 1 + (bitmap - 1) // 512
    n_ext = -(-(disk // 512) // sectors)
    if catalog is None:
        catalog = n_ext
    hdr = bytearray(header_at)
    hdr[0:23] = b'Bochs Virtual HD Image\0'
    hdr[32:40] = b'Redolog\0'
    hdr[48:56] = b'Growing\0'
    struct.pack_into('<IIIII', hdr, 64, 0x00020000 if version == 2 else 0x00010000, header_at, catalog, bitmap,
                     extent)
    struct.pack_into('<Q', hdr, 88 if version == 2 else 84, disk)
    chosen = [i for i in range(min(n_ext, catalog)) if rnd.random() < fill]
    order = chosen[:]
    rnd.shuffle(order)
    cat = [0xffffffff] * catalog
    for slot, ext in enumerate(order):
        cat[ext] = slot
    body = bytearray()
    for slot, ext in enumerate(order):
        bits = bytearray(bitmap_blocks * 512)
        data = bytearray(sectors * 512)
        for s in range(sectors):
            r = rnd.random()
            if r < 0.6:
                bits[s // 8] |= 1 << (s % 8)
                if r < 0.5:
                    data[s * 512:(s + 1) * 512] = bytes([rnd.randrange(1, 256)]) * 512
            elif r < 0.8:
                # a clear bit over non-zero bytes: qemu reads zeros there
                data[s * 512:(s + 1) * 512] = b'\xee' * 512
        body += bits + data
    out = bytes(hdr) + struct.pack(f'<{catalog}I', *cat) + bytes(body) + tail
    with open(path, 'wb') as f:
        f.write(out)
    return out


def main():
    tools, status = start(__doc__, 1, sandboxed=True)
    if tools is None:
        return status
    work = tempfile.mkdtemp(prefix='instar-bochs-')
    try:
        d = Diff(sys.argv[1], work)
        p = d.path
        # ---- fixtures ----
        make_bochs(p('v2.bochs'), 1 << 20, extent=4096, seed=1)
        make_bochs(p('v1.bochs'), 1 << 20, extent=8192, version=1, seed=2)
        make_bochs(p('big.bochs'), 8 << 20, extent=32768, bitmap=512, seed=3, fill=0.3)
        make_bochs(p('odd.bochs'), (3 << 20) + 1000, extent=512, bitmap=1, catalog=7000, header_at=1024,
                   seed=4)  # a disk size that is not a sector multiple, a catalog longer than needed
        make_bochs(p('empty.bochs'), 2 << 20, extent=65536, fill=0, seed=5)
        make_bochs(p('full.bochs'), 1 << 20, extent=131072, fill=1.0, seed=6)
        make_bochs(p('zero.bochs'), 0, extent=4096, seed=7)
        make_bochs(p('nocat.bochs'), 0, extent=4096, catalog=0, seed=8)
        make_bochs(p('bigbitmap.bochs'), 1 << 20, extent=4096, bitmap=2000, seed=9)
        make_bochs(p('short.bochs'), 1 << 20, extent=4096, seed=10)
        with open(p('short.bochs'), 'r+b') as f:  # data cut short: zeros past the end, as qemu's block layer
            f.truncate(os.path.getsize(p('short.bochs')) - 3000)
        src = p('v2.bochs')
        damaged = {
            'catbig': [(72, '<I', 0x100001)],
            'extsmall': [(80, '<I', 256)],
            'extpow2': [(80, '<I', 3000)],
            'extlarge': [(80, '<I', 1 << 24)],
            'catsmall': [(88, '<Q', 1 << 30)],
            'badversion': [(64, '<I', 0x00030000)],
            'slotfar': [(512 + 4 * 3, '<I', 0x7fffffff)],
        }
        for name, edits in damaged.items():
            patch(src, p(f'{name}.bochs'), edits)
        good = ['v2.bochs', 'v1.bochs', 'big.bochs', 'odd.bochs', 'empty.bochs', 'full.bochs', 'zero.bochs',
                'nocat.bochs', 'bigbitmap.bochs', 'short.bochs', 'slotfar.bochs']
        bad = ['catbig.bochs', 'extsmall.bochs', 'extpow2.bochs', 'extlarge.bochs', 'catsmall.bochs']

        # ---- info ----
        for img in good + bad:
            d.same(f'info {img}', ['info', img])
            d.same(f'info --output=json {img}', ['info', '--output=json', img])
        d.same('info -f bochs badversion.bochs', ['info', '-f', 'bochs', 'badversion.bochs'])

        # ---- convert from bochs, map, compare ----
        for img in good:
            d.same(f'convert {img} -O raw', ['convert', '-O', 'raw', img, '@out.raw'], outputs=['out.raw'])
            d.same(f'map {img}', ['map', img])
            d.same(f'map --output=json {img}', ['map', '--output=json', img])
        d.same('convert v2.bochs -O qcow2', ['convert', '-O', 'qcow2', 'v2.bochs', '@out.qcow2'],
               outputs=['out.qcow2'])
        for img in bad:
            d.same(f'convert {img} (refused)', ['convert', '-O', 'raw', img, '@out.raw'], outputs=[])
        run_fixture([QEMUS['7.2'][0], 'convert', '-O', 'raw', 'big.bochs', 'big.raw'], cwd=work, check=True)
        d.same('compare big.bochs big.raw', ['compare', '-F', 'raw', 'big.bochs', 'big.raw'])
        d.same('compare v2.bochs v1.bochs', ['compare', 'v2.bochs', 'v1.bochs'])
        # -p steps by block-status answers: qemu's bochs driver gives none, so the whole disk is one
        # data run read 2 MiB at a time (instar's reader names no status boundary either).
        make_bochs(p('large.bochs'), 40 << 20, extent=1 << 20, bitmap=512, seed=11, fill=0.5)
        run_fixture([QEMUS['7.2'][0], 'convert', '-O', 'raw', 'large.bochs', 'large.raw'], cwd=work, check=True)
        d.same('compare -p large.bochs large.raw', ['compare', '-p', '-F', 'raw', 'large.bochs', 'large.raw'])
        d.same('compare -p big.bochs large.bochs', ['compare', '-p', 'big.bochs', 'large.bochs'])

        # ---- what qemu-img refuses for a read-only format ----
        d.read_only_format_cases('bochs', 'v2.bochs', damaged='catbig.bochs')
        return report(d.results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
