#!/usr/bin/env python3
"""Differential check of the vpc writer against `qemu-img convert -O vpc` (7.2 and 10.0).

usage: vpc_write_differential.py VPC_HOSTED_CONVERT

For each raw source (random data, zeros, holes, partial blocks, a size that is not a multiple of
512) and each option set (subformat fixed/dynamic, force_size, -S 0), the hosted tool (the convert
engine over raw's reader and the vpc writer) and each qemu-img convert the same source; the two files must have the same size and the same bytes apart from the
footer's random fields (timestamp, checksum, unique id, in every footer copy), the same data/hole
map, `qemu-img compare` must call ours identical to the source under both qemus, and vhdiinfo must
open ours.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, data_segments, report, run, start  # noqa: E402

FORMAT = 'vpc'
VHDIINFO = '/usr/bin/vhdiinfo'
KiB, MiB = 1 << 10, 1 << 20
# The engine's 2 MiB buffer and the writer's few KiB (create's 1 MiB BAT chunk is freed before):
# memory must not grow with the disk.
PEAK_MEMORY_LIMIT = 3 * MiB
# Footer bytes qemu fills from the clock and the RNG: timestamp, checksum, unique id.
FOOTER_RANDOM = [(24, 28), (64, 84)]


def make_sources(d):
    """name -> path of each raw source."""
    rnd = os.urandom
    srcs = {}

    def mk(name, size, pieces):
        path = os.path.join(d, name + '.raw')
        with open(path, 'wb') as f:
            f.truncate(size)
            for off, data in pieces:
                f.seek(off)
                f.write(data)
        srcs[name] = path

    mk('random-6m', 6 * MiB, [(0, rnd(6 * MiB))])
    mk('holes-30m', 30 * MiB, [(0, rnd(5 * MiB)), (20 * MiB, rnd(MiB)), (29 * MiB + 512, rnd(3 * KiB))])
    mk('zeros-sparse-16m', 16 * MiB, [])
    mk('zeros-written-5m', 5 * MiB, [(0, bytes(5 * MiB))])
    mk('partial-3m100k', 3 * MiB + 100 * KiB, [(0, rnd(3 * MiB + 100 * KiB))])
    mk('odd-1000037', 1000037, [(0, rnd(1000037))])
    # Zero runs inside data: a whole 2 MiB block, 1 MiB, and runs shorter than 4 KiB.
    mk('zero-runs-9m', 9 * MiB, [(0, rnd(2 * MiB)), (2 * MiB, bytes(2 * MiB)), (4 * MiB, rnd(MiB)),
                                  (5 * MiB, bytes(MiB)), (6 * MiB, rnd(3 * MiB)),
                                  (6 * MiB + 4096, bytes(2048)), (7 * MiB, bytes(64 * KiB))])
    mk('sparse-tail-block', 4 * MiB + 4096, [(4 * MiB, rnd(4096))])
    # BAT entries past the first BAT sector (128 blocks), blocks allocated out of index order.
    mk('sparse-1g', 1 << 30, [(700 * MiB + 4096, rnd(8192)), (300 * MiB, rnd(MiB)), ((1 << 30) - 512, rnd(512))])
    return srcs


# -o settings, optionally followed by convert flags after a '|'.
OPTIONS = ['', 'subformat=dynamic', 'subformat=fixed', 'force_size=on', 'subformat=fixed,force_size=on',
           '|-S 0', 'subformat=fixed|-S 0']

DYNAMIC_OPTIONS = ['', 'force_size=on']


def split_case(case):
    opts, _, flags = case.partition('|')
    return (['-o', opts] if opts else []) + flags.split()


def qemu_version(qemu_img):
    m = re.search(r'version (\d+)\.(\d+)\.(\d+)', run([qemu_img, '--version']))
    return int(m.group(1)) * 10000 + int(m.group(2)) * 100 + int(m.group(3))


def footer_offsets(b):
    """Where the footers lie: the last 512 bytes, and offset 0 when the image is dynamic."""
    offs = [len(b) - 512]
    if b[:8] == b'conectix':
        offs.append(0)
    return offs


def masked(path):
    with open(path, 'rb') as f:
        b = bytearray(f.read())
    for off in footer_offsets(b):
        for s, e in FOOTER_RANDOM:
            b[off + s:off + e] = bytes(e - s)
    return bytes(b)


def first_difference(a, b):
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def compare_allocation(mine, theirs):
    """Allocated ranges must match, except qemu's first 4 KiB block: file-posix allocates it when it
    grows the empty file of a fixed disk (allocate_first_block), a host set_length matter that the
    create differential leaves uncompared too."""
    a, b = data_segments(mine), data_segments(theirs)
    if b and b[0][0] == 0 and (not a or a[0][0] != 0):
        b = [(max(s, 4096), e) for s, e in b if e > 4096]
    return [] if a == b else [f'data map {a[:6]} != {b[:6]}']


def check(tool, src, opts, ver, qemu_img, version, d):
    problems = []
    mine, theirs = os.path.join(d, 'ours.vhd'), os.path.join(d, 'qemu.vhd')
    for p in (mine, theirs):
        if os.path.exists(p):
            os.unlink(p)
    args = split_case(opts)
    r = subprocess.run([tool] + args + ['--qemu-version', str(version), src, mine], capture_output=True, text=True)
    if r.returncode != 0:
        return [f'hosted convert failed: {r.stdout.strip()} {r.stderr.strip()}']
    peak = json.loads(r.stdout)['peak-memory']
    if peak > PEAK_MEMORY_LIMIT:
        problems.append(f'guest memory peak {peak} > {PEAK_MEMORY_LIMIT}')
    q = subprocess.run([qemu_img, 'convert', '-f', 'raw', '-O', FORMAT] + args + [src, theirs],
                       capture_output=True, text=True)
    if q.returncode != 0:
        return [f'qemu-img convert failed: {q.stderr.strip()}']
    if os.path.getsize(mine) != os.path.getsize(theirs):
        problems.append(f'size {os.path.getsize(mine)} != {os.path.getsize(theirs)}')
    a, b = masked(mine), masked(theirs)
    if a != b:
        problems.append(f'bytes differ at {first_difference(a, b)} (after masking)')
    problems += compare_allocation(mine, theirs)
    for v, (qi, _) in QEMUS.items():
        c = subprocess.run([qi, 'compare', '-f', 'raw', '-F', FORMAT, src, mine], capture_output=True, text=True)
        if c.returncode != 0:
            problems.append(f'qemu-img {v} compare: {c.stdout.strip()} {c.stderr.strip()}')
    if subprocess.run([VHDIINFO, mine], capture_output=True).returncode != 0:
        problems.append('vhdiinfo failed')
    return problems


def main():
    tools, status = start(__doc__.strip().splitlines()[2], 1, required=(VHDIINFO,))
    if tools is None:
        return status
    tool = tools[0]
    results = []
    versions = {ver: qemu_version(qi) for ver, (qi, _) in QEMUS.items()}
    with tempfile.TemporaryDirectory() as d:
        srcs = make_sources(d)
        for name, src in srcs.items():
            # No fixed disks of the 1 GiB source: the check reads whole files.
            for opts in (DYNAMIC_OPTIONS if name == 'sparse-1g' else OPTIONS):
                for ver, (qemu_img, _) in QEMUS.items():
                    results.append((f'{name} {" ".join(split_case(opts))} [qemu {ver}]',
                                    check(tool, src, opts, ver, qemu_img, versions[ver], d)))
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
