#!/usr/bin/env python3
"""Differential check of the vhdx writer against `qemu-img convert -O vhdx` (7.2 and 10.0).

usage: vhdx_write_differential.py VHDX_HOSTED_CONVERT

For each raw source (random data, zeros, holes, partial blocks, a size that is not a multiple of
512, enough blocks to wrap a 1 MiB log, data past the first BAT chunk) and each option set
(subformat fixed/dynamic, block_size 1M/8M/16M, block_state_zero, log_size, -S 0 where the source
has zeros or holes), the hosted tool (the convert engine over raw's reader
and the vhdx writer, given the compared qemu's version for the creator string) and each qemu-img
convert the same source. The files must have the same size and
the same bytes apart from the random fields: both headers' checksum, sequence number and write
GUIDs, the page 83 GUID, and each log entry's checksum, log GUID and the rest of its descriptor
sectors (qemu leaves them uninitialised; ours must be zeros). Beyond that: the headers'
sequence numbers are one apart with the same header current, the log entries' sequence numbers,
the same data/hole map, `qemu-img compare` identical and `qemu-img check` clean (each file under the
qemu it is compared with; every case runs under both).
"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'formats'))
from differential_support import QEMUS, data_segments, read_head, report, run, start  # noqa: E402

FORMAT = 'vhdx'
KiB, MiB = 1 << 10, 1 << 20
# The engine's 2 MiB buffer and the writer's few KiB (create's 1 MiB BAT chunk is freed before):
# memory must not grow with the disk.
PEAK_MEMORY_LIMIT = 3 * MiB
HEADERS = (64 * KiB, 128 * KiB)
LOG_HEADER, LOG_DESCRIPTOR = 64, 32  # a log entry header's and a descriptor's sizes


def make_sources(d):
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
    mk('zero-runs-9m', 9 * MiB, [(0, rnd(2 * MiB)), (2 * MiB, bytes(2 * MiB)), (4 * MiB, rnd(MiB)),
                                  (5 * MiB, bytes(MiB)), (6 * MiB, rnd(3 * MiB)),
                                  (6 * MiB + 4096, bytes(2048)), (7 * MiB, bytes(64 * KiB))])
    # 140 blocks of 1 MiB each holding 4 KiB: 140 log entries of 8 KiB wrap a 1 MiB log.
    mk('log-wrap-140m', 140 * MiB, [(i * MiB + 8192, rnd(4096)) for i in range(140)])
    # Past the first chunk of blocks (4096 of 1 MiB, 256 of 16 MiB), where a sector bitmap entry
    # sits between the payload entries of the BAT.
    mk('past-chunk-4g', (4 << 30) + 3 * MiB, [(0, rnd(4096)), ((4 << 30) + MiB + 512, rnd(8192)),
                                                 ((4 << 30) + 3 * MiB - 512, rnd(512))])
    return srcs


# -o settings, optionally followed by convert flags after a '|'.
# (Sources up to 1 GiB get qemu's automatic 8 MiB blocks: '' is block_size=8M for them.)
OPTIONS = ['', 'block_size=1M', 'subformat=fixed', 'subformat=fixed,block_state_zero=off',
           'block_state_zero=off,block_size=1M', 'log_size=2M,block_size=1M', 'block_size=1M|-S 0']
# -S 0 only changes what convert does with zeros and holes: not on the sources that have none
# (random data to the end), where it would repeat 'block_size=1M'.
DATA_OPTIONS = [o for o in OPTIONS if '-S' not in o]
# The log-wrap source only where blocks are 1 MiB and the log 1 MiB (where it wraps).
WRAP_OPTIONS = ['block_size=1M']
# The 4 GiB source: dynamic disks only (the check reads whole files).
LARGE_OPTIONS = ['block_size=1M', 'block_state_zero=off,block_size=1M', 'block_size=8M', '']
SOURCE_OPTIONS = {'random-6m': DATA_OPTIONS, 'partial-3m100k': DATA_OPTIONS, 'odd-1000037': DATA_OPTIONS,
                  'log-wrap-140m': WRAP_OPTIONS, 'past-chunk-4g': LARGE_OPTIONS}


# qemu fills the rest of a log entry's first sector (after the header and descriptor) from an
# uninitialised buffer: zeros from a fresh heap, but the perturb byte under glibc's MALLOC_PERTURB_
# (which meson test sets). The oracle runs without it, so its bytes are the zeros qemu normally
# leaves (and the writer writes).
QEMU_ENV = {k: v for k, v in os.environ.items() if k != 'MALLOC_PERTURB_'}


def split_case(case):
    opts, _, flags = case.partition('|')
    return (['-o', opts] if opts else []) + flags.split()


def qemu_version(qemu_img):
    m = re.search(r'version (\d+)\.(\d+)\.(\d+)', run([qemu_img, '--version']))
    return int(m.group(1)) * 10000 + int(m.group(2)) * 100 + int(m.group(3))


def le(b, off, n):
    return int.from_bytes(b[off:off + n], 'little')


def log_region(b):
    h = HEADERS[0] if le(b, HEADERS[0] + 8, 8) > le(b, HEADERS[1] + 8, 8) else HEADERS[1]
    return le(b, h + 72, 8), le(b, h + 68, 4)


def log_entries(b):
    """(position, sequence number, entry length, tail, flushed offset) of each entry in the log."""
    off, length = log_region(b)
    out = []
    for pos in range(0, length, 4096):
        e = off + pos
        if b[e:e + 4] == b'loge':
            out.append((pos, le(b, e + 16, 8), le(b, e + 8, 4), le(b, e + 12, 4), le(b, e + 48, 8)))
    return out


# What mask() zeroes lies in the headers, the log and the metadata region: the file is read whole
# up to their end (found from the headers and the region table, in the first 256 KiB) and masked.
# Past that the files are compared where either has data, since holes read as zeros: the log-wrap
# files are 148 MiB long but hold about 3 MiB.
REGION_TABLE_END = 256 * KiB
CHUNK = 16 * MiB


def structures_end(b):
    """Where the masked structures end: the log region and the metadata's page 83 field."""
    off, length = log_region(b)
    return max(off + length, le(b, 192 * KiB + 64, 8) + 64 * KiB + 32)


def payload_difference(a, b, start, segments):
    """The first offset at or past `start`, within `segments`, where files a and b differ, or None."""
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        for seg_start, seg_end in segments:
            off = max(seg_start, start)
            while off < seg_end:
                n = min(seg_end - off, CHUNK)
                fa.seek(off)
                fb.seek(off)
                x, y = fa.read(n), fb.read(n)
                if x != y:
                    return off + first_difference(x, y)
                off += n
    return None


def mask(b):
    """Zeroes the random fields of the file's bytes `b` (a bytearray) in place."""
    for h in HEADERS:
        b[h + 4:h + 48] = bytes(44)  # checksum, sequence number, file and data write GUIDs
    md = le(b, 192 * KiB + 64, 8)
    b[md + 64 * KiB + 16:md + 64 * KiB + 32] = bytes(16)  # page 83 data
    off, length = log_region(b)
    for pos, *_ in log_entries(b):
        e = off + pos
        b[e + 4:e + 8] = bytes(4)     # entry checksum
        b[e + 32:e + 48] = bytes(16)  # log GUID
        # The rest of the descriptor sectors after the last descriptor: qemu's vhdx_log_write
        # builds the entry in an uninitialised qemu_blockalign() buffer, so these bytes are
        # whatever that memory held (zeros from a fresh heap, most of the time; a reused chunk's
        # bytes now and then, which failed CI once at the log-wrap case). The writer writes zeros.
        start, end = descriptor_slack(b, e)
        b[start:end] = bytes(end - start)


def descriptor_slack(b, e):
    """[start, end) of the bytes after the last descriptor of the log entry at `e`."""
    count = le(b, e + 24, 4)
    return e + LOG_HEADER + LOG_DESCRIPTOR * count, e + desc_sectors(count) * 4096


def slack_is_zero(b):
    off, _ = log_region(b)
    return all(not any(b[slice(*descriptor_slack(b, off + pos))]) for pos, *_ in log_entries(b))


def desc_sectors(count):
    """Sectors holding a log entry's header and `count` 32-byte descriptors (MS-VHDX 2.3.1)."""
    return (LOG_HEADER + LOG_DESCRIPTOR * count + 4095) // 4096


def header_order(b):
    s = [le(b, h + 8, 8) for h in HEADERS]
    return s[1] - s[0]


def first_difference(a, b):
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def check(tool, src, opts, ver, qemu_img, version, d):
    problems = []
    mine, theirs = os.path.join(d, 'ours.vhdx'), os.path.join(d, 'qemu.vhdx')
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
                       capture_output=True, text=True, env=QEMU_ENV)
    if q.returncode != 0:
        return [f'qemu-img convert failed: {q.stderr.strip()}']
    size_a, size_b = os.path.getsize(mine), os.path.getsize(theirs)
    if size_a != size_b:
        problems.append(f'size {size_a} != {size_b}')
    a, b = read_head(mine, REGION_TABLE_END), read_head(theirs, REGION_TABLE_END)
    head = max(structures_end(a), structures_end(b), REGION_TABLE_END)
    a, b = read_head(mine, head), read_head(theirs, head)
    if not slack_is_zero(a):
        problems.append('a log entry of ours has nonzero bytes after its descriptors')
    # What the masking zeroes, read first.
    order_a, order_b = header_order(a), header_order(b)
    entries_a, entries_b = log_entries(a), log_entries(b)
    mask(a)
    mask(b)
    map_a, map_b = data_segments(mine), data_segments(theirs)
    differ = first_difference(a, b) if a != b else payload_difference(mine, theirs, head, sorted(set(map_a + map_b)))
    if differ is not None:
        problems.append(f'bytes differ at {differ} (after masking)')
    if order_a != order_b or abs(order_a) != 1:
        problems.append(f'header sequence numbers: ours {order_a} apart, qemu {order_b}')
    if entries_a != entries_b:
        problems.append(f'log entries {entries_a[:4]} != {entries_b[:4]}')
    if map_a != map_b:
        problems.append(f'data map {map_a[:6]} != {map_b[:6]}')
    # Each file is checked by the qemu it is compared with (the matrix runs every case under both).
    for v, qi in ((ver, qemu_img),):
        c = subprocess.run([qi, 'compare', '-f', 'raw', '-F', FORMAT, src, mine], capture_output=True, text=True)
        if c.returncode != 0:
            problems.append(f'qemu-img {v} compare: {c.stdout.strip()} {c.stderr.strip()}')
        c = subprocess.run([qi, 'check', '-f', FORMAT, mine], capture_output=True, text=True)
        if c.returncode != 0 or 'No errors were found' not in c.stdout:
            problems.append(f'qemu-img {v} check: {c.stdout.strip()} {c.stderr.strip()}')
    return problems


def main():
    tools, status = start(__doc__.strip().splitlines()[2], 1)
    if tools is None:
        return status
    tool = tools[0]
    results = []
    versions = {ver: qemu_version(qi) for ver, (qi, _) in QEMUS.items()}
    with tempfile.TemporaryDirectory() as d:
        for name, src in make_sources(d).items():
            for opts in SOURCE_OPTIONS.get(name, OPTIONS):
                for ver, (qemu_img, _) in QEMUS.items():
                    results.append((f'{name} {" ".join(split_case(opts))} [qemu {ver}]',
                                    check(tool, src, opts, ver, qemu_img, versions[ver], d)))
    return report(results)


if __name__ == '__main__':
    sys.exit(main())
