#!/usr/bin/env python3
"""Differential check of convert into qcow2 (guest/convert's engine + qcow2's writer) against
`qemu-img convert -O qcow2` (7.2 and 10.0).

Raw sources are made here (random data, written zeros, zero gaps inside clusters, holes, sizes that
are not cluster or sector multiples, enough data to cross L2-table and refcount-block boundaries and
to grow the refcount table with small clusters). Each case converts with the hosted tool and with
both qemu-imgs and requires the same bytes, a clean `qemu-img check` and `qemu-img compare` finding
the result identical to the source. Each option is covered once, not every combination.

usage: qcow2_convert_differential.py HOSTED_CONVERT
"""
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, report, start  # noqa: E402

KIB = 1 << 10
MIB = 1 << 20


def make_source(path, size, pieces, seed):
    """A sparse raw file of `size` bytes; pieces are (offset, length, kind) with kind 'rand',
    'zero' (zeros written, so allocated) or 'gappy' (random data with zero runs of 512 B..8 KiB)."""
    rng = random.Random(seed)
    with open(path, 'wb') as f:
        f.truncate(size)
        for off, length, kind in pieces:
            f.seek(off)
            if kind == 'rand':
                f.write(rng.randbytes(length))
            elif kind == 'zero':
                f.write(bytes(length))
            elif kind == 'text':  # compressible data
                f.write((b'instar convert %d ' % off) * (length // 20) + bytes(length % 20))
            else:
                buf = bytearray(rng.randbytes(length))
                pos = 0
                while pos < length:
                    gap = rng.choice([512, 1024, 4096, 8192, 3 * 512])
                    start_gap = pos + rng.randrange(0, 16 * KIB)
                    buf[start_gap:start_gap + gap] = bytes(min(gap, max(0, length - start_gap)))
                    pos = start_gap + gap
                f.write(bytes(buf[:length]))


SOURCES = {
    # 5 MiB + 1.5 KiB: every kind of range, the last cluster partial.
    'mixed': (5 * MIB + 1536, [(0, 100000, 'rand'), (200 * KIB, 64 * KIB, 'zero'), (300 * KIB, 700 * KIB, 'gappy'),
                               (1 * MIB + 4096, 4096, 'rand'), (1 * MIB + 70000, 30000, 'text'),
                               (2 * MIB, 1 * MIB + 512, 'gappy'), (4 * MIB + 512, 512, 'rand'),
                               (5 * MIB, 1536, 'rand')], 1),
    # 10 MiB: with 512-byte clusters this crosses hundreds of L2 tables and refcount blocks and grows
    # the refcount table.
    'big': (10 * MIB, [(0, 3 * MIB, 'gappy'), (3 * MIB, 2 * MIB, 'text'), (6 * MIB, 4 * MIB - 4096, 'rand')], 2),
    'zeros': (4 * MIB, [(0, 4 * MIB, 'zero')], 3),
    'random': (3 * MIB, [(0, 3 * MIB, 'rand')], 4),
    # Not a sector multiple: qemu rounds the source up to 512 bytes.
    'odd': (1000003, [(0, 300000, 'text'), (500000, 500003, 'rand')], 5),
    'second': (1 * MIB + 512, [(4096, 200000, 'text'), (1 * MIB, 512, 'rand')], 6),
    # -B backing files: sparse and shorter than the source (zeros past it stay unallocated), and
    # full of data.
    'back_sparse': (3 * MIB, [], 7),
    'back_data': (6 * MIB, [(0, 6 * MIB, 'rand')], 8),
}

# (label, source names, convert flags, -o options). Sources concatenate when there are several.
CASES = [
    ('default', ['mixed'], [], {}),
    ('cluster_size=512', ['big'], [], {'cluster_size': '512'}),
    ('cluster_size=4k', ['mixed'], [], {'cluster_size': '4096'}),
    ('cluster_size=2M', ['mixed'], [], {'cluster_size': '2M'}),
    ('extended_l2', ['mixed'], [], {'extended_l2': 'on'}),
    ('extended_l2 16k', ['mixed'], [], {'extended_l2': 'on', 'cluster_size': '16K'}),
    ('compat=0.10', ['mixed'], [], {'compat': '0.10'}),
    ('refcount_bits=1', ['mixed'], [], {'refcount_bits': '1'}),
    ('refcount_bits=16 512', ['mixed'], [], {'cluster_size': '512'}),
    ('refcount_bits=64 512', ['big'], [], {'refcount_bits': '64', 'cluster_size': '512'}),
    ('lazy_refcounts', ['mixed'], [], {'lazy_refcounts': 'on'}),
    ('-S 0', ['mixed'], ['-S', '0'], {}),
    ('-S 64k', ['mixed'], ['-S', '64k'], {}),
    ('-S 0 4k', ['mixed'], ['-S', '0'], {'cluster_size': '4096'}),
    ('zeros', ['zeros'], [], {}),
    ('odd size', ['odd'], [], {}),
    ('two sources', ['mixed', 'second'], [], {}),
    ('preallocation=metadata', ['mixed'], [], {'preallocation': 'metadata'}),
    ('preallocation=falloc', ['mixed'], [], {'preallocation': 'falloc'}),
    ('-c', ['mixed'], ['-c'], {}),
    ('-c 4k', ['big'], ['-c'], {'cluster_size': '4096'}),
    ('-c 512', ['mixed'], ['-c'], {'cluster_size': '512'}),
    ('-c refcount_bits=1', ['mixed'], ['-c'], {'refcount_bits': '1', 'cluster_size': '4096'}),
    ('-c refcount_bits=2', ['mixed'], ['-c'], {'refcount_bits': '2', 'cluster_size': '4096'}),
    ('-c incompressible', ['random'], ['-c'], {}),
    ('-c odd size', ['odd'], ['-c'], {'cluster_size': '4096'}),
    ('-c zstd', ['mixed'], ['-c'], {'compression_type': 'zstd'}),
    ('-c extended_l2', ['mixed'], ['-c'], {'extended_l2': 'on'}),
    # -B: no zero initialisation, so zero ranges become write_zeroes (zero flags; version 2 falls
    # back to writing zeros when the image has a backing file).
    ('-B sparse', ['mixed'], ['-B', 'back_sparse.raw', '-F', 'raw'], {}),
    ('-B data', ['mixed'], ['-B', 'back_data.raw', '-F', 'raw'], {}),
    ('-B compat=0.10', ['mixed'], ['-B', 'back_data.raw', '-F', 'raw'], {'compat': '0.10'}),
    ('-B extended_l2', ['mixed'], ['-B', 'back_sparse.raw', '-F', 'raw'], {'extended_l2': 'on'}),
    ('-B 4k', ['mixed'], ['-B', 'back_data.raw', '-F', 'raw'], {'cluster_size': '4096'}),
    ('-B -c', ['mixed'], ['-c', '-B', 'back_data.raw', '-F', 'raw'], {}),
]


def opt_string(opts):
    return ','.join(f'{k}={v}' for k, v in opts.items())


def main():
    tools, status = start(__doc__.strip().splitlines()[-1], 1)
    if tools is None:
        return status
    tool = os.path.abspath(tools[0])
    results = []
    with tempfile.TemporaryDirectory(prefix='qcow2-convert-') as tmp:
        paths = {}
        for name, (size, pieces, seed) in SOURCES.items():
            paths[name] = os.path.join(tmp, name + '.raw')
            make_source(paths[name], size, pieces, seed)
        for label, srcs, flags, opts in CASES:
            src_paths = [paths[s] for s in srcs]
            o = ['-o', opt_string(opts)] if opts else []
            ours = os.path.join(tmp, 'ours.qcow2')
            problems = []
            # -B names are relative to the target's directory, as qemu-img resolves them.
            proc = subprocess.run([tool] + flags + o + src_paths + [ours], capture_output=True, text=True, cwd=tmp)
            if proc.returncode != 0:
                problems.append(f'hosted tool failed: {proc.stdout.strip()} {proc.stderr.strip()}')
            else:
                chk = subprocess.run([QEMUS['7.2'][0], 'check', '-f', 'qcow2', ours], capture_output=True, text=True,
                                     cwd=tmp)
                if chk.returncode != 0:
                    problems.append(f'check: {chk.stdout.strip()} {chk.stderr.strip()}')
                if len(src_paths) == 1 and '-B' not in flags:
                    cmp_ = subprocess.run([QEMUS['7.2'][0], 'compare', '-f', 'raw', '-F', 'qcow2', src_paths[0], ours],
                                          capture_output=True, text=True)
                    if cmp_.returncode != 0:
                        problems.append(f'compare: {cmp_.stdout.strip()}')
            for ver, (qemu_img, _) in QEMUS.items():
                theirs = os.path.join(tmp, f'qemu-{ver}.qcow2')
                subprocess.run([qemu_img, 'convert', '-f', 'raw', '-O', 'qcow2'] + flags + o + src_paths + [theirs],
                               check=True, capture_output=True, cwd=tmp)
                p = list(problems)
                if not p:
                    a = open(ours, 'rb').read()
                    b = open(theirs, 'rb').read()
                    if a != b:
                        first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
                        p.append(f'bytes differ: sizes {len(a)} vs {len(b)}, first difference at {first:#x}')
                results.append((f'{label} [qemu {ver}]', p))
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
