#!/usr/bin/env python3
"""Differential check of convert into qcow2 (guest/convert's engine + qcow2's writer) against
`qemu-img convert -O qcow2` (7.2 and 10.0).

Raw sources are made here (random data, written zeros, zero gaps inside clusters, holes, sizes that
are not cluster or sector multiples, enough data to cross L2-table and refcount-block boundaries and
to grow the refcount table with small clusters). Each case converts with the hosted tool and with
both qemu-imgs and requires the same bytes, the same `-p` progress display, a clean `qemu-img check`
and `qemu-img compare` finding the result identical to the source. Each option is covered once, not every combination.

With a second tool (a hosted convert whose opener reads qcow2, once the qcow2 reader is built in),
qcow2 sources made with qemu-img/qemu-io are converted too: backing chains (full, and -B leaving the
backing visible), overlays with smaller clusters than the target, compressed sources, zero clusters,
several qcow2 sources, sizes that are not cluster multiples.

usage: qcow2_convert_differential.py HOSTED_CONVERT [HOSTED_CONVERT_QCOW2_SOURCES]
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
    ('-B -S 0', ['mixed'], ['-S', '0', '-B', 'back_data.raw', '-F', 'raw'], {}),
    ('-B preallocated extended_l2', ['mixed'], ['-B', 'back_data.raw', '-F', 'raw'],
     {'preallocation': 'metadata', 'extended_l2': 'on'}),
]


# qcow2 sources: (name, qemu-img create args, qemu-io commands). Made in order (backings first).
QCOW2_SOURCES = [
    ('base', ['-o', 'cluster_size=65536'], '4M',
     ['write -P 0x11 0 1M', 'write -P 0x22 2M 300k', 'write -z 3M 64k']),
    ('ov4k', ['-o', 'cluster_size=4096', '-b', 'base.qcow2', '-F', 'qcow2'], '6M',
     ['write -P 0x33 512k 100k', 'write -z 2M 8k', 'write -P 0x44 5M 4k', 'write -P 0 1M 64k']),
    ('ov64', ['-b', 'base.qcow2', '-F', 'qcow2'], '4M', ['write -P 0x55 64k 128k', 'write -z 2M 64k']),
    ('odd', [], '1000000', ['write -P 0x66 4096 500000']),
]
CHAINS = {'base': ['base.qcow2'], 'ov4k': ['ov4k.qcow2', 'base.qcow2'], 'ov64': ['ov64.qcow2', 'base.qcow2'],
          'odd': ['odd.qcow2'], 'comp': ['comp.qcow2']}
ALIGN = {'base': 65536, 'ov4k': 4096, 'ov64': 65536, 'odd': 65536, 'comp': 65536}
# (label, sources, convert flags, -o options)
QCOW2_CASES = [
    ('qcow2 chain 4k over 64k', ['ov4k'], [], {}),
    ('qcow2 chain 64k', ['ov64'], [], {}),
    ('qcow2 chain -B', ['ov4k'], ['-B', 'base.qcow2', '-F', 'qcow2'], {}),
    ('qcow2 chain -B 64k', ['ov64'], ['-B', 'base.qcow2', '-F', 'qcow2'], {}),
    ('qcow2 compressed source', ['comp'], [], {}),
    ('qcow2 chain -c', ['ov4k'], ['-c'], {}),
    ('qcow2 chain -S 0', ['ov4k'], ['-S', '0'], {}),
    ('qcow2 chain to 512', ['ov4k'], [], {'cluster_size': '512'}),
    ('qcow2 chain to extended_l2', ['ov4k'], [], {'extended_l2': 'on'}),
    ('qcow2 two sources', ['ov4k', 'comp'], [], {}),
    ('qcow2 odd size -c', ['odd'], ['-c'], {}),
]


def make_qcow2_sources(tmp):
    qemu_img, qemu_io = QEMUS['7.2']
    for name, args, size, cmds in QCOW2_SOURCES:
        subprocess.run([qemu_img, 'create', '-f', 'qcow2'] + args + [name + '.qcow2', size], check=True,
                       capture_output=True, cwd=tmp)
        io = [qemu_io]
        for c in cmds:
            io += ['-c', c]
        subprocess.run(io + [name + '.qcow2'], check=True, capture_output=True, cwd=tmp)
    subprocess.run([qemu_img, 'convert', '-c', '-O', 'qcow2', 'base.qcow2', 'comp.qcow2'], check=True,
                   capture_output=True, cwd=tmp)


def compare_case(tool, tmp, label, ours_args, qemu_args, results, src_fmt):
    ours = os.path.join(tmp, 'ours.qcow2')
    problems = []
    proc = subprocess.run([tool, '-p'] + ours_args + [ours], capture_output=True, text=True, cwd=tmp)
    if proc.returncode != 0:
        problems.append(f'hosted tool failed: {proc.stdout.strip()} {proc.stderr.strip()}')
    else:
        chk = subprocess.run([QEMUS['7.2'][0], 'check', '-f', 'qcow2', ours], capture_output=True, text=True, cwd=tmp)
        if chk.returncode != 0:
            problems.append(f'check: {chk.stdout.strip()} {chk.stderr.strip()}')
    for ver, (qemu_img, _) in QEMUS.items():
        theirs = os.path.join(tmp, f'qemu-{ver}.qcow2')
        q = subprocess.run([qemu_img, 'convert', '-p', '-f', src_fmt, '-O', 'qcow2'] + qemu_args + [theirs],
                           check=True, capture_output=True, text=True, cwd=tmp)
        p = list(problems)
        if not p and proc.stderr != q.stdout:
            p.append(f'-p display: ours {proc.stderr!r} qemu {q.stdout!r}')
        if not p:
            a = open(ours, 'rb').read()
            b = open(theirs, 'rb').read()
            if a != b:
                first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
                p.append(f'bytes differ: sizes {len(a)} vs {len(b)}, first difference at {first:#x}')
        results.append((f'{label} [qemu {ver}]', p))


def opt_string(opts):
    return ','.join(f'{k}={v}' for k, v in opts.items())


def main():
    tools, status = start(__doc__.strip().splitlines()[-1], 2 if len(sys.argv) == 3 else 1)
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
            proc = subprocess.run([tool, '-p'] + flags + o + src_paths + [ours], capture_output=True, text=True,
                                  cwd=tmp)
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
                q = subprocess.run([qemu_img, 'convert', '-p', '-f', 'raw', '-O', 'qcow2'] + flags + o + src_paths
                                   + [theirs], check=True, capture_output=True, text=True, cwd=tmp)
                p = list(problems)
                if not p and proc.stderr != q.stdout:
                    p.append(f'-p display: ours {proc.stderr!r} qemu {q.stdout!r}')
                if not p:
                    a = open(ours, 'rb').read()
                    b = open(theirs, 'rb').read()
                    if a != b:
                        first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
                        p.append(f'bytes differ: sizes {len(a)} vs {len(b)}, first difference at {first:#x}')
                results.append((f'{label} [qemu {ver}]', p))
        if len(tools) > 1:
            qtool = os.path.abspath(tools[1])
            make_qcow2_sources(tmp)
            for label, srcs, flags, opts in QCOW2_CASES:
                o = ['-o', opt_string(opts)] if opts else []
                ours_args = list(flags) + o
                for src in srcs:
                    ours_args += ['--alignment', str(ALIGN[src]), ':'.join(CHAINS[src])]
                qemu_args = list(flags) + o + [CHAINS[src][0] for src in srcs]
                compare_case(qtool, tmp, label, ours_args, qemu_args, results, 'qcow2')
        else:
            print('qcow2 sources: no qcow2-reading tool given, those cases not run')
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
