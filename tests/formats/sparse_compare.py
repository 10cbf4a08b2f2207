"""Byte-for-byte comparison of two files that reads only where either file stores data.

A hole (SEEK_DATA / SEEK_HOLE) reads as zeros by definition, so bytes outside both files' data
ranges are equal without being read; only the union of the two files' data ranges is read and
compared, in chunks. The answer is the one a comparison of the whole contents gives, without
reading the gigabytes of holes of a large sparse image (a 1 GiB static vdi, a 3 GiB raw copy)
into memory."""
import os

CHUNK = 4 << 20


def data_ranges(fd, size):
    """The (start, end) byte ranges below `size` that the open file `fd` stores (SEEK_DATA /
    SEEK_HOLE); everything else reads as zeros."""
    ranges = []
    off = 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:  # ENXIO: no data past off
            break
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        ranges.append((start, end))
        off = end
    return ranges


def _union(a, b):
    merged = []
    for start, end in sorted(a + b):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def first_difference(a, b, ignore=()):
    """None when files `a` and `b` have the same length and bytes, else (sizes, offset): the two
    lengths, and the first offset where the bytes differ (None when only the lengths differ).
    `ignore`: (start, end) byte ranges not compared (e.g. random UUIDs), within the files."""
    fa = os.open(a, os.O_RDONLY)
    try:
        fb = os.open(b, os.O_RDONLY)
        try:
            sa, sb = os.fstat(fa).st_size, os.fstat(fb).st_size
            if sa != sb:
                return (sa, sb), None
            for start, end in _union(data_ranges(fa, sa), data_ranges(fb, sb)):
                for off in range(start, end, CHUNK):
                    n = min(CHUNK, end - off)
                    ca, cb = bytearray(os.pread(fa, n, off)), bytearray(os.pread(fb, n, off))
                    for i0, i1 in ignore:
                        lo, hi = max(i0, off), min(i1, off + n)
                        if lo < hi:
                            ca[lo - off:hi - off] = bytes(hi - lo)
                            cb[lo - off:hi - off] = bytes(hi - lo)
                    if ca != cb:
                        return (sa, sb), off + next(k for k in range(n) if ca[k] != cb[k])
            return None
        finally:
            os.close(fb)
    finally:
        os.close(fa)
