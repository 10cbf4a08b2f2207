#!/usr/bin/env python3
"""Test fixtures' edits of a qcow2 header: incompatible feature bits set in place (bit 0 dirty,
bit 1 corrupt). Imported by the tests, or run as a fixture step:

usage: qcow2_header.py IMAGE BITS
"""
import struct
import sys

INCOMPATIBLE_FEATURES = 72  # the header's incompatible_features field (big-endian u64)


def set_incompat_bits(path, bits):
    with open(path, "r+b") as f:
        f.seek(INCOMPATIBLE_FEATURES)
        v = struct.unpack(">Q", f.read(8))[0]
        f.seek(INCOMPATIBLE_FEATURES)
        f.write(struct.pack(">Q", v | bits))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    set_incompat_bits(sys.argv[1], int(sys.argv[2], 0))
