#!/usr/bin/env python3
"""Differential test of `instar commit` against qemu-img 7.2 and 10.0.

Each case builds a chain (qcow2 of several cluster sizes and versions, compressed, zero and partial
clusters, three-deep chains, raw and vpc bases) twice with qemu-img/qemu-io: one copy for qemu-img
commit, one for instar commit (run through a symlink named qemu-img under the matching profile).
Then: stdout, stderr and the exit status must be identical (with -p only the exit status and the
last line: the number of progress lines depends on timing); every image of the chain must have
the same content as qemu's (`qemu-img compare`), every qcow2 image must check clean, every internal
snapshot must read as qemu's, and every persistent bitmap must hold qemu's bits (read_bitmaps: the
layout may differ, divergences qcow2-empty-bitmaps and qcow2-write-bitmaps). The files in EXACT
(tops with an external data file, emptied) must equal qemu's byte for byte, holes included. How many
other images came out byte-identical to qemu's is printed (not required: instar appends new clusters
where qemu reuses free space first). Error cases compare the messages only. A few cases
instar refuses on purpose (REFUSED) are checked for instar's own message.

Usage: test_commit_oracle.py INSTAR QEMU72 QEMU10 QEMU_IO
"""
import filecmp
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from oracle_retry import run_fixture, run_normalised  # noqa: E402

# Sets a qcow2 header's incompatible feature bits, as a fixture step.
QCOW2_HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats", "qcow2_header.py")
from differential_support import data_segments  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bitmap"))
from test_bitmap_oracle import read_bitmaps  # noqa: E402


def q(*a):
    return ["QIMG"] + list(a)


def io(fmt, f, *ops):
    cmd = ["QIO", "-f", fmt]
    for op in ops:
        cmd += ["-c", op]
    return cmd + [f]


BASE_DATA = ["write -P 0x11 0 5M", "write -P 0x12 7M 1M"]
TOP_DATA = ["write -P 0x21 0 4k", "write -P 0x22 60k 70k", "write -z 1M 64k", "write -z 1100k 3k",
            "write -P 0x23 2047k 2k", "write -P 0x24 6M 300k", "write -P 0x25 8388096 512"]


def two(base_opts=(), top_opts=(), base_fmt="qcow2", top_data=TOP_DATA, base_size="8M", top_size=None,
        base_data=BASE_DATA):
    """b.<fmt> (with base_data) under t.qcow2 (with top_data)."""
    b = "b." + ("vhd" if base_fmt == "vpc" else base_fmt)
    cmds = [q("create", "-q", "-f", base_fmt, *base_opts, b, base_size), io(base_fmt, b, *base_data)]
    cmds.append(q("create", "-q", "-f", "qcow2", *top_opts, "-b", b, "-F", base_fmt, "t.qcow2",
                  *([top_size] if top_size else [])))
    if top_data:
        cmds.append(io("qcow2", "t.qcow2", *top_data))
    return cmds, ["t.qcow2", b]


def three(b_opts=(), m_opts=(), t_opts=()):
    """b.qcow2 <- m.qcow2 <- t.qcow2, each with data of its own over the one below."""
    cmds = [q("create", "-q", "-f", "qcow2", *b_opts, "b.qcow2", "8M"), io("qcow2", "b.qcow2", *BASE_DATA),
            q("create", "-q", "-f", "qcow2", *m_opts, "-b", "b.qcow2", "-F", "qcow2", "m.qcow2"),
            io("qcow2", "m.qcow2", "write -P 0x31 100k 3M", "write -z 5M 1M", "write -P 0x32 7900k 8k"),
            q("create", "-q", "-f", "qcow2", *t_opts, "-b", "m.qcow2", "-F", "qcow2", "t.qcow2"),
            io("qcow2", "t.qcow2", *TOP_DATA)]
    return cmds, ["t.qcow2", "m.qcow2", "b.qcow2"]


SCENARIOS = {
    "plain": two(),
    "c512": two(("-o", "cluster_size=512"), ("-o", "cluster_size=512")),
    "b4k_t512": two(("-o", "cluster_size=4k"), ("-o", "cluster_size=512")),
    "b2m_t64k": two(("-o", "cluster_size=2M"),),
    "b512_t2m": two(("-o", "cluster_size=512"), ("-o", "cluster_size=2M")),
    "v2": two(("-o", "compat=0.10"), ("-o", "compat=0.10")),
    "refbits1": two(("-o", "refcount_bits=1"), ("-o", "refcount_bits=64")),
    "tl2": two((), ("-o", "extended_l2=on")),
    "tcompressed": two(top_data=["write -c -P 0x41 0 64k", "write -c -P 0x42 3M 64k", "write -P 0x43 5M 4k"]),
    "empty_top": two(top_data=[]),
    "raw_base": two(base_fmt="raw"),
    "vpc_base": two(("-o", "subformat=fixed,force_size=on"), base_fmt="vpc"),
    "vpc_dyn_base": two(("-o", "force_size=on"), base_fmt="vpc"),
    "smaller_top": two(top_size="4M", top_data=["write -P 0x51 1M 1M"]),
    "three": three(),
    "three_mixed": three(("-o", "cluster_size=4k"), ("-o", "cluster_size=2M"), ("-o", "cluster_size=512")),
    "three_v2": three(("-o", "compat=0.10"), ("-o", "compat=0.10"), ("-o", "compat=0.10")),
}
SCENARIOS["no_backing"] = ([q("create", "-q", "-f", "qcow2", "t.qcow2", "1M")], ["t.qcow2"])


def three_small_mid(m_size):
    """b.qcow2 (8M, data to its end) <- m.qcow2 (smaller) <- t.qcow2 (8M): committed into m, which
    grows first, the area past its old end zeroed (bdrv_co_truncate's BDRV_REQ_ZERO_WRITE: b must
    not show there, where t read zeros)."""
    cmds = [q("create", "-q", "-f", "qcow2", "b.qcow2", "8M"), io("qcow2", "b.qcow2", *BASE_DATA),
            q("create", "-q", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "m.qcow2", m_size),
            io("qcow2", "m.qcow2", "write -P 0x31 100k 1M"),
            q("create", "-q", "-f", "qcow2", "-b", "m.qcow2", "-F", "qcow2", "t.qcow2", "8M"),
            io("qcow2", "t.qcow2", "write -P 0x41 6M 64k")]
    return cmds, ["t.qcow2", "m.qcow2", "b.qcow2"]


SCENARIOS["three_small_mid"] = three_small_mid("4M")
# Its old end inside a cluster: the zeroing copies the cluster's head from b (the grow asks the host
# for those bytes and runs again with them).
SCENARIOS["three_small_mid_unaligned"] = three_small_mid("4100k")


def set_corrupt_bit(image):
    """A fixture step: the qcow2 header's corrupt bit (incompatible_features bit 1) set."""
    return [sys.executable, QCOW2_HEADER, image, "2"]


# The corrupt bit: on the top qemu's read-write open refuses before anything is written (instar too,
# round 36; it used to commit, then fail to empty the top); on the base qemu's reopen for writing
# does not look, and qemu writes into it: instar refuses (divergence qcow2-commit-corrupt-base).
SCENARIOS["corrupt_top"] = (two()[0] + [set_corrupt_bit("t.qcow2")], two()[1])
SCENARIOS["corrupt_base"] = (two()[0] + [set_corrupt_bit("b.qcow2")], two()[1])

# (scenario, arguments): the data cases, the image is the last argument.
DATA_CASES = [(s, ["t.qcow2"]) for s in SCENARIOS if s not in ("no_backing", "corrupt_top", "corrupt_base")]
DATA_CASES += [("vmdk_base", ["t.qcow2"]), ("vhdx_base", ["t.qcow2"]), ("vmdk_top", ["t.vmdk"]), ("vmdk_top", ["-d", "t.vmdk"]), ("vmdk_top_zeroed", ["t.vmdk"]),
               ("larger_top", ["t.qcow2"]), ("larger_top", ["-d", "t.qcow2"]),
    ("plain", ["-d", "t.qcow2"]), ("plain", ["-q", "t.qcow2"]), ("plain", ["-f", "qcow2", "t.qcow2"]),
    ("plain", ["-t", "none", "t.qcow2"]), ("plain", ["-t", "unsafe", "t.qcow2"]),
    ("plain", ["-t", "directsync", "-d", "t.qcow2"]), ("plain", ["-r", "1G", "t.qcow2"]),
    ("plain", ["-p", "t.qcow2"]), ("plain", ["-p", "-q", "t.qcow2"]), ("plain", ["-b", "b.qcow2", "t.qcow2"]),
    ("plain", ["--object", "secret,id=s0,data=x", "t.qcow2"]),
    ("three", ["-d", "t.qcow2"]), ("three", ["-b", "b.qcow2", "t.qcow2"]), ("three", ["-b", "m.qcow2", "t.qcow2"]),
    ("three", ["-b", "./b.qcow2", "t.qcow2"]), ("three", ["-b", "ABS/b.qcow2", "t.qcow2"]),
    ("three", ["-b", "m.qcow2", "-p", "t.qcow2"]), ("three_mixed", ["-b", "b.qcow2", "t.qcow2"]),
    ("three_v2", ["-b", "b.qcow2", "t.qcow2"]), ("raw_base", ["-d", "t.qcow2"]),
]
DATA_CASES_BOTH = [("plain", ["t.qcow2"]), ("plain", ["-d", "-q", "t.qcow2"]), ("three", ["-b", "b.qcow2", "t.qcow2"]),
                   ("plain", ["-p", "t.qcow2"])]
# Profile-specific long options (10.0 only; 7.2 refuses them, which the error cases check).
DATA_CASES_10 = [("three_small_mid_unaligned", ["-b", "m.qcow2", "t.qcow2"]), ("plain", ["--drop", "t.qcow2"]), ("three", ["--base=b.qcow2", "--progress", "t.qcow2"]),
                 ("plain", ["--quiet", "--cache=writeback", "--rate", "10G", "--format=qcow2", "t.qcow2"])]
ERROR_CASES = [
    ("no_backing", ["t.qcow2"]), ("plain", ["-b", "nope.qcow2", "t.qcow2"]), ("plain", ["-b", "t.qcow2", "t.qcow2"]),
    ("plain", []), ("plain", ["t.qcow2", "b.qcow2"]), ("plain", ["-t", "bogus", "t.qcow2"]),
    ("plain", ["-r", "x", "t.qcow2"]), ("plain", ["-r", "-1", "t.qcow2"]), ("plain", ["-z", "t.qcow2"]),
    ("plain", ["--drop", "t.qcow2"]), ("plain", ["--bogus", "t.qcow2"]), ("plain", ["missing.qcow2"]),
    ("plain", ["-f", "vmdk", "t.qcow2"]), ("plain", ["-f", "bogus", "t.qcow2"]), ("plain", ["-b"]),
    ("plain", ["--image-opts", "-f", "qcow2", "t.qcow2"]), ("plain", ["--image-opts", "t.qcow2"]),
    ("no_backing", ["-p", "t.qcow2"]), ("corrupt_top", ["t.qcow2"]), ("corrupt_top", ["-d", "t.qcow2"]),
]
# instar refuses these on purpose (documented in docs/commit.md): (scenario, args, message). None
# now: a vmdk base made of several files (round 29) is written as convert -n writes one.
REFUSED = [("corrupt_base", ["t.qcow2"],
            "qemu-img: Could not open 'b.qcow2': qcow2: Image is corrupt; cannot be opened read/write\n"),
           ("stream_footer_base", ["t.qcow2"],
            "qemu-img: Could not open 'b.vmdk': instar cannot write into this existing streamOptimized vmdk image\n"),
           ("small_stream_footer_base", ["t.qcow2"],
            "qemu-img: instar cannot grow the base image 'b.vmdk' (4194304 bytes) to the size of 't.qcow2' (8388608 "
            "bytes): instar cannot write into this existing streamOptimized vmdk image\n")]
# vmdk bases made of several files: a descriptor and a flat extent, and split extents (sparse and
# flat, several 2 GiB slices only past 2 GiB: one here, still a separate file).
DATA_CASES += [("vmdk_flat_base", ["t.vmdk"]), ("vmdk_2g_sparse_base", ["t.vmdk"]),
               ("vmdk_2g_flat_base", ["-d", "t.vmdk"])]
SCENARIOS["larger_top"] = two(base_size="4M", top_size="8M", top_data=["write -P 0x61 6M 64k"],
                              base_data=["write -P 0x11 0 1M"])
SCENARIOS["vmdk_base"] = two(base_fmt="vmdk")
# A streamOptimized base in VMware's layout (the header in a footer): qemu-img appends the grains
# after the footer and the base no longer opens ("Invalid footer"); instar refuses, nothing written
# (docs/commit.md, "Not done").
VMWARE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "plugins", "vmdk", "tests")
TO_FOOTER = ["python3", "-c", "import sys\nsys.path.insert(0, %r)\nfrom vmdk_vmware_images import "
             "move_directory_to_footer\nmove_directory_to_footer('b.vmdk')" % VMWARE]
SCENARIOS["stream_footer_base"] = two(base_opts=("-o", "subformat=streamOptimized"), base_fmt="vmdk")
SCENARIOS["stream_footer_base"][0].insert(2, TO_FOOTER)
# The same smaller than the top: refused before the base grows (RESIZE_THEN_WRITTEN).
SCENARIOS["small_stream_footer_base"] = two(base_opts=("-o", "subformat=streamOptimized"), base_fmt="vmdk",
                                            base_size="4M", top_size="8M", top_data=["write -P 0x61 6M 64k"],
                                            base_data=["write -P 0x11 0 1M"])
SCENARIOS["small_stream_footer_base"][0].insert(2, TO_FOOTER)
# Bases smaller than the top, of formats qemu-img cannot grow (the top's data past the base's end).
GROW_TOP = ["write -P 0x61 6M 64k", "write -P 0x62 100k 4k"]
for _fmt in ("vmdk", "vpc", "vhdx"):
    SCENARIOS["small_%s_base" % _fmt] = two(base_fmt=_fmt, base_size="4M", top_size="8M", top_data=GROW_TOP,
                                            base_data=["write -P 0x11 0 1M"])
GROWN_BASES = ["small_vmdk_base", "small_vpc_base", "small_vhdx_base"]
# A qcow2 base whose data is in an external data file (named by its absolute path, so qemu-img
# compare finds it from anywhere): written through the base's other files, as vmdk extents.
SCENARIOS["data_file_base"] = two(base_opts=("-o", "data_file=ABS/b.data"))
DATA_CASES += [("data_file_base", ["t.qcow2"])]
SCENARIOS["vhdx_base"] = two(base_fmt="vhdx")
# A compressed base (convert -c's, as cloud images come): the top writes part of a compressed cluster
# (copied on write from its inflated bytes), whole ones, zeroes whole and partial ones, and writes
# where the base has nothing; 4 KiB clusters share host clusters between compressed ones, and v2
# has no zero clusters.
COMPRESSED_BASE = ["write -c -P 0x11 0 64k", "write -c -P 0x12 64k 64k", "write -c -P 0x13 128k 64k",
                   "write -c -P 0x14 1M 64k", "write -c -P 0x15 6M 64k", "write -c -P 0x16 2M 64k"]
OVER_COMPRESSED = ["write -P 0x21 4k 4k", "write -P 0x22 64k 64k", "write -z 128k 64k", "write -z 1M 4k",
                   "write -P 0x24 3M 64k", "write -P 0x25 6M 512"]
SCENARIOS["compressed_base"] = two(base_data=COMPRESSED_BASE, top_data=OVER_COMPRESSED)
SCENARIOS["compressed_base_4k_v2"] = two(("-o", "cluster_size=4k,compat=0.10"), ("-o", "compat=0.10"),
                                         base_data=COMPRESSED_BASE, top_data=OVER_COMPRESSED)
DATA_CASES += [("compressed_base", ["t.qcow2"]), ("compressed_base", ["-d", "t.qcow2"]),
               ("compressed_base_4k_v2", ["t.qcow2"])]

# Bases with internal snapshots: the top's writes land on clusters (and L2 tables) a snapshot
# shares, copied on write as qemu does (the snapshot must keep its data: check_images reads each
# snapshot back). One base whose tables are all still shared; one (4 KiB v2 clusters, two
# snapshots) written after its first snapshot, so some tables and clusters are its own again.


def with_snapshots(scenario, *steps):
    """Inserts steps after the base's data: ("snap", NAME) or a qemu-io write list."""
    cmds, images = scenario
    base = images[1]
    extra = [q("snapshot", "-c", s[1], base) if s[0] == "snap" else io("qcow2", base, *s) for s in steps]
    return cmds[:2] + extra + cmds[2:], images


SCENARIOS["snapshot_base"] = with_snapshots(two(), ("snap", "s1"))
SCENARIOS["snapshot_base_4k_v2"] = with_snapshots(
    two(("-o", "cluster_size=4k,compat=0.10"), ("-o", "compat=0.10")), ("snap", "s1"),
    ["write -P 0x13 2M 1M", "write -z 7M 4k"], ("snap", "s2"), ["write -P 0x14 100k 8k"])
SCENARIOS["snapshot_compressed_base"] = with_snapshots(two(base_data=COMPRESSED_BASE, top_data=OVER_COMPRESSED),
                                                       ("snap", "s1"))
# A top with internal snapshots, emptied after the commit as qemu's discard loop leaves it (the
# snapshots keep their data; compressed clusters too); with -d it is left as it is.
SCENARIOS["snapshot_top"] = two(top_data=TOP_DATA + ["write -c -P 0x26 3M 64k"])
SCENARIOS["snapshot_top"][0].extend([q("snapshot", "-c", "s1", "t.qcow2"),
                                     io("qcow2", "t.qcow2", "write -P 0x27 2M 100k", "write -z 60k 8k")])
DATA_CASES += [("snapshot_top", ["t.qcow2"]), ("snapshot_top", ["-d", "t.qcow2"])]
# The same with extended L2 entries (16 bytes each: the walk must not take a subcluster bitmap for
# an offset; partial clusters give bitmaps that would read as aligned offsets).
SCENARIOS["snapshot_top_l2"] = two(top_opts=("-o", "extended_l2=on"),
                                   top_data=TOP_DATA + ["write -P 0x27 2M 4k", "write -P 0x28 2176k 32k"])
SCENARIOS["snapshot_top_l2"][0].append(q("snapshot", "-c", "s1", "t.qcow2"))
DATA_CASES += [("snapshot_top_l2", ["t.qcow2"])]
# Bases with extended L2 entries (round 35): the top's writes complete partial subclusters in
# place (unallocated ones from the base's own backing file or zeros, zero ones with zeros), a new
# cluster takes only the subclusters a write and its copy-on-write cover, zeros set zero bits (a
# compressed cluster partly zeroed gets zeros written), a cluster a snapshot shares is copied from
# its first to its last allocated subcluster.
L2_BASE = ["write -P 0x11 0 1M", "write -P 0x12 1100k 3k", "write -z 2M 64k", "write -P 0x13 3M 100k",
           "write -z 3200k 8k", "write -c -P 0x14 5M 64k", "write -c -P 0x15 5248k 64k"]
L2_TOP = ["write -P 0x21 4k 8k", "write -P 0x22 1090k 20k", "write -z 512k 64k", "write -P 0x23 2M 4k",
          "write -P 0x24 3M 1M", "write -z 1M 4k", "write -P 0x25 3150k 70k", "write -P 0x26 5M 4k",
          "write -z 5256k 4k", "write -P 0x27 6M 3k", "write -z 6300k 60k"]
SCENARIOS["l2_base"] = two(("-o", "extended_l2=on"), (), base_data=L2_BASE, top_data=L2_TOP)
SCENARIOS["l2_both_16k"] = two(("-o", "extended_l2=on,cluster_size=16k"), ("-o", "extended_l2=on,cluster_size=16k"),
                               base_data=L2_BASE, top_data=L2_TOP)
SCENARIOS["l2_snapshot_base"] = with_snapshots(two(("-o", "extended_l2=on"), ("-o", "extended_l2=on"),
                                                   base_data=L2_BASE, top_data=L2_TOP), ("snap", "s1"))
SCENARIOS["l2_mid"] = three((), ("-o", "extended_l2=on"), ("-o", "extended_l2=on"))
SCENARIOS["l2_mid"][0][3] = io("qcow2", "m.qcow2", *L2_BASE)
SCENARIOS["l2_mid"][0][5] = io("qcow2", "t.qcow2", *L2_TOP)
DATA_CASES_BOTH += [("l2_base", ["t.qcow2"]), ("l2_both_16k", ["t.qcow2"])]  # the mirror's zeros differ
DATA_CASES += [("l2_base", ["t.qcow2"]), ("l2_both_16k", ["t.qcow2"]), ("l2_snapshot_base", ["t.qcow2"]),
               ("l2_mid", ["-b", "m.qcow2", "t.qcow2"])]
# A top whose data is in an external data file (absolute name, so qemu-img compare finds it from
# anywhere): emptied as qemu's discard loop leaves it, its L2 tables zeroed and the data file's
# clusters discarded; extended L2 entries too. These come out byte for byte as qemu-img's (EXACT).
SCENARIOS["data_file_top"] = two(top_opts=("-o", "data_file=ABS/t.data"))
SCENARIOS["data_file_top"][1].append("t.data")
SCENARIOS["data_file_top_l2"] = two(top_opts=("-o", "data_file=ABS/t.data,extended_l2=on,cluster_size=16k"))
SCENARIOS["data_file_top_l2"][1].append("t.data")
DATA_CASES += [("data_file_top", ["t.qcow2"]), ("data_file_top", ["-d", "t.qcow2"]), ("data_file_top_l2", ["t.qcow2"])]
# A top with persistent bitmaps (one enabled, dirtied by the top's writes; one disabled, of another
# granularity): emptied by the discard loop too; the bitmaps must keep every bit, as qemu's (which
# stores them again into new clusters on close: divergence qcow2-empty-bitmaps).
SCENARIOS["bitmap_top"] = two(top_data=[])
SCENARIOS["bitmap_top"][0].extend([q("bitmap", "--add", "t.qcow2", "b0"),
                                   q("bitmap", "--add", "-g", "512k", "--disable", "t.qcow2", "b1"),
                                   io("qcow2", "t.qcow2", *TOP_DATA)])
DATA_CASES += [("bitmap_top", ["t.qcow2"]), ("bitmap_top", ["-d", "t.qcow2"])]
# Bases with persistent bitmaps (round 33): every write records itself in the enabled ones, as
# qemu's mirror job writes whole chunks of its granularity (the base's cluster size clamped to
# [4 KiB, 64 KiB]), so finer bitmaps see whole chunks; a disabled bitmap keeps its bits. Bitmaps
# added before the base's data hold bits and data clusters already; those added after have none
# (their first bit gets a new data cluster). Bits compared bit for bit with qemu-img's result.


def with_base_bitmaps(scenario, before, after, image=None):
    """Adds bitmaps to the base (or `image`): `before` its data, `after` it; (name, options...)."""
    cmds, images = scenario
    base = image or images[1]
    add = lambda specs: [q("bitmap", "--add", *spec[1:], base, spec[0]) for spec in specs]
    at = next(i for i, c in enumerate(cmds) if c[0] == "QIO" and c[-1] == base)
    return cmds[:at] + add(before) + [cmds[at]] + add(after) + cmds[at + 1:], images


SCENARIOS["bitmap_base"] = with_base_bitmaps(two(top_opts=("-o", "cluster_size=4k")),
                                             [("b0",), ("b4k", "-g", "4k")],
                                             [("b1", "-g", "512k", "--disable"), ("b2", "-g", "1M")])
SCENARIOS["bitmap_base_4k"] = with_base_bitmaps(two(("-o", "cluster_size=4k"), ("-o", "cluster_size=512")),
                                                [("b512", "-g", "512")], [("b0",)])
SCENARIOS["bitmap_mid"] = with_base_bitmaps(three(), [("m0",)], [("m1", "-g", "8k")], image="m.qcow2")
# A base with bitmaps grown to the top's size first (resize carries the bitmaps, round 34).
SCENARIOS["bitmap_base_grow"] = with_base_bitmaps(two(base_size="4M", top_size="8M", top_data=GROW_TOP,
                                                      base_data=["write -P 0x11 0 1M"]),
                                                  [("b0",)], [("b512", "-g", "512")])
# An IN_USE bitmap (a qemu that died with the image open leaves one): inconsistent, left alone by
# qemu and instar alike. The flag is set in the first directory entry by hand.
SET_IN_USE = """import struct
d = bytearray(open('b.qcow2', 'rb').read())
at = struct.unpack('>I', d[100:104])[0]
while struct.unpack('>I', d[at:at + 4])[0] != 0x23852875:
    at += 8 + ((struct.unpack('>I', d[at + 4:at + 8])[0] + 7) & ~7)
flags = struct.unpack('>Q', d[at + 24:at + 32])[0] + 12
d[flags + 3] |= 1
open('b.qcow2', 'wb').write(d)
"""
SCENARIOS["bitmap_base_in_use"] = with_base_bitmaps(two(), [("b0",)], [("b1",)])
SCENARIOS["bitmap_base_in_use"][0].insert(-2, [sys.executable, "-c", SET_IN_USE])
DATA_CASES += [("bitmap_base", ["t.qcow2"]), ("bitmap_base", ["-d", "t.qcow2"]), ("bitmap_base_4k", ["t.qcow2"]),
               ("bitmap_base_in_use", ["t.qcow2"]), ("bitmap_base_grow", ["t.qcow2"]),
               ("bitmap_mid", ["t.qcow2"]), ("bitmap_mid", ["-b", "b.qcow2", "t.qcow2"])]
# Dirty images (lazy refcounts not written back; round 33): the bit set by hand and the refcounts
# broken as a killed qemu leaves them (the last cluster referenced with refcount 0, one past the end
# counted). qemu's read-write open of the top repairs it first, printing check's lines (compared
# with qemu-img's output); a dirty base qemu writes unrepaired and leaves corrupt, instar repairs
# first (divergence qcow2-commit-dirty-base: its base must check clean, qemu's does not).
MAKE_DIRTY = """import struct, sys
d = bytearray(open(sys.argv[1], 'rb').read())
cs = 1 << struct.unpack('>I', d[20:24])[0]
d[79] |= 1
block = struct.unpack('>Q', d[struct.unpack('>Q', d[48:56])[0]:][:8])[0]
last = len(d) // cs - 1
d[block + 2 * last:block + 2 * last + 4] = b'\\0\\0\\0\\1'
open(sys.argv[1], 'wb').write(d)
"""
SCENARIOS["dirty_top"] = two(top_opts=("-o", "lazy_refcounts=on"))
SCENARIOS["dirty_top"][0].append([sys.executable, "-c", MAKE_DIRTY, "t.qcow2"])
SCENARIOS["dirty_base"] = two(base_opts=("-o", "lazy_refcounts=on"))
SCENARIOS["dirty_base"][0].append([sys.executable, "-c", MAKE_DIRTY, "b.qcow2"])
DATA_CASES += [("dirty_top", ["t.qcow2"]), ("dirty_top", ["-d", "t.qcow2"]), ("dirty_base", ["t.qcow2"])]
# Files that must equal qemu-img's byte for byte, holes included.
EXACT = {"data_file_top": ["t.qcow2", "t.data"], "data_file_top_l2": ["t.qcow2", "t.data"]}
DATA_CASES += [("snapshot_base", ["t.qcow2"]), ("snapshot_base", ["-d", "t.qcow2"]),
               ("snapshot_base_4k_v2", ["t.qcow2"]), ("snapshot_compressed_base", ["t.qcow2"])]


def vmdk_two(base_opts=()):
    """b.vmdk under t.vmdk (a vmdk's backing file must be a vmdk). After qemu-img commit the top's
    parentCID no longer matches the base's new CID, so qemu cannot read the top's unallocated
    sectors any more: only the base is compared."""
    return ([q("create", "-q", "-f", "vmdk", *base_opts, "b.vmdk", "8M"), io("vmdk", "b.vmdk", *BASE_DATA),
             q("create", "-q", "-f", "vmdk", "-b", "b.vmdk", "-F", "vmdk", "t.vmdk"),
             io("vmdk", "t.vmdk", "write -P 0x21 0 4k", "write -P 0x22 60k 70k", "write -z 1M 64k",
                "write -P 0x24 6M 300k", "write -P 0x25 8388096 512")], ["b.vmdk"])


SCENARIOS["vmdk_top"] = vmdk_two()
SCENARIOS["vmdk_top_zeroed"] = vmdk_two(("-o", "zeroed_grain=on"))
SCENARIOS["vmdk_flat_base"] = vmdk_two(("-o", "subformat=monolithicFlat"))
SCENARIOS["vmdk_2g_sparse_base"] = vmdk_two(("-o", "subformat=twoGbMaxExtentSparse"))
SCENARIOS["vmdk_2g_flat_base"] = vmdk_two(("-o", "subformat=twoGbMaxExtentFlat"))




def build(scenario, where, q72, qio):
    os.mkdir(where)
    for c in SCENARIOS[scenario][0]:
        c = [q72 if a == "QIMG" else qio if a == "QIO" else a.replace("ABS", where) for a in c]
        p = run_fixture(c, cwd=where)
        if p.returncode != 0:
            raise RuntimeError("fixture %s failed: %s" % (c, p.stderr))


def snapshot_problems(q72, name, a, b):
    """Each internal snapshot of qcow2 image `a` must read as the same snapshot of `b`."""
    info = subprocess.run([q72, "info", "--output=json", "-f", "qcow2", a], capture_output=True, text=True)
    problems = []
    for sn in json.loads(info.stdout).get("snapshots", []) if info.returncode == 0 else []:
        raws = []
        for img in (a, b):
            out = img + "." + sn["name"] + ".raw"
            p = subprocess.run([q72, "convert", "-f", "qcow2", "-l", "snapshot.name=" + sn["name"], "-O", "raw",
                                img, out], capture_output=True, text=True)
            if p.returncode != 0:
                problems.append("%s: snapshot %s unreadable: %s" % (name, sn["name"], p.stderr.strip()))
            raws.append(out)
        if not problems and not filecmp.cmp(raws[0], raws[1], shallow=False):
            problems.append("%s: snapshot %s differs from qemu-img's" % (name, sn["name"]))
        for r in raws:
            if os.path.exists(r):
                os.unlink(r)
    return problems


def check_images(scenario, qdir, idir, q72):
    """Problems with instar's images against qemu's; and how many were byte-identical."""
    problems, same = [], 0
    for name in EXACT.get(scenario, []):
        a, b = os.path.join(idir, name), os.path.join(qdir, name)
        with open(a, "rb") as fa, open(b, "rb") as fb:
            # The data file's absolute name (in the header) is the only difference allowed.
            if fa.read().replace(idir.encode(), b"DIR") != fb.read().replace(qdir.encode(), b"DIR"):
                problems.append("%s: bytes differ from qemu-img's" % name)
        if data_segments(a) != data_segments(b):
            problems.append("%s: allocation %s, qemu-img's %s" % (name, data_segments(a)[:6], data_segments(b)[:6]))
    for name in SCENARIOS[scenario][1]:
        if name.endswith(".data"):
            continue  # read through its image
        a, b = os.path.join(idir, name), os.path.join(qdir, name)
        # Each image alone (its backing file not consulted: -F raw would, so compare the chains' tops
        # with the image's own format and the same chain layout on both sides).
        # The image's own format (a fixed vhd probes as raw, and its footer holds a random uuid).
        fmt = {"qcow2": "qcow2", "raw": "raw", "vhd": "vpc", "vmdk": "vmdk", "vhdx": "vhdx"}[name.rsplit(".", 1)[1]]
        p = subprocess.run([q72, "compare", "-f", fmt, "-F", fmt, a, b], capture_output=True, text=True)
        if p.returncode != 0:
            problems.append("%s: %s" % (name, (p.stdout + p.stderr).strip()))
        if name.endswith(".qcow2"):
            c = subprocess.run([q72, "check", a], capture_output=True, text=True)
            if c.returncode != 0:
                problems.append("%s: check rc %d: %s" % (name, c.returncode, c.stdout.strip()))
            problems += snapshot_problems(q72, name, a, b)
            if read_bitmaps(a) != read_bitmaps(b):
                problems.append("%s: bitmaps %s, qemu-img's %s" % (name, read_bitmaps(a), read_bitmaps(b)))
        if fmt != "vpc":
            with open(a, "rb") as fa, open(b, "rb") as fb:
                same += fa.read() == fb.read()
    return problems, same


def snapshot_l1(img):
    """The first snapshot's L1 table offset."""
    return struct.unpack(">Q", img[struct.unpack(">Q", img[64:72])[0]:][:8])[0]


def bitmap_data_cluster(img):
    """The first bitmap's first data cluster (0 when it has none)."""
    at, directory = struct.unpack(">I", img[100:104])[0], None
    while directory is None:
        magic, ln = struct.unpack(">II", img[at:at + 8])
        if magic == 0x23852875:  # the bitmaps extension
            directory = struct.unpack(">Q", img[at + 24:at + 32])[0]
        at += 8 + ((ln + 7) & ~7)
    table = struct.unpack(">Q", img[directory:directory + 8])[0]
    return struct.unpack(">Q", img[table:table + 8])[0] & 0x00fffffffffffe00


def hostile_top(ours, idir, env, target):
    """Points t.qcow2's first active L2 entry at target(image bytes); commit must refuse to empty it
    ("on metadata") and leave it byte for byte as it was: (ok, why not)."""
    top = os.path.join(idir, "t.qcow2")
    with open(top, "r+b") as f:
        img = bytearray(f.read())
        at = target(img)
        l1 = struct.unpack(">Q", img[40:48])[0]
        l2 = struct.unpack(">Q", img[l1:l1 + 8])[0] & 0x00fffffffffffe00
        img[l2:l2 + 8] = struct.pack(">Q", at | 1 << 63)
        f.seek(0)
        f.write(img)
    ri = run_normalised([ours, "commit", "t.qcow2"], idir, env)
    changed = open(top, "rb").read() != bytes(img)
    ok = at != 0 and ri[0] == 1 and "on metadata" in ri[2] and not changed
    return ok, "%r (target %#x; top changed: %s)" % (ri, at, changed)


def main():
    if len(sys.argv) != 5:
        print(__doc__)
        return 2
    instar, q72, q10, qio = sys.argv[1:]
    for prog in (q72, q10, qio):
        if not os.access(prog, os.X_OK):
            print("SKIPPED LOUDLY: %s missing; commit differential NOT run" % prog)
            return 77
    work = tempfile.mkdtemp(prefix="instar-commit-")
    passed, failed, identical, images = 0, 0, 0, 0
    try:
        link_dir = os.path.join(work, "bin")
        os.mkdir(link_dir)
        ours = os.path.join(link_dir, "qemu-img")
        os.symlink(os.path.abspath(instar), ours)
        env = dict(os.environ, TZ="UTC", LC_ALL="C")
        n = 0
        # The data path does not depend on the profile: 10.0 runs the option and message cases.
        jobs = [("7.2", s, a, True) for s, a in DATA_CASES]
        jobs += [("10.0", s, a, True) for s, a in DATA_CASES_10 + DATA_CASES_BOTH]
        jobs += [(p, s, a, False) for p in ("7.2", "10.0") for s, a in ERROR_CASES]
        only = os.environ.get("COMMIT_ONLY")  # a scenario substring, to run a few cases by hand
        if only:
            jobs = [j for j in jobs if only in j[1]]
        for profile, scenario, args, data in jobs:
            n += 1
            qdir, idir = os.path.join(work, "q%d" % n), os.path.join(work, "i%d" % n)
            build(scenario, qdir, q72, qio)
            build(scenario, idir, q72, qio)
            qimg = q72 if profile == "7.2" else q10
            rq = run_normalised([qimg, "commit"] + [a.replace("ABS", qdir) for a in args], qdir, env)
            ri = run_normalised([ours, "commit"] + [a.replace("ABS", idir) for a in args], idir,
                                dict(env, INSTAR_QEMU_VERSION=profile))
            label = "[%s] %s: commit %s" % (profile, scenario, " ".join(args))
            problems = []
            if "-p" in args or "--progress" in args:
                # The progress lines' count is timing; the last line and the status are not.
                if rq[0] != ri[0] or rq[1].split("\n")[-2:] != ri[1].split("\n")[-2:] or rq[2] != ri[2]:
                    problems.append("qemu-img %r\n  instar   %r" % (rq, ri))
            elif rq != ri:
                problems.append("qemu-img %r\n  instar   %r" % (rq, ri))
            if data and not problems:
                more, same = check_images(scenario, qdir, idir, q72)
                problems += more
                identical += same
                images += len([f for f in SCENARIOS[scenario][1] if not f.endswith(".data")])
            if problems:
                failed += 1
                print("FAIL %s\n  %s" % (label, "\n  ".join(problems)))
            else:
                passed += 1
            shutil.rmtree(qdir)
            shutil.rmtree(idir)
        # instar extensions (docs/quirks.md vmdk-/vpc-/vhdx-resize): a base smaller than the top, of a
        # format qemu cannot grow ("Block job failed: Operation not supported"), is grown and
        # committed; the base then reads as the top's chain read before.
        for scenario in GROWN_BASES:
            n += 1
            idir = os.path.join(work, "i%d" % n)
            build(scenario, idir, q72, qio)
            shutil.copy(os.path.join(idir, "t.qcow2"), os.path.join(idir, "before.qcow2"))
            ri = run_normalised([ours, "commit", "-d", "t.qcow2"], idir, env)
            base = SCENARIOS[scenario][1][1]
            fmt = {"vmdk": "vmdk", "vhd": "vpc", "vhdx": "vhdx"}[base.rsplit(".", 1)[1]]
            c = subprocess.run([q72, "compare", "-f", fmt, base, "before.qcow2"], capture_output=True, text=True,
                               cwd=idir)
            if ri != (0, "Image committed.\n", "") or c.returncode != 0:
                failed += 1
                print("FAIL grown base %s: %r %s" % (scenario, ri, (c.stdout + c.stderr).strip()))
            else:
                passed += 1
            shutil.rmtree(idir)
        for scenario, args, want in REFUSED:
            for profile in ("7.2", "10.0"):
                n += 1
                idir = os.path.join(work, "i%d" % n)
                build(scenario, idir, q72, qio)
                before = {f: open(os.path.join(idir, f), "rb").read() for f in SCENARIOS[scenario][1]}
                ri = run_normalised([ours, "commit"] + args, idir, dict(env, INSTAR_QEMU_VERSION=profile))
                after = {f: open(os.path.join(idir, f), "rb").read() for f in SCENARIOS[scenario][1]}
                if ri != (1, "", want) or before != after:
                    failed += 1
                    print("FAIL [%s] refused %s: commit %s: %r (files changed: %s)" %
                          (profile, scenario, " ".join(args), ri, before != after))
                else:
                    passed += 1
                shutil.rmtree(idir)
        # Hostile tops: the first active L2 entry names a cluster of the snapshot's L1 table, or a
        # data cluster of a persistent bitmap. The commit copies its data (reads are not refused),
        # then emptying the top refuses before writing anything to it: the metadata must not lose
        # its refcount or be discarded.
        for scenario, target in (("snapshot_top", snapshot_l1), ("bitmap_top", bitmap_data_cluster)):
            n += 1
            idir = os.path.join(work, "i%d" % n)
            build(scenario, idir, q72, qio)
            ok, why = hostile_top(ours, idir, env, target)
            if ok:
                passed += 1
            else:
                failed += 1
                print("FAIL hostile %s: %s" % (scenario, why))
            shutil.rmtree(idir)
    finally:
        shutil.rmtree(work)
    print("byte-identical to qemu-img's: %d of %d images" % (identical, images))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
