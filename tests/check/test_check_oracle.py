#!/usr/bin/env python3
"""Differential test of `instar check` against qemu-img 7.2 and 10.0.

Clean images are made with qemu-img and qemu-io (v2/v3, cluster sizes 512..2M, extended L2,
compressed and zero clusters, snapshots, bitmaps, refcount widths); damaged copies are made by the
small qcow2 patcher below (leaks, refcounts off by one, L2 entries past EOF, overlapping tables,
wrong OFLAG_COPIED, reserved bits, corrupt/dirty bits). For each image and each of human, JSON and
-q output, instar's stdout, stderr and exit code must equal the oracle's under its profile: the
human output each oracle's, JSON and -q one oracle's per image, 7.2 and 10.0 taking turns. Also
option errors and the formats without a check (raw, vpc) or with one (vmdk, vhdx).

Usage: test_check_oracle.py INSTAR QEMU72 QEMU10 QEMU_IO
"""
import os
import shutil
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from oracle_retry import run_fixture  # noqa: E402
from differential_support import start_with_oracles  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "plugins", "vhdx", "tests"))
from vhdx_log_images import block_offset, with_pending_log  # noqa: E402

COPIED = 1 << 63
COMPRESSED = 1 << 62
OFFSET_MASK = 0x00fffffffffffe00


class Qcow2:
    """Just enough of a qcow2 file to damage it on purpose."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            h = f.read(112)
        (self.version,) = struct.unpack(">I", h[4:8])
        (self.cluster_bits,) = struct.unpack(">I", h[20:24])
        self.cs = 1 << self.cluster_bits
        (self.l1_size,) = struct.unpack(">I", h[36:40])
        (self.l1_offset, self.rt_offset) = struct.unpack(">QQ", h[40:56])
        (self.rt_clusters,) = struct.unpack(">I", h[56:60])
        self.incompat = struct.unpack(">Q", h[72:80])[0] if self.version >= 3 else 0
        self.refcount_order = struct.unpack(">I", h[96:100])[0] if self.version >= 3 else 4
        self.extl2 = bool(self.incompat & (1 << 4))
        self.l2_entry = 16 if self.extl2 else 8

    def u64(self, off):
        with open(self.path, "rb") as f:
            f.seek(off)
            return struct.unpack(">Q", f.read(8))[0]

    def put64(self, off, v):
        with open(self.path, "r+b") as f:
            f.seek(off)
            f.write(struct.pack(">Q", v))

    def l1(self, i):
        return self.u64(self.l1_offset + 8 * i)

    def l2_entry_offset(self, l1_index, l2_index):
        return (self.l1(l1_index) & OFFSET_MASK) + l2_index * self.l2_entry

    def refblock(self, cluster):
        bits = self.cluster_bits + 3 - self.refcount_order
        rb = self.u64(self.rt_offset + 8 * (cluster >> bits)) & ~0x1ff
        return rb, cluster & ((1 << bits) - 1)

    def set_refcount(self, cluster, value):
        assert self.refcount_order == 4
        rb, i = self.refblock(cluster)
        with open(self.path, "r+b") as f:
            f.seek(rb + 2 * i)
            f.write(struct.pack(">H", value))

    def refcount(self, cluster):
        assert self.refcount_order == 4
        rb, i = self.refblock(cluster)
        with open(self.path, "rb") as f:
            f.seek(rb + 2 * i)
            return struct.unpack(">H", f.read(2))[0]

    def set_incompat(self, bits):
        with open(self.path, "r+b") as f:
            f.seek(72)
            f.write(struct.pack(">Q", self.incompat | bits))

    def grow(self, clusters):
        size = os.path.getsize(self.path)
        with open(self.path, "r+b") as f:
            f.truncate(size + clusters * self.cs)
        return size // self.cs


# Damage recipes: name -> function(Qcow2). The base image has data at guest offset 0.
def leak(q):
    c = q.grow(1)
    q.set_refcount(c, 1)


def leak_many(q):
    first = q.grow(4)
    for c in range(first, first + 4):
        q.set_refcount(c, 2)


def data_refcount_plus(q):
    c = q.u64(q.l2_entry_offset(0, 0)) & OFFSET_MASK
    q.set_refcount(c >> q.cluster_bits, q.refcount(c >> q.cluster_bits) + 1)


def data_refcount_zero(q):
    c = q.u64(q.l2_entry_offset(0, 0)) & OFFSET_MASK
    q.set_refcount(c >> q.cluster_bits, 0)


def l2_past_eof(q):
    q.put64(q.l2_entry_offset(0, 5), COPIED | (os.path.getsize(q.path) + 16 * q.cs))


def l2_just_past_eof(q):
    q.put64(q.l2_entry_offset(0, 5), COPIED | (((os.path.getsize(q.path) + q.cs - 1) // q.cs) * q.cs))


def l2_points_at_l1(q):
    q.put64(q.l2_entry_offset(0, 3), COPIED | q.l1_offset)


def l2_points_at_reftable(q):
    q.put64(q.l2_entry_offset(0, 3), COPIED | q.rt_offset)


def l2_clear_copied(q):
    off = q.l2_entry_offset(0, 0)
    q.put64(off, q.u64(off) & ~COPIED)


def l1_clear_copied(q):
    q.put64(q.l1_offset, q.l1(0) & ~COPIED)


def l2_reserved_bits(q):
    off = q.l2_entry_offset(0, 0)
    q.put64(off, q.u64(off) | 0x100)


def l1_reserved_bits(q):
    q.put64(q.l1_offset, q.l1(0) | (1 << 56))


def l2_unaligned(q):
    off = q.l2_entry_offset(0, 0)
    q.put64(off, q.u64(off) + 512)


def l2_prealloc_unaligned(q):
    # An allocated zero cluster (offset and the zero flag) whose offset is not cluster aligned: qemu's
    # repair turns the entry into a plain zero cluster.
    off = q.l2_entry_offset(0, 0)
    q.put64(off, COPIED | ((q.u64(off) & OFFSET_MASK) + 512) | 1)


def duplicate_data(q):
    # Two guest clusters share one host cluster: refcount 1, two references.
    q.put64(q.l2_entry_offset(0, 1), q.u64(q.l2_entry_offset(0, 0)))


def reftable_reserved(q):
    q.put64(q.rt_offset, q.u64(q.rt_offset) | 1)


def refblock_refcount(q):
    rb, _ = q.refblock(0)
    q.set_refcount(rb >> q.cluster_bits, 2)


def corrupt_bit(q):
    q.set_incompat(1 << 1)


def dirty_lazy(q):
    # What a crash leaves with lazy_refcounts: the dirty bit and refcounts not yet written.
    q.set_incompat(1 << 0)
    c = q.u64(q.l2_entry_offset(0, 1)) & OFFSET_MASK
    q.set_refcount(c >> q.cluster_bits, 0)


def compressed_copied(q):
    off = q.l2_entry_offset(0, 0)
    q.put64(off, q.u64(off) | COPIED)


def extl2_bad_bitmap(q):
    off = q.l2_entry_offset(0, 0) + 8
    q.put64(off, q.u64(off) | (1 << 32))


def extl2_unalloc_bitmap(q):
    off = q.l2_entry_offset(0, 40) + 8
    q.put64(off, q.u64(off) | 1)


def refblock_outside(q):
    q.put64(q.rt_offset + 8, (os.path.getsize(q.path) // q.cs + 8) * q.cs)


# Refcount blocks beyond what instar's in-guest array covers (docs/check.md, "Refcount blocks far
# outside the file"). qemu's repair grows the file to end with one: where the file system refuses
# that size (ext4: 16 TiB) both print the truncate's failure and rebuild. Where it allows it, instar
# refuses the repair after that grow alone: the image's name goes into FAR_GROWABLE.
FAR_GROWABLE = set()


def refblock_far(offset):
    def damage(q):
        probe = q.path + ".probe"
        try:
            with open(probe, "wb") as f:
                f.truncate(offset + q.cs)
            FAR_GROWABLE.add(os.path.basename(q.path))
        except OSError:
            pass
        finally:
            os.unlink(probe)
        q.put64(q.rt_offset + 8, offset)
    return damage


def refblock_unaligned(q):
    q.put64(q.rt_offset, q.u64(q.rt_offset) + 0x200)


def snapshot_table(q):
    with open(q.path, "rb") as f:
        f.seek(60)
        return struct.unpack(">IQ", f.read(12))


def snapshot_l1_unaligned(q):
    _, off = snapshot_table(q)
    q.put64(off, q.u64(off) + 512)


def snapshot_extra_size(q, which):
    """Shrinks one entry's extra_data_size from qemu's 24 to 8: the rest of the table is misread."""
    n, off = snapshot_table(q)
    entries = []
    with open(q.path, "r+b") as f:
        o = off
        for _ in range(n):
            o = (o + 7) & ~7
            f.seek(o)
            h = f.read(40)
            ids, names = struct.unpack(">HH", h[12:16])
            entries.append(o)
            o += 40 + struct.unpack(">I", h[36:40])[0] + ids + names
        f.seek(entries[which] + 36)
        f.write(struct.pack(">I", 8))


def snapshot_extra_first(q):
    snapshot_extra_size(q, 0)


def snapshot_extra_last(q):
    snapshot_extra_size(q, -1)


def edit_snapshot_table(q, change):
    """Rewrites the snapshot table in place (it must still fit its clusters) after change(entries),
    each entry a dict: hdr (40 bytes), extra, id, name."""
    n, off = snapshot_table(q)
    entries = []
    with open(q.path, "r+b") as f:
        o = off
        for _ in range(n):
            o = (o + 7) & ~7
            f.seek(o)
            h = f.read(40)
            ids, names = struct.unpack(">HH", h[12:16])
            (extra_size,) = struct.unpack(">I", h[36:40])
            extra = f.read(extra_size)
            entries.append({"hdr": h, "extra": extra, "id": f.read(ids), "name": f.read(names)})
            o += 40 + extra_size + ids + names
        change(entries)
        out = b""
        for e in entries:
            out += b"\0" * (-len(out) % 8)
            h = e["hdr"][:12] + struct.pack(">HH", len(e["id"]), len(e["name"])) + e["hdr"][16:36]
            out += h + struct.pack(">I", len(e["extra"])) + e["extra"] + e["id"] + e["name"]
        assert len(out) <= ((o - off + q.cs - 1) // q.cs) * q.cs or len(out) <= q.cs
        f.seek(off)
        f.write(out)


def snapshot_incomplete(q):
    # v3 entries need 16 bytes of extra data: the first keeps 8; the second gets unknown extra data
    # that the repair's rewrite must keep.
    def change(entries):
        entries[0]["extra"] = entries[0]["extra"][:8]
        entries[-1]["extra"] = entries[-1]["extra"][:24] + bytes(range(40))
    edit_snapshot_table(q, change)


def snapshot_extra_huge(q):
    # More extra data than qemu keeps (1024): qemu's repair drops what is over.
    def change(entries):
        entries[0]["extra"] = entries[0]["extra"][:24] + bytes(i & 0xff for i in range(1100 - 24))
    edit_snapshot_table(q, change)


def many_snapshots(q, count=65537):
    """A new snapshot table at the end of the file with `count` disk-only entries (no L1 table);
    its clusters get refcount 1. Over qemu's 65536, -r all discards the overhanging ones."""
    parts, size = [], 0
    for i in range(count):
        ident, name = str(i + 1).encode(), b"s"
        e = b"\0" * (-size % 8) + struct.pack(">QIHHIIQII", 0, 0, len(ident), len(name), 0, 0, 0, 0, 24)
        e += struct.pack(">QQQ", 0, 64 << 20, (1 << 64) - 1) + ident + name
        parts.append(e)
        size += len(e)
    out = b"".join(parts)
    clusters = (len(out) + q.cs - 1) // q.cs
    first = q.grow(clusters)
    with open(q.path, "r+b") as f:
        f.seek(first * q.cs)
        f.write(out)
        f.seek(60)
        f.write(struct.pack(">IQ", count, first * q.cs))
    for c in range(first, first + clusters):
        q.set_refcount(c, 1)


def huge_snapshot_table(q, count=514):
    """A snapshot table over qemu's 64 MiB (QCOW_MAX_SNAPSHOTS_SIZE): disk-only entries whose id and
    name fields are 65535 bytes each (a short string, then NULs). qemu's read counts the table's
    length entry by entry: the 512th crosses 64 MiB, so -r all discards it and the two after it
    ("Discarding 3 overhanging snapshots (snapshot table is too big)"). Only the entry heads are
    written: the file is sparse (a few MiB on disk for a 64 MiB table)."""
    field = 0xffff
    entry = 40 + 24 + 2 * field
    entry += -entry % 8
    clusters = (count * entry + q.cs - 1) // q.cs
    first = q.grow(clusters)
    with open(q.path, "r+b") as f:
        for i in range(count):
            at = first * q.cs + i * entry
            f.seek(at)
            f.write(struct.pack(">QIHHIIQII", 0, 0, field, field, 0, 0, 0, 0, 24))
            f.write(struct.pack(">QQQ", 0, 64 << 20, (1 << 64) - 1) + str(i + 1).encode())
            f.seek(at + 40 + 24 + field)
            f.write(b"s")
        f.seek(60)
        f.write(struct.pack(">IQ", count, first * q.cs))
    for c in range(first, first + clusters):
        q.set_refcount(c, 1)


def bitmap_directory(q):
    """(directory offset, size) from the bitmaps header extension."""
    with open(q.path, "rb") as f:
        h = f.read(q.cs)
    (hlen,) = struct.unpack(">I", h[100:104])
    o = hlen
    while o + 8 <= len(h):
        t, ln = struct.unpack(">II", h[o:o + 8])
        if t == 0:
            break
        if t == 0x23852875:
            _, _, size, off = struct.unpack(">IIQQ", h[o + 8:o + 32])
            return off, size
        o += 8 + ((ln + 7) & ~7)
    raise ValueError("no bitmaps extension")


def bitmap_in_use(q):
    off, _ = bitmap_directory(q)
    with open(q.path, "r+b") as f:
        f.seek(off + 12)
        (flags,) = struct.unpack(">I", f.read(4))
        f.seek(off + 12)
        f.write(struct.pack(">I", flags | 1))


def bitmap_table_refcount_zero(q):
    off, _ = bitmap_directory(q)
    table = q.u64(off) & OFFSET_MASK
    q.set_refcount(table >> q.cluster_bits, 0)


def snapshot_set_copied(q):
    # After a snapshot the shared clusters have refcount 2: COPIED set on them is wrong.
    off = q.l2_entry_offset(0, 0)
    q.put64(off, q.u64(off) | COPIED)
    q.put64(q.l1_offset, q.l1(0) | COPIED)


def without_backing_format(path):
    # qemu-img 7.2 creates no overlay without a backing format: rename the header extension naming
    # it (0xE2792ACA) to one nobody knows, so the backing file's format is probed.
    with open(path, "r+b") as f:
        head = f.read(65536)
        at = head.find(struct.pack(">I", 0xE2792ACA), 104)
        f.seek(at)
        f.write(struct.pack(">I", 0x7E57E57E))


def bad_version_qcow2(path):
    # A qcow2 header qemu refuses to open: version 9.
    header = bytearray(104)
    struct.pack_into(">IIQIIQ", header, 0, 0x514649FB, 9, 0, 0, 16, 64 << 20)
    with open(path, "wb") as f:
        f.write(header + bytes(65536 - len(header)))


def vmdk_grain_past_eof(path):
    """monolithicSparse: the second grain's table entry points past the end of the file."""
    with open(path, "r+b") as f:
        h = f.read(64)
        gd = struct.unpack("<Q", h[56:64])[0] * 512
        f.seek(gd)
        gt = struct.unpack("<I", f.read(4))[0] * 512
        f.seek(gt + 4)
        f.write(struct.pack("<I", os.path.getsize(path) // 512 + 1000))


def vmdk_flat_truncated(path):
    os.truncate(path.replace(".vmdk", "-flat.vmdk"), 0)


def vmware(build):
    """A step making a VMware-only vmdk (plugins/vmdk/tests/vmdk_vmware_images.py) at the image's path."""
    def step(path):
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "plugins", "vmdk",
                                        "tests"))
        import vmdk_vmware_images
        build(vmdk_vmware_images, path)
    return step


def se_image(gd_top=0x10000000):
    def build(m, path):
        x = path.replace(".vmdk", "-x.vmdk")
        m.sesparse(x, 65536, {0: b"1" * 4096, 1: "zero", 4097: b"2" * 4096}, gd_top=gd_top)
        m.descriptor(path, "seSparse", [(65536, "SESPARSE", os.path.basename(x))])
    return build


IMAGES = []  # (name, [commands], damage or None)


def image(name, cmds, damage=None):
    IMAGES.append((name, cmds, damage))


def create(name, size, opts=None):
    cmd = ["QIMG", "create", "-q", "-f", "qcow2"]
    if opts:
        cmd += ["-o", opts]
    return cmd + [name, size]


def io(name, *ops):
    cmd = ["QIO", "-f", "qcow2"]
    for op in ops:
        cmd += ["-c", op]
    return cmd + [name]


# Clean images.
image("empty.qcow2", [create("empty.qcow2", "64M")])
image("v2.qcow2", [create("v2.qcow2", "64M", "compat=0.10"), io("v2.qcow2", "write 0 1M", "write 9M 64k")])
for cs in ["512", "4k", "64k", "2M"]:
    n = "cs%s.qcow2" % cs
    image(n, [create(n, "64M", "cluster_size=" + cs), io(n, "write -P 1 0 200k", "write -P 2 3M 5k", "write 40M 1M")])
image("extl2.qcow2", [create("extl2.qcow2", "64M", "extended_l2=on"),
                      io("extl2.qcow2", "write -P 3 0 1M", "write 2M 4k", "write -z 4M 1M")])
image("comp.qcow2", [create("comp.qcow2", "64M"), io("comp.qcow2", "write -c 0 64k", "write -c 64k 64k", "write 1M 64k")])
image("zero.qcow2", [create("zero.qcow2", "64M"), io("zero.qcow2", "write 0 1M", "write -z 0 512k", "write -z 8M 1M")])
image("snap.qcow2", [create("snap.qcow2", "64M"), io("snap.qcow2", "write 0 1M"),
                     ["QIMG", "snapshot", "-c", "one", "snap.qcow2"], io("snap.qcow2", "write 512k 1M"),
                     ["QIMG", "snapshot", "-c", "two", "snap.qcow2"]])
image("bitmap.qcow2", [create("bitmap.qcow2", "64M"), io("bitmap.qcow2", "write 0 1M"),
                       ["QIMG", "bitmap", "--add", "bitmap.qcow2", "b0"],
                       ["QIMG", "bitmap", "--add", "-g", "1M", "bitmap.qcow2", "b1"]])
# A bitmap with set bits (qemu-io's writes mark it): data clusters under its table.
BITMAP_DATA = [create("@", "64M"), ["QIMG", "bitmap", "--add", "@", "b0"], ["QIMG", "bitmap", "--add", "-g", "1M", "@", "b1"],
               io("@", "write -P 3 0 1M", "write 10M 64k")]
for n, fn in [("bitmapdata.qcow2", None), ("bad_bitmap_leak.qcow2", leak), ("bad_bitmap_in_use.qcow2", bitmap_in_use),
              ("bad_bitmap_table_refcount_zero.qcow2", bitmap_table_refcount_zero)]:
    image(n, [[a if a != "@" else n for a in c] for c in BITMAP_DATA], fn)
for rb in ["1", "8", "64"]:
    n = "rb%s.qcow2" % rb
    image(n, [create(n, "64M", "refcount_bits=" + rb), io(n, "write 0 1M")])
image("lazy.qcow2", [create("lazy.qcow2", "64M", "lazy_refcounts=on"), io("lazy.qcow2", "write 0 1M")])
image("frag.qcow2", [create("frag.qcow2", "64M"), io("frag.qcow2", "write 8M 64k", "write 0 64k", "write 4M 64k")])
image("prealloc.qcow2", [create("prealloc.qcow2", "4M", "preallocation=metadata")])
image("big.qcow2", [create("big.qcow2", "2T"), io("big.qcow2", "write 1T 1M")])
# A 4 TiB file (sparse): its reference-count array (64 M clusters) does not fit in the default
# guest RAM, so the check runs again with the largest (docs/check.md, "Memory bound"), without a flag.
image("sparse4t.qcow2", [create("sparse4t.qcow2", "8T"), ["truncate", "-s", "4T", "sparse4t.qcow2"]])

# Damaged copies of a base with data in the first L2 table.
BASE = [io("@", "write -P 7 0 1M", "write 5M 64k")]
for fn in [leak, leak_many, data_refcount_plus, data_refcount_zero, l2_past_eof, l2_just_past_eof, l2_points_at_l1,
           l2_points_at_reftable, l2_clear_copied, l1_clear_copied, l2_reserved_bits, l1_reserved_bits,
           l2_unaligned, l2_prealloc_unaligned, duplicate_data, reftable_reserved, refblock_refcount, corrupt_bit]:
    n = "bad_%s.qcow2" % fn.__name__
    image(n, [create(n, "64M")] + [[a if a != "@" else n for a in c] for c in BASE], fn)
image("bad_rb1_shared.qcow2", [create("bad_rb1_shared.qcow2", "64M", "refcount_bits=1"),
                              io("bad_rb1_shared.qcow2", "write 0 1M")], duplicate_data)
for fn in [refblock_outside, refblock_unaligned]:
    n = "bad_%s.qcow2" % fn.__name__
    image(n, [create(n, "64M")] + [[a if a != "@" else n for a in c] for c in BASE], fn)
# Past 16 TiB at 64 KiB clusters: beyond the array (the grow is tried first); at 2 MiB clusters
# 32 TiB is inside the array's reach (the grow fails in the walk).
image("bad_refblock_far_64k.qcow2", [create("bad_refblock_far_64k.qcow2", "64M"),
                                     io("bad_refblock_far_64k.qcow2", "write 0 1M")], refblock_far(1 << 50))
image("bad_refblock_far_2m.qcow2", [create("bad_refblock_far_2m.qcow2", "64M", "cluster_size=2M"),
                                    io("bad_refblock_far_2m.qcow2", "write 0 1M")], refblock_far(1 << 45))
for fn in [snapshot_l1_unaligned, snapshot_set_copied]:
    n = "bad_%s.qcow2" % fn.__name__
    image(n, [create(n, "64M"), io(n, "write 0 1M"), ["QIMG", "snapshot", "-c", "snap one", n]], fn)
for fn in [snapshot_extra_first, snapshot_extra_last, snapshot_incomplete, snapshot_extra_huge]:
    n = "bad_%s.qcow2" % fn.__name__
    image(n, [create(n, "64M"), io(n, "write 0 1M"), ["QIMG", "snapshot", "-c", "one", n], io(n, "write 1M 1M"),
              ["QIMG", "snapshot", "-c", "two", n]], fn)
image("bad_many_snapshots.qcow2", [create("bad_many_snapshots.qcow2", "64M"),
                                   io("bad_many_snapshots.qcow2", "write 0 1M")], many_snapshots)
image("bad_huge_snapshot_table.qcow2", [create("bad_huge_snapshot_table.qcow2", "64M"),
                                        io("bad_huge_snapshot_table.qcow2", "write 0 1M")], huge_snapshot_table)
image("bad_dirty_lazy.qcow2", [create("bad_dirty_lazy.qcow2", "64M", "lazy_refcounts=on"),
                               io("bad_dirty_lazy.qcow2", "write 0 1M")], dirty_lazy)
image("bad_compressed_copied.qcow2", [create("bad_compressed_copied.qcow2", "64M"),
                                      io("bad_compressed_copied.qcow2", "write -c 0 64k")], compressed_copied)
image("bad_extl2_bitmap.qcow2", [create("bad_extl2_bitmap.qcow2", "64M", "extended_l2=on"),
                                 io("bad_extl2_bitmap.qcow2", "write 0 64k")], extl2_bad_bitmap)
image("bad_extl2_unalloc.qcow2", [create("bad_extl2_unalloc.qcow2", "64M", "extended_l2=on"),
                                  io("bad_extl2_unalloc.qcow2", "write 0 64k")], extl2_unalloc_bitmap)

# Other formats: qemu's answer for each.
OTHER = [
    ("r.raw", [["QIMG", "create", "-q", "-f", "raw", "r.raw", "1M"]], ["-f", "raw"]),
    ("p.vpc", [["QIMG", "create", "-q", "-f", "vpc", "p.vpc", "10M"]], []),
    ("x.vhdx", [["QIMG", "create", "-q", "-f", "vhdx", "x.vhdx", "10M"]], []),
    ("k.vmdk", [["QIMG", "create", "-q", "-f", "vmdk", "k.vmdk", "10M"]], []),
    ("q-as-raw", None, ["-f", "raw", "empty.qcow2"]),
    ("luks.qcow2", [["QIMG", "create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=pw", "-o",
                     "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10", "luks.qcow2", "16M"]], []),
    ("df.qcow2", [["QIMG", "create", "-q", "-f", "qcow2", "-o", "data_file=df.raw", "df.qcow2", "16M"],
                  ["QIO", "-f", "qcow2", "-c", "write 0 1M", "df.qcow2"]], []),
    ("ov.qcow2", [["QIMG", "create", "-q", "-f", "qcow2", "-b", "v2.qcow2", "-F", "qcow2", "ov.qcow2"]], []),
    ("k2g.vmdk", [["QIMG", "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", "k2g.vmdk", "5G"],
                  ["QIO", "-f", "vmdk", "-c", "write 0 1M", "-c", "write 3G 1M", "k2g.vmdk"]], []),
    ("kstream.vmdk", [["QIMG", "create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", "kstream.vmdk", "10M"]],
     []),
    ("kstream2.vmdk", [["QIMG", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", "v2.qcow2", "kstream2.vmdk"]],
     []),
    ("kflat.vmdk", [["QIMG", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "kflat.vmdk", "10M"]], []),
    ("kbad.vmdk", [["QIMG", "create", "-q", "-f", "vmdk", "kbad.vmdk", "10M"],
                   ["QIO", "-f", "vmdk", "-c", "write 0 1M", "kbad.vmdk"], vmdk_grain_past_eof], []),
    ("kflatbad.vmdk", [["QIMG", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "kflatbad.vmdk", "10M"],
                       vmdk_flat_truncated], []),
    ("kcowd.vmdk", [vmware(lambda m, p: m.cowd(p, 65536, 8, {0: b"1" * 4096, 5000: b"2" * 4096}))], []),
    ("kse.vmdk", [vmware(se_image())], []),
    ("kbadse.vmdk", [vmware(se_image(gd_top=0x20000000))], []),
    # Backing chains: a check opens the chain as qemu does, in one sandbox start where every level is
    # a plain image of a format already loaded, else level by level (docs/check.md). Not a loop of
    # backing files: qemu-img check never ends on one (info_oracle has that case).
    ("ov3.qcow2", [["QIMG", "create", "-q", "-f", "qcow2", "-b", "ov.qcow2", "-F", "qcow2", "ov3.qcow2"],
                   ["QIO", "-f", "qcow2", "-c", "write 0 64k", "ov3.qcow2"]], []),
    ("ovprobe.qcow2", [["QIMG", "create", "-q", "-f", "qcow2", "-b", "v2.qcow2", "-F", "qcow2", "ovprobe.qcow2"],
                       without_backing_format], []),
    ("ovmissing.qcow2", [["QIMG", "create", "-q", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2",
                          "ovmissing.qcow2", "64M"]], []),
    ("ovraw.qcow2", [["QIMG", "create", "-q", "-f", "qcow2", "-b", "r.raw", "-F", "raw", "ovraw.qcow2"]], []),
    ("ovvmdk.qcow2", [["QIMG", "create", "-q", "-f", "qcow2", "-b", "k2g.vmdk", "-F", "vmdk", "ovvmdk.qcow2"]], []),
    ("ovbad.qcow2", [lambda path: bad_version_qcow2(os.path.join(os.path.dirname(path), "badver.qcow2")),
                     ["QIMG", "create", "-q", "-f", "qcow2", "-u", "-b", "badver.qcow2", "-F", "qcow2",
                      "ovbad.qcow2", "64M"]], []),
    ("ovwrongfmt.qcow2", [["QIMG", "create", "-q", "-f", "qcow2", "-u", "-b", "k.vmdk", "-F", "qcow2",
                           "ovwrongfmt.qcow2", "64M"]], []),
]

# qemu's read-write open refuses these: `check -r leaks|all` is "Could not open 'X': No write
# support for seSparse images available" (exit 1) in both.
READ_ONLY_OTHER = {"kse.vmdk"}

# Command-line errors, per profile.
USAGE = [
    ["-r", "foo", "empty.qcow2"], ["empty.qcow2", "b"], [], ["--output=xml", "empty.qcow2"],
    ["-T", "bogus", "empty.qcow2"], ["-z", "empty.qcow2"], ["--bogus", "empty.qcow2"], ["-f"],
    ["-q", "empty.qcow2"], ["-T", "none", "empty.qcow2"], ["-U", "empty.qcow2"], ["nonexist.qcow2"],
    ["-f", "vpc", "empty.qcow2"], ["-f", "qcow2", "--image-opts", "empty.qcow2"], ["--output=xml"],
    ["--cache=none", "empty.qcow2"], ["--quiet", "empty.qcow2"], ["-U", "-r", "leaks", "empty.qcow2"],
]


# qemu repairs instar refuses (before writing anything): qemu's stderr names them.
UNIMPLEMENTED_REPAIRS = ()  # every repair qemu makes on these images is implemented


# Images whose bytes may differ after a repair: none now (instar re-stores persistent bitmaps on a
# read-write run as qemu's close does).
BITMAP_IMAGES = ()
# Images whose repair ends in a fatal corruption signal: qemu then drops the block driver without
# writing its refcount-block cache back (bs->drv = NULL; the "Repairing cluster" refcounts it
# printed are lost), while instar has written them (docs/check.md). Output and exit code must match.
LOST_CACHE_IMAGES = ("bad_snapshot_extra_first.qcow2",)
REPAIR_VARIANTS = ("bad_leak.qcow2", "bad_l2_clear_copied.qcow2", "bad_data_refcount_plus.qcow2",
                   "bad_data_refcount_zero.qcow2")
REPAIR_CLEAN = ("v2.qcow2", "extl2.qcow2", "comp.qcow2", "snap.qcow2", "bitmap.qcow2", "bitmapdata.qcow2", "rb1.qcow2", "rb64.qcow2",
                "lazy.qcow2")


def leak_many_clusters(path, count):
    """Every other cluster of `2 * count` new ones leaked: no two freed clusters are adjacent, so
    the repair makes one discard per leak and a kill can land between any two."""
    q = Qcow2(path)
    first = q.grow(2 * count)
    with open(path, "r+b") as f:
        for c in range(first, first + 2 * count, 2):
            rb, i = q.refblock(c)
            f.seek(rb + 2 * i)
            f.write(struct.pack(">H", 1))


def vhdx_mask(data, log_guid_too=False):
    """Both VHDX headers without what a session makes up: the checksum, the file and data write
    GUIDs (random in qemu and instar). log_guid_too: also the log GUID (docs/quirks.md: a failed
    replay leaves qemu's other header slot with its own log GUID)."""
    b = bytearray(data)
    for off in (64 * 1024, 128 * 1024):
        b[off + 4:off + 8] = bytes(4)
        b[off + 16:off + (64 if log_guid_too else 48)] = bytes(64 - 16 if log_guid_too else 32)
    return bytes(b)


def vhdx_log_cases(work, env, q72, q10, qio, qemu_named, run, compare):
    """VHDX images whose log needs replay (vhdx_log_images.py): without -r both refuse the read-only
    open; `check -r leaks|all` replays the log (qemu's read-write open) and counts it as one fixed
    corruption; a log that fails to replay is "Could not open" after the headers changed. The
    repaired files equal qemu's but for the session GUIDs; a kill at any write leaves an image that
    qemu-img's own `check -r all` finishes to the same data."""
    passed = failed = 0
    base = os.path.join(work, "vlog-base.vhdx")
    run([q72, "create", "-q", "-f", "vhdx", base, "16M"], work, env)
    run([qio, "-f", "vhdx", "-c", "write -P 0x5a 0 1M", base], work, env)
    b = block_offset(base, 0)
    with_pending_log(base, os.path.join(work, "vlog.vhdx"))
    with_pending_log(base, os.path.join(work, "vlogd.vhdx"), writes=[(b + 1044480, bytes(range(256)) * 16)],
                     zeros=[(b + 1040384, 4096)], grow=4096)
    with_pending_log(base, os.path.join(work, "vlogbad.vhdx"), flushed=1 << 40)
    for name in ("vlog.vhdx", "vlogd.vhdx", "vlogbad.vhdx"):
        for extra in ([], ["--output=json"], ["-q"]):
            compare(name, extra + [name])
        runs = [("leaks", (q72, "7.2.22"), []), ("all", (q10, "10.0.2"), []),
                ("all", (q72, "7.2.22"), ["--output=json"]), ("leaks", (q10, "10.0.2"), ["-q"]),
                ("all", (q10, "10.0.2"), ["-f", "vhdx"])]
        for mode, (oracle, version), extra in runs:
            for sub in ("rq", "ri"):
                os.makedirs(os.path.join(work, sub), exist_ok=True)
                shutil.copyfile(os.path.join(work, name), os.path.join(work, sub, name))
            want = run([oracle, "check", "-r", mode] + extra + [name], os.path.join(work, "rq"), env)
            got = run([qemu_named, "--qemu-version", version, "check", "-r", mode] + extra + [name],
                      os.path.join(work, "ri"), env)
            want = (want[0], want[1], want[2].replace(oracle, "QEMU-IMG"))
            got = (got[0], got[1], got[2].replace(qemu_named, "QEMU-IMG"))
            with open(os.path.join(work, "rq", name), "rb") as f:
                want_bytes = vhdx_mask(f.read(), name == "vlogbad.vhdx")
            with open(os.path.join(work, "ri", name), "rb") as f:
                got_bytes = vhdx_mask(f.read(), name == "vlogbad.vhdx")
            if want == got and want_bytes == got_bytes:
                passed += 1
            else:
                failed += 1
                print("FAIL vhdx log repair %s -r %s %s [%s] (bytes %s)\n--- want (rc %d)\n%s%s--- got (rc %d)\n%s%s" %
                      (name, mode, " ".join(extra), version, "same" if want_bytes == got_bytes else "differ",
                       want[0], want[1], want[2], got[0], got[1], got[2]))
    # Kill points: the host ends at each file change of instar's replay; qemu-img check -r all then
    # replays what is left, and the data equal qemu-img's own replay of the same log.
    ref = os.path.join(work, "vlog-ref.vhdx")
    shutil.copyfile(os.path.join(work, "vlogd.vhdx"), ref)
    run([q72, "check", "-r", "all", ref], work, env)
    points = 0
    for n in range(1, 100):
        img = os.path.join(work, "vlog-kill.vhdx")
        shutil.copyfile(os.path.join(work, "vlogd.vhdx"), img)
        krc, _, _ = run([qemu_named, "check", "-r", "all", img], work, dict(env, INSTAR_TEST_KILL_AT_WRITE=str(n)))
        rc, _, err = run([q10, "check", "-r", "all", img], work, env)
        rc2, out2, _ = run([q72, "compare", "-f", "vhdx", "-F", "vhdx", ref, img], work, env)
        if rc == 0 and rc2 == 0:
            passed += 1
        else:
            failed += 1
            print("FAIL vhdx log kill at write %d (rc %d): qemu-img check -r all rc %d (%s), compare rc %d %s" %
                  (n, krc, rc, err[-300:], rc2, out2))
        points += 1
        if krc == 0:
            break  # the replay finished before the n-th change: every point was covered
    if points < 4:
        failed += 1
        print("FAIL vhdx log kill test: only %d kill points" % points)
    return passed, failed


def run(cmd, cwd, env):
    p = run_fixture(cmd, cwd=cwd, env=env, timeout=120)
    return p.returncode, p.stdout, p.stderr


def main():
    args, status = start_with_oracles(__doc__, 4)
    if args is None:
        return status
    instar, q72, q10, qio = args[:4]
    env = dict(os.environ, TZ="UTC", LC_ALL="C")
    passed = failed = 0
    work = tempfile.mkdtemp(prefix="instar-check-")
    # instar names itself after argv[0]: a link named qemu-img makes its error lines qemu-img's.
    os.mkdir(os.path.join(work, "bin"))
    qemu_named = os.path.join(work, "bin", "qemu-img")
    os.symlink(os.path.abspath(instar), qemu_named)
    only = os.environ.get("CHECK_ONLY")

    def compare(label, args, oracles=((q72, "7.2.22"), (q10, "10.0.2"))):
        nonlocal passed, failed
        for oracle, version in oracles:
            want = run([oracle, "check"] + args, work, env)
            got = run([qemu_named, "--qemu-version", version, "check"] + args, work, env)
            # 10.0 names argv[0] in its usage hints.
            want = (want[0], want[1], want[2].replace(oracle, "QEMU-IMG"))
            got = (got[0], got[1], got[2].replace(qemu_named, "QEMU-IMG"))
            if want == got:
                passed += 1
            else:
                failed += 1
                print("FAIL %s: qemu-img %s check %s\n--- want (rc %d)\n%s%s--- got (rc %d)\n%s%s" %
                      (label, version, " ".join(args), want[0], want[1], want[2], got[0], got[1], got[2]))

    try:
        versions = ((q72, "7.2.22"), (q10, "10.0.2"))
        for i, (name, cmds, damage) in enumerate(IMAGES):
            if only and only not in name:
                continue
            for c in cmds:
                c = [q72 if a == "QIMG" else qio if a == "QIO" else a for a in c]
                rc, out, err = run(c, work, env)
                if rc != 0:
                    print("SETUP FAIL %s: %s\n%s" % (name, c, err))
                    failed += 1
            if damage:
                damage(Qcow2(os.path.join(work, name)))
            # Human output against both oracles; JSON and -q (the same findings in other words, or
            # none) each against one, the versions taking turns image by image, so every image is
            # seen in every mode and every mode under both profiles.
            compare(name, [name])
            compare(name, ["--output=json", name], oracles=(versions[i % 2],))
            compare(name, ["-q", name], oracles=(versions[(i + 1) % 2],))
        for name, cmds, args in OTHER:
            if only and only not in name:
                continue
            for c in cmds or []:
                if callable(c):
                    c(os.path.join(work, name))
                    continue
                rc, out, err = run([q72 if a == "QIMG" else qio if a == "QIO" else a for a in c], work, env)
                if rc != 0:
                    print("SETUP FAIL %s: %s\n%s" % (name, c, err))
                    failed += 1
            for extra in ([], ["--output=json"], ["-r", "leaks"], ["-r", "all"]):
                if extra and extra[0] == "-r" and "bad" in name:
                    continue
                if extra == ["-r", "all"] and name not in READ_ONLY_OTHER:
                    continue
                compare(name, extra + args + ([name] if cmds else []))
        if not only:
            for args in USAGE:
                compare("usage", args)
        # -r leaks / -r all on copies: the same output, exit code and repaired bytes as qemu-img.
        # Each damaged image (and a few clean ones with every kind of metadata) once per mode, the
        # modes alternating between the profiles (repair's words are the same in both).
        for name, _, damage in IMAGES:
            if only and only not in name:
                continue
            if damage is None and name not in REPAIR_CLEAN:
                continue
            runs = [("leaks", (q72, "7.2.22"), []), ("all", (q10, "10.0.2"), [])]
            if name in REPAIR_VARIANTS:
                runs += [("all", (q72, "7.2.22"), ["--output=json"]), ("leaks", (q10, "10.0.2"), ["-q"])]
            for mode, (oracle, version), extra in runs:
                if True:
                    for sub in ("rq", "ri"):
                        os.makedirs(os.path.join(work, sub), exist_ok=True)
                        shutil.copyfile(os.path.join(work, name), os.path.join(work, sub, name))
                    if name in FAR_GROWABLE and mode == "all":
                        # This file system holds the grown file: qemu would walk petabytes. instar
                        # stops after the grow: the same bytes, then only a hole.
                        path = os.path.join(work, "ri", name)
                        got = run([qemu_named, "--qemu-version", version, "check", "-r", mode] + extra + [name],
                                  os.path.join(work, "ri"), env)
                        with open(path, "rb") as f, open(os.path.join(work, name), "rb") as o:
                            orig = o.read()
                            same = f.read(len(orig)) == orig
                            try:
                                os.lseek(f.fileno(), len(orig), os.SEEK_DATA)
                                hole = False
                            except OSError:
                                hole = True
                        if got[0] == 1 and "instar does not implement" in got[2] and same and hole:
                            passed += 1
                        else:
                            failed += 1
                            print("FAIL repair %s -r all (growable file system): rc %d\n%s" % (name, got[0], got[2]))
                        os.unlink(path)
                        continue
                    want = run([oracle, "check", "-r", mode] + extra + [name], os.path.join(work, "rq"), env)
                    got = run([qemu_named, "--qemu-version", version, "check", "-r", mode] + extra + [name],
                              os.path.join(work, "ri"), env)
                    with open(os.path.join(work, "rq", name), "rb") as f:
                        want_bytes = f.read()
                    with open(os.path.join(work, "ri", name), "rb") as f:
                        got_bytes = f.read()
                    with open(os.path.join(work, name), "rb") as f:
                        orig = f.read()
                    label = "repair %s -r %s [%s]" % (name, mode, version)
                    if any(u in want[2] for u in UNIMPLEMENTED_REPAIRS):
                        ok = got[0] == 1 and "instar does not implement" in got[2] and got_bytes == orig
                    elif name in LOST_CACHE_IMAGES and "Marking image as corrupt" in want[2]:
                        ok = want == got
                    elif name in BITMAP_IMAGES:
                        after = run([oracle, "check", name], os.path.join(work, "ri"), env)
                        ok = want == got and after[0] == 0
                    else:
                        ok = want == got and want_bytes == got_bytes
                    if ok:
                        passed += 1
                    else:
                        failed += 1
                        print("FAIL %s (bytes %s)\n--- want (rc %d)\n%s%s--- got (rc %d)\n%s%s" %
                              (label, "same" if want_bytes == got_bytes else "differ", want[0], want[1], want[2],
                               got[0], got[1], got[2]))
        # The process sandbox (hosts without /dev/kvm) runs the same guest code: a few checks and a
        # repair through it.
        penv = dict(env, INSTAR_SANDBOX="process")
        for name in ("bad_leak.qcow2", "bad_l2_past_eof.qcow2", "snap.qcow2", "bad_snapshot_extra_first.qcow2"):
            if only and only not in name:
                continue
            want = run([q72, "check", name], work, env)
            got = run([qemu_named, "--qemu-version", "7.2.22", "check", name], work, penv)
            if want == got:
                passed += 1
            else:
                failed += 1
                print("FAIL process sandbox %s\n--- want (rc %d)\n%s%s--- got (rc %d)\n%s%s" %
                      (name, want[0], want[1], want[2], got[0], got[1], got[2]))
        # Crash consistency: kill -9 a repair of many leaks at several points; qemu-img check must
        # then find nothing worse than leaks, and a second repair must finish the job.
        if not only or "kill" in only:
            base = os.path.join(work, "kill-base.qcow2")
            run([q72, "create", "-q", "-f", "qcow2", base, "64M"], work, env)
            run([qio, "-f", "qcow2", "-c", "write 0 1M", base], work, env)
            leak_many_clusters(base, 500)
            import subprocess
            import time
            for i in range(8):
                img = os.path.join(work, "kill.qcow2")
                shutil.copyfile(base, img)
                p = subprocess.Popen([qemu_named, "check", "-r", "leaks", img], cwd=work, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(0.01 + 0.03 * i)
                p.kill()
                p.wait()
                rc, out, err = run([q10, "check", img], work, env)
                bad = [ln for ln in err.splitlines() if not ln.startswith("Leaked cluster")]
                rc2, out2, err2 = run([qemu_named, "check", "-r", "leaks", img], work, env)
                rc3, out3, err3 = run([q72, "check", img], work, env)
                if rc in (0, 3) and not bad and rc2 == 0 and rc3 == 0:
                    passed += 1
                else:
                    failed += 1
                    print("FAIL kill point %d: qemu-img check rc %d (%s), re-repair rc %d, final rc %d\n%s%s" %
                          (i, rc, bad[:3], rc2, rc3, err2[-500:], err3[-500:]))
        # Crash consistency of the repairs that write new structures: the host ended at every file
        # change of `-r all` (INSTAR_TEST_KILL_AT_WRITE). After each kill qemu-img check may find the
        # original damage or leaks, nothing else; a second `-r all` then leaves a clean image whose
        # data equal qemu-img's own repair of the same damage.
        def kill_every_write(label, make_base):
            nonlocal passed, failed
            base = os.path.join(work, label + "-base.qcow2")
            make_base(base)
            orig_lines = set(run([q72, "check", base], work, env)[2].splitlines())
            ref = os.path.join(work, label + "-ref.qcow2")
            shutil.copyfile(base, ref)
            run([q72, "check", "-r", "all", ref], work, env)
            points = 0
            for n in range(1, 200):
                img = os.path.join(work, label + "-kill.qcow2")
                shutil.copyfile(base, img)
                krc, _, _ = run([qemu_named, "check", "-r", "all", img], work,
                                dict(env, INSTAR_TEST_KILL_AT_WRITE=str(n)))
                rc, out, err = run([q10, "check", img], work, env)
                bad = [ln for ln in err.splitlines() if ln not in orig_lines and not ln.startswith("Leaked cluster")]
                rc2, _, err2 = run([qemu_named, "check", "-r", "all", img], work, env)
                rc3, _, _ = run([q72, "check", img], work, env)
                rc4, out4, _ = run([q72, "compare", ref, img], work, env)
                if rc in (0, 2, 3) and not bad and rc2 == 0 and rc3 == 0 and rc4 == 0:
                    passed += 1
                else:
                    failed += 1
                    print("FAIL %s kill at write %d (rc %d): qemu-img check rc %d (%s), re-repair rc %d, "
                          "final rc %d, compare rc %d %s\n%s" % (label, n, krc, rc, bad[:3], rc2, rc3, rc4, out4,
                                                                  err2[-500:]))
                points += 1
                if krc == 0:
                    break  # the repair finished before the n-th change: every point was covered
            if points < 4:
                failed += 1
                print("FAIL %s kill test: only %d kill points" % (label, points))

        def rebuild_base(path):
            run([q72, "create", "-q", "-f", "qcow2", path, "64M"], work, env)
            run([qio, "-f", "qcow2", "-c", "write -P 7 0 1M", "-c", "write -P 9 5M 64k", path], work, env)
            data_refcount_zero(Qcow2(path))

        def snapshot_base(path):
            run([q72, "create", "-q", "-f", "qcow2", path, "64M"], work, env)
            run([qio, "-f", "qcow2", "-c", "write -P 7 0 1M", path], work, env)
            run([q72, "snapshot", "-c", "one", path], work, env)
            run([qio, "-f", "qcow2", "-c", "write -P 8 1M 1M", path], work, env)
            run([q72, "snapshot", "-c", "two", path], work, env)
            snapshot_incomplete(Qcow2(path))

        def bitmap_base(path):
            for c in BITMAP_DATA:
                run([q72 if a == "QIMG" else qio if a == "QIO" else path if a == "@" else a for a in c], work, env)
            leak(Qcow2(path))

        if not only or "kill" in only:
            kill_every_write("rebuild", rebuild_base)
            kill_every_write("snapshot", snapshot_base)
            kill_every_write("bitmap", bitmap_base)
        if not only or "sparse4t" in only:
            # With the cap given on the command line the check keeps to it and says which flag to raise.
            rc, out, err = run([os.path.abspath(instar), "--max-guest-memory", "256M", "check", "sparse4t.qcow2"], work, env)
            if rc == 1 and out == "" and "does not fit in guest memory; raise --max-guest-memory" in err:
                passed += 1
            else:
                failed += 1
                print("FAIL sparse4t with --max-guest-memory 256M: rc %d\n%s%s" % (rc, out, err))
            # A repair whose first run ran out of guest RAM before it changed anything runs again with
            # the largest, as the check does: qemu-img's output and exit code, no flag, and (nothing
            # to repair) the file untouched by all three tools. With the cap given it keeps to it.
            path = os.path.join(work, "sparse4t.qcow2")
            before = (os.path.getsize(path), open(path, "rb").read(1 << 20))
            compare("sparse4t -r leaks", ["-r", "leaks", "sparse4t.qcow2"])
            rc, out, err = run([os.path.abspath(instar), "--max-guest-memory", "256M", "check", "-r", "all",
                                "sparse4t.qcow2"], work, env)
            after = (os.path.getsize(path), open(path, "rb").read(1 << 20))
            if rc == 1 and "does not fit in guest memory; raise --max-guest-memory" in err and before == after:
                passed += 1
            else:
                failed += 1
                print("FAIL sparse4t -r all with --max-guest-memory 256M: rc %d, file changed %s\n%s%s" %
                      (rc, before != after, out, err))
        if not only or "vhdxlog" in only:
            p, f = vhdx_log_cases(work, env, q72, q10, qio, qemu_named, run, compare)
            passed += p
            failed += f
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
