#!/usr/bin/env python3
"""Differential check of the cloop plugin end to end: the instar binary against qemu-img 7.2 and 10.0
on images this script generates with zlib (qemu-img cannot create cloop): info (human and JSON),
convert from cloop (the raw bytes), map, compare, the refusals of create / convert -O cloop / check,
open refusals on damaged headers and the I/O error of a damaged block.

Generated layout (block/cloop.c, V2.0, big-endian): the shell preamble
"#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n" padded with
zeros to 128 bytes, u32 block_size at 128, u32 n_blocks at 132, u64 offsets[n_blocks + 1] at 136,
then each block as one zlib stream (compress(), at a level given per image) at [offsets[i], offsets[i + 1]).

usage: cloop_differential.py INSTAR
"""
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, start, report, run_fixture  # noqa: E402
from oracle_diff import OracleDiff as Diff, patch  # noqa: E402

PREAMBLE = b'#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n'


def make_cloop(path, block_size, n_blocks, level=6, seed=1, gap=0, trailing=b''):
    """Writes a cloop image of n_blocks blocks: random runs of zeros, repeated bytes and random bytes
    (so blocks compress to very different sizes); `gap` junk bytes after each stream (qemu only
    needs the stream to end within its range). Returns the raw disk bytes."""
    rnd = random.Random(seed)
    disk = bytearray()
    streams = []
    for _ in range(n_blocks):
        block = bytearray()
        while len(block) < block_size:
            kind = rnd.random()
            n = min(block_size - len(block), rnd.choice((512, 1024, 4096, 333)))
            if kind < 0.3:
                block += bytes(n)
            elif kind < 0.7:
                block += bytes([rnd.randrange(256)]) * n
            else:
                block += bytes(rnd.randrange(256) for _ in range(n))
        disk += block
        streams.append(zlib.compress(bytes(block), level) + bytes(rnd.randrange(256) for _ in range(gap)))
    hdr = PREAMBLE.ljust(128, b'\0') + struct.pack('>II', block_size, n_blocks)
    at = len(hdr) + 8 * (n_blocks + 1)
    offsets = []
    for z in streams:
        offsets.append(at)
        at += len(z)
    offsets.append(at)
    with open(path, 'wb') as f:
        f.write(hdr + struct.pack(f'>{n_blocks + 1}Q', *offsets) + b''.join(streams) + trailing)
    return bytes(disk)


def make_limit_cloop(path, block_size, span):
    """One block of block_size bytes (0x5a) whose offsets give it `span` compressed bytes: the zlib
    stream, then a sparse tail (qemu reads the range and inflates what the stream holds)."""
    z = zlib.compress(b'\x5a' * block_size, 9)
    hdr = PREAMBLE.ljust(128, b'\0') + struct.pack('>II', block_size, 1)
    at = len(hdr) + 16
    with open(path, 'wb') as f:
        f.write(hdr + struct.pack('>2Q', at, at + max(span, len(z))) + z)
        f.truncate(at + max(span, len(z)))


def main():
    tools, status = start(__doc__, 1, sandboxed=True)
    if tools is None:
        return status
    work = tempfile.mkdtemp(prefix='instar-cloop-')
    try:
        d = Diff(sys.argv[1], work)
        p = d.path
        # ---- fixtures: zlib blocks of various sizes and levels ----
        make_cloop(p('b64k.cloop'), 65536, 24, level=6, seed=1)
        make_cloop(p('b512.cloop'), 512, 300, level=9, seed=2)
        make_cloop(p('b4k.cloop'), 4096, 100, level=1, seed=3, gap=17)
        make_cloop(p('b256k.cloop'), 256 * 1024, 5, level=0, seed=4)  # stored: streams larger than blocks
        make_cloop(p('b1m.cloop'), 1 << 20, 3, level=6, seed=5, trailing=b'tail')
        make_cloop(p('empty.cloop'), 4096, 0, seed=6)
        make_cloop(p('b1536.cloop'), 1536, 40, level=6, seed=7)
        src = open(p('b4k.cloop'), 'rb').read()
        off2 = struct.unpack_from('>Q', src, 136 + 16)[0]
        damaged = {
            'bs1000': [(128, '>I', 1000)],
            'bs0': [(128, '>I', 0)],
            'bsbig': [(128, '>I', 128 << 20)],
            'nbig': [(132, '>I', 0x20000000)],
            'ntoomany': [(132, '>I', 0x4000000)],
            'nonmono': [(136 + 8 * 5, '>Q', 10)],
            'hugeblock': [(136 + 8 * 100, '>Q', 1 << 40)],
            'shortblock': [(136 + 16, '>Q', off2 - 3)],
            'pastend': [(136 + 8 * 99, '>Q', 1 << 30), (136 + 8 * 100, '>Q', (1 << 30) + 50)],
        }
        for name, edits in damaged.items():
            patch(p('b4k.cloop'), p(f'{name}.cloop'), edits)
        good = ['b64k.cloop', 'b512.cloop', 'b4k.cloop', 'b256k.cloop', 'b1m.cloop', 'empty.cloop', 'b1536.cloop']
        bad = ['bs1000.cloop', 'bs0.cloop', 'bsbig.cloop', 'nbig.cloop', 'ntoomany.cloop', 'nonmono.cloop',
               'hugeblock.cloop']

        # ---- info ----
        for img in good + bad + ['shortblock.cloop', 'pastend.cloop']:
            d.same(f'info {img}', ['info', img])
            d.same(f'info --output=json {img}', ['info', '--output=json', img])

        # ---- convert from cloop, map, compare ----
        for img in good:
            d.same(f'convert {img} -O raw', ['convert', '-O', 'raw', img, '@out.raw'], outputs=['out.raw'])
            d.same(f'map {img}', ['map', img])
            d.same(f'map --output=json {img}', ['map', '--output=json', img])
        d.same('convert b64k.cloop -O qcow2', ['convert', '-O', 'qcow2', 'b64k.cloop', '@out.qcow2'],
               outputs=['out.qcow2'])
        for img in bad:
            d.same(f'convert {img} (refused)', ['convert', '-O', 'raw', img, '@out.raw'], outputs=[])
        for img in ['shortblock.cloop', 'pastend.cloop']:
            d.same(f'convert {img} (I/O error)', ['convert', '-O', 'raw', img, '@out.raw'], outputs=[],
                   named_source=True)
        run_fixture([QEMUS['7.2'][0], 'convert', '-O', 'raw', 'b4k.cloop', 'b4k.raw'], cwd=work, check=True)
        d.same('compare b4k.cloop b4k.raw', ['compare', '-F', 'raw', 'b4k.cloop', 'b4k.raw'])
        d.same('compare b64k.cloop b1m.cloop', ['compare', 'b64k.cloop', 'b1m.cloop'])
        # -p steps by block-status answers: qemu's cloop driver gives none, so the whole disk is one
        # data run read 2 MiB at a time (instar's reader names no status boundary either).
        make_cloop(p('large.cloop'), 1 << 20, 40, level=1, seed=8)
        run_fixture([QEMUS['7.2'][0], 'convert', '-O', 'raw', 'large.cloop', 'large.raw'], cwd=work, check=True)
        d.same('compare -p large.cloop large.raw', ['compare', '-p', '-F', 'raw', 'large.cloop', 'large.raw'])
        d.same('compare -p large.cloop large.cloop', ['compare', '-p', 'large.cloop', 'large.cloop'])

        # ---- qemu's limits exactly: a 64 MiB block (MAX_BLOCK_SIZE) in a 128 MiB compressed range
        # (2 * MAX_BLOCK_SIZE). qemu allocates both buffers; instar's sandbox holds both at its
        # default memory, and below it names the buffer (divergence cloop-guest-memory). ----
        make_limit_cloop(p('limit.cloop'), 64 << 20, 128 << 20)
        d.same('info limit.cloop', ['info', 'limit.cloop'])
        d.same('convert limit.cloop -O raw', ['convert', '-O', 'raw', 'limit.cloop', '@out.raw'], outputs=['out.raw'])
        make_limit_cloop(p('block64m.cloop'), 64 << 20, 0)
        for img, mem, buf, size in (('limit.cloop', '128M', 'compressed_block', (128 << 20) + 1),
                                    ('block64m.cloop', '64M', 'uncompressed_block', 64 << 20)):
            r = subprocess.run([d.instar, 'convert', '--max-guest-memory', mem, '-O', 'raw', img, 'small.raw'],
                               cwd=work, capture_output=True, text=True)
            want = (f"qemu-img: Could not open '{img}': Could not allocate {buf} of {size} bytes in the sandbox "
                    "(see --max-guest-memory)\n")
            d.results.append((f'{img}, --max-guest-memory {mem}: the buffer named',
                              [] if (r.returncode, r.stderr) == (1, want) else [f'{r.returncode} {r.stderr!r}']))

        # ---- what qemu-img refuses for a read-only format ----
        d.read_only_format_cases('cloop', 'b4k.cloop', damaged=bad[0])
        return report(d.results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
