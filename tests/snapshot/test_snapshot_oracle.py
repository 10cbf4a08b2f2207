#!/usr/bin/env python3
"""Differential test of `instar snapshot` against qemu-img 7.2 and 10.0.

1. Sequences of -c/-a/-d (with qemu-io writes between them) on qcow2 variants (v2, v3, 512-byte
   and 2 MiB clusters, refcount widths 1 and 64, extended L2, compressed and zero clusters): after
   every step instar's copy and qemu-img's copy must be byte-identical except the snapshot dates,
   with the same exit code, stdout and stderr under each profile.
2. -l: instar and qemu-img list the same image identically (dates in a non-UTC local time zone).
3. Lookup (ID before name for -a, name only for -d), long names (qemu's 255 bytes), 100 snapshots
   made one by one, 1000 snapshots in a crafted table.
4. Refusals and usage errors: missing snapshots, raw/vmdk/vpc/vhdx, option errors.
5. Crash consistency: the host killed at every write (INSTAR_TEST_KILL_AT_WRITE) of -c, -d and -a;
   qemu-img check must accept the image (exit 0 or 3; exit 2 only for OFLAG_COPIED lines, which
   qemu's own order leaves in the same window and check -r all repairs), the snapshot list must be
   the old or the new one and the disk content the old or the new one.

Usage: test_snapshot_oracle.py INSTAR QEMU72 QEMU10 QEMU_IO
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from oracle_retry import run_fixture, run_normalised  # noqa: E402
from differential_support import start_with_oracles  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bitmap"))
from test_bitmap_oracle import read_bitmaps, set_in_use  # noqa: E402

PASSED = 0
FAILED = 0


def ok(cond, label, detail=""):
    global PASSED, FAILED
    if cond:
        PASSED += 1
    else:
        FAILED += 1
        print("FAIL %s%s" % (label, ("\n" + detail) if detail else ""))


def masked(path):
    """The file's bytes with every snapshot entry's date (date_sec, date_nsec) zeroed."""
    b = bytearray(open(path, "rb").read())
    nb, off = struct.unpack(">IQ", b[60:72])
    o = off
    for _ in range(nb):
        o = (o + 7) & ~7
        b[o + 16:o + 24] = bytes(8)
        (extra,) = struct.unpack(">I", b[o + 36:o + 40])
        il, nl = struct.unpack(">HH", b[o + 12:o + 16])
        o += 40 + extra + il + nl
    return bytes(b)


def first_diff(a, b):
    if len(a) != len(b):
        return "lengths %d and %d" % (len(a), len(b))
    for i in range(len(a)):
        if a[i] != b[i]:
            return "first difference at %#x" % i
    return ""


def craft_many(path, count, cs=65536, ids=None):
    """Appends a snapshot table of `count` entries with empty disks (L1 size 0) to a fresh qemu-made
    image with no data, with the refcounts of its clusters set: what `count` snapshots of an empty
    disk look like, without running qemu-img `count` times."""
    entries = b""
    for i in range(count):
        while len(entries) % 8:
            entries += b"\0"
        sid = (ids[i] if ids else str(i + 1)).encode()
        name = ("snap-%04d" % i).encode()
        # Extra data of every size qemu versions wrote or may write: none (qemu < 1.1), the large
        # VM state size, + disk size, + icount (5.0), and 16 bytes qemu does not know.
        extra = (0, 8, 16, 24, 40)[i % 5]
        known = struct.pack(">QQQ", i * 4096, 64 << 20, 1000 + i) + bytes(16)
        entries += struct.pack(">QIHHIIQII", 0, 0, len(sid), len(name), 1700000000 + i, 0, i * 1000000000,
                               i * 4096, extra)
        entries += known[:extra] + sid + name
    with open(path, "r+b") as f:
        h = f.read(112)
        rt_off = struct.unpack(">Q", h[48:56])[0]
        f.seek(0, 2)
        size = f.tell()
        start = (size + cs - 1) // cs * cs
        f.seek(start)
        f.write(entries)
        clusters = (len(entries) + cs - 1) // cs
        f.seek(rt_off)
        rb = struct.unpack(">Q", f.read(8))[0]
        for c in range(start // cs, start // cs + clusters):
            f.seek(rb + 2 * c)
            f.write(struct.pack(">H", 1))
        f.seek(60)
        f.write(struct.pack(">IQ", count, start))


def main():
    args, status = start_with_oracles(__doc__, 4)
    if args is None:
        return status
    instar, q72, q10, qio = args[:4]
    env = dict(os.environ, TZ="Asia/Kolkata", LC_ALL="C")
    env.pop("INSTAR_TEST_KILL_AT_WRITE", None)
    work = tempfile.mkdtemp(prefix="instar-snapshot-")
    os.mkdir(os.path.join(work, "bin"))
    qemu_named = os.path.join(work, "bin", "qemu-img")
    os.symlink(os.path.abspath(instar), qemu_named)
    oracles = ((q72, "7.2.22"), (q10, "10.0.2"))
    only = os.environ.get("SNAPSHOT_ONLY")

    def run(cmd, e=env):
        return run_normalised(cmd, work, e)

    def fixture(cmd):
        # (retried on qemu's transient failures: a LUKS key slot's PBKDF timing)
        p = run_fixture([q72 if a == "QIMG" else qio if a == "QIO" else a for a in cmd], cwd=work, env=env)
        if p.returncode != 0:
            ok(False, "setup %s" % cmd, p.stderr)

    def pair(label, args, a, b, oracle, version):
        """Runs instar on a and qemu-img on b with the same args; same exit, stdout, stderr."""
        want = run([oracle, "snapshot"] + args + [b])
        got = run([qemu_named, "--qemu-version", version, "snapshot"] + args + [a])
        want = (want[0], want[1], want[2].replace(oracle, "QEMU-IMG").replace(b, "IMG"))
        got = (got[0], got[1], got[2].replace(qemu_named, "QEMU-IMG").replace(a, "IMG"))
        ok(want == got, "%s: qemu-img %s snapshot %s" % (label, version, " ".join(args)),
           "--- want\n%r\n--- got\n%r" % (want, got))
        return got[0]

    def same_bytes(label, a, b):
        ma, mb = masked(a), masked(b)
        ok(ma == mb, label + ": bytes", first_diff(ma, mb))

    def compare(label, args, oracles_=oracles, instar_extra=()):
        for oracle, version in oracles_:
            want = run([oracle, "snapshot"] + args)
            got = run([qemu_named, "--qemu-version", version, "snapshot"] + list(instar_extra) + args)
            want = (want[0], want[1], want[2].replace(oracle, "QEMU-IMG"))
            got = (got[0], got[1], got[2].replace(qemu_named, "QEMU-IMG"))
            ok(want == got, "%s: qemu-img %s snapshot %s" % (label, version, " ".join(args)),
               "--- want\n%r\n--- got\n%r" % (want, got))

    W = ["QIO", "-c", "write -P 0x22 64k 192k"]
    variants = [
        ("v3", ["-o", "compat=1.1"], [["QIO", "-c", "write -P 0x11 0 256k"]]),
        ("v2", ["-o", "compat=0.10"], [["QIO", "-c", "write -P 0x11 0 256k"]]),
        ("c512", ["-o", "cluster_size=512"], [["QIO", "-c", "write -P 0x11 0 64k"]]),
        ("c2m", ["-o", "cluster_size=2M"], [["QIO", "-c", "write -P 0x11 0 3M"]]),
        ("rc64", ["-o", "refcount_bits=64"], [["QIO", "-c", "write -P 0x11 0 256k"]]),
        ("extl2", ["-o", "extended_l2=on"], [["QIO", "-c", "write -P 0x11 0 256k"]]),
        ("zero", [], [["QIO", "-c", "write -P 0x11 0 256k"], ["QIO", "-c", "write -z 64k 64k"],
                      ["QIO", "-c", "write -z -u 128k 64k"]]),
    ]
    steps = [["-c", "s1"], "W", ["-c", "s2"], ["-l"], ["-a", "s1"], ["-d", "s1"], ["-c", "s3"], ["-a", "2"],
             ["-d", "s2"], ["-d", "s3"], ["-l"]]
    try:
        # 1. Sequences, byte for byte.
        for name, opts, writes in variants:
            if only and only not in name:
                continue
            # The bytes do not depend on the profile: 7.2 runs the sequence on v3 only.
            for oracle, version in oracles if name == "v3" else oracles[1:]:
                a = os.path.join(work, "%s-%s-i.qcow2" % (name, version))
                b = os.path.join(work, "%s-%s-q.qcow2" % (name, version))
                fixture(["QIMG", "create", "-q", "-f", "qcow2"] + opts + [b, "64M"])
                for w in writes:
                    fixture(w + [b])
                shutil.copy(b, a)
                for st in steps:
                    if st == "W":
                        fixture(W + [a])
                        fixture(W + [b])
                        continue
                    if st == ["-l"]:
                        pair(name, st, b, b, oracle, version)  # both list qemu's copy: same dates
                        continue
                    pair(name, st, a, b, oracle, version)
                    same_bytes("%s %s after %s" % (name, version, " ".join(st)), a, b)
                rc, out, err = run([q10, "check", a])
                ok(rc == 0, "%s %s: qemu-img check of instar's result" % (name, version), out + err)
        # Persistent bitmaps (qcow2_bitmap_carry.h): qemu stores them anew when it closes the image
        # after -c and -d, byte for byte; -a is refused (below). Enabled bitmaps at qemu's default
        # and 512-byte granularity, a disabled one, and one in use (left as it is); every bit compared.
        # (A -c of an existing name is not a failure: qcow2 snapshot names need not be unique.)
        if not only or "bitmaps" in only:
            for oracle, version in oracles:
                a = os.path.join(work, "bm-%s-i.qcow2" % version)
                b = os.path.join(work, "bm-%s-q.qcow2" % version)
                fixture(["QIMG", "create", "-q", "-f", "qcow2", b, "64M"])
                for bm in (["b0"], ["-g", "512", "b512"], ["-g", "1M", "--disable", "boff"], ["bad"]):
                    fixture(["QIMG", "bitmap", "--add", b] + bm)
                fixture(["QIO", "-c", "write -P 0x11 0 256k", "-c", "write -P 0x12 40M 512", b])
                set_in_use(b, "bad")
                shutil.copy(b, a)
                for st in (["-c", "s1"], "W", ["-c", "s2"], ["-d", "s1"], ["-c", "s2"], ["-d", "s2"]):
                    if st == "W":
                        fixture(W + [a])
                        fixture(W + [b])
                        continue
                    pair("bitmaps", st, a, b, oracle, version)
                    same_bytes("bitmaps %s after %s" % (version, " ".join(st)), a, b)
                    ok(read_bitmaps(a) == read_bitmaps(b), "bitmaps %s after %s: bits" % (version, " ".join(st)),
                       "%s\n%s" % (read_bitmaps(a), read_bitmaps(b)))
                rc, out, err = run([q10, "check", a])
                ok(rc == 0, "bitmaps %s: qemu-img check of instar's result" % version, out + err)
                # A failed -d: the same message; qemu's close stores the bitmaps anew, instar leaves
                # the image untouched (divergence qcow2-failed-edit-bitmaps).
                before = open(a, "rb").read()
                pair("bitmaps", ["-d", "nope"], a, b, oracle, version)
                ok(open(a, "rb").read() == before, "bitmaps %s: a failed -d leaves the image untouched" % version)
        # -a of a snapshot whose disk size differs (qcow2_truncate.h): qemu truncates the disk to the
        # snapshot's size first (shrinking: the cropped clusters discarded; growing: a larger L1
        # table), then applies it. Resizes between the steps are qemu-img's, on both copies.
        if not only or "resized" in only:
            # An overlay (round 35): growing its disk to the snapshot's zeroes the new area where its
            # 6 MiB backing file reaches (qemu's bdrv_co_truncate, BDRV_REQ_ZERO_WRITE): the host
            # tells the guest the backing file's size, running -a again after the one-start path.
            ovbase = os.path.join(work, "ovbase.qcow2")
            fixture(["QIMG", "create", "-q", "-f", "qcow2", ovbase, "6M"])
            fixture(["QIO", "-c", "write -P 0x55 0 6M", ovbase])
            for label, opts, size, steps in (
                    ("resized-overlay", ["-o", "cluster_size=4k", "-b", ovbase, "-F", "qcow2"], "8M",
                     [["-c", "s1"], "R-3M", ["-a", "s1"], "R-2M", "R+5M", ["-a", "s1"], ["-d", "s1"]]),
                    # Round 37: cut to inside a cluster it does not map, so -a's truncate copies that
                    # cluster's head from the backing file (the host reads it, -a runs once more).
                    ("resized-overlay-head", ["-b", ovbase, "-F", "qcow2"], "4M",
                     [["-c", "s1"], "R-1049088", ["-a", "s1"], ["-d", "s1"]]),
                    ("resized-shrink", [], "64M", [["-c", "s1"], "R+2G", "W2", ["-a", "s1"], ["-a", "s1"]]),
                    ("resized-grow", [], "1G", [["-c", "s1"], "R-64M", ["-a", "s1"], ["-d", "s1"]]),
                    ("resized-512", ["-o", "cluster_size=512"], "1M", [["-c", "s1"], "R+3M", "W", ["-c", "s2"],
                                                                       "R-512k", ["-a", "s2"], ["-a", "s1"]])):
                for oracle, version in oracles[1:]:  # the bytes do not depend on the profile
                    a = os.path.join(work, "%s-%s-i.qcow2" % (label, version))
                    b = os.path.join(work, "%s-%s-q.qcow2" % (label, version))
                    fixture(["QIMG", "create", "-q", "-f", "qcow2"] + opts + [b, size])
                    fixture(["QIO", "-c", "write -P 0x11 0 256k", b])
                    shutil.copy(b, a)
                    for st in steps:
                        if st in ("W", "W2"):
                            w = W if st == "W" else ["QIO", "-c", "write -P 0x33 1500M 1M"]
                            fixture(w + [a])
                            fixture(w + [b])
                            continue
                        if isinstance(st, str):  # qemu-img resize of both copies
                            grow = st[1] == "+"
                            for f in (a, b):
                                fixture(["QIMG", "resize", "-q"] + ([] if grow else ["--shrink"]) + [f, st[2:]])
                            continue
                        pair(label, st, a, b, oracle, version)
                        same_bytes("%s %s after %s" % (label, version, " ".join(st)), a, b)
                    rc, out, err = run([q10, "check", a])
                    ok(rc == 0, "%s %s: qemu-img check of instar's result" % (label, version), out + err)
        # Compressed clusters (convert -c) and refcount_bits=1 (-c overflows: -EINVAL, as qemu).
        if not only or "compressed" in only:
            raw = os.path.join(work, "src.raw")
            with open(raw, "wb") as f:
                f.write(b"\x33" * (1 << 20) + bytes(1 << 20) + os.urandom(1 << 16))
            for oracle, version in oracles:
                b = os.path.join(work, "comp-%s-q.qcow2" % version)
                a = os.path.join(work, "comp-%s-i.qcow2" % version)
                fixture(["QIMG", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, b])
                shutil.copy(b, a)
                for st in (["-c", "s1"], ["-c", "s2"], ["-d", "s1"], ["-a", "s2"], ["-d", "s2"]):
                    pair("compressed", st, a, b, oracle, version)
                    same_bytes("compressed %s after %s" % (version, " ".join(st)), a, b)
                b = os.path.join(work, "rc1-%s-q.qcow2" % version)
                a = os.path.join(work, "rc1-%s-i.qcow2" % version)
                fixture(["QIMG", "create", "-q", "-f", "qcow2", "-o", "refcount_bits=1", b, "1M"])
                fixture(["QIO", "-c", "write -P 0x11 0 128k", b])
                shutil.copy(b, a)
                pair("refcount_bits=1", ["-c", "s1"], a, b, oracle, version)
                same_bytes("refcount_bits=1 %s" % version, a, b)
        # 3. Lookup: -a tries IDs first, -d finds by name only (qemu-img's bdrv_snapshot_find).
        if not only or "lookup" in only:
            for oracle, version in oracles:
                b = os.path.join(work, "look-%s-q.qcow2" % version)
                a = os.path.join(work, "look-%s-i.qcow2" % version)
                fixture(["QIMG", "create", "-q", "-f", "qcow2", b, "4M"])
                fixture(["QIO", "-c", "write -P 0x41 0 64k", b])
                for n in ("2", "x", "2"):
                    fixture(["QIMG", "snapshot", "-c", n, b])
                    fixture(["QIO", "-c", "write -P 0x42 0 64k", b])
                shutil.copy(b, a)
                for st in (["-a", "2"], ["-a", "1"], ["-d", "1"], ["-d", "2"], ["-a", "x"], ["-d", "2"], ["-l"],
                           ["-d", "x"], ["-a", "x"], ["-l"]):
                    pair("lookup", st, a, b, oracle, version)
                    same_bytes("lookup %s after %s" % (version, " ".join(st)), a, b)
        # Long names (qemu keeps 255 bytes), spaces and UTF-8.
        if not only or "names" in only:
            for oracle, version in oracles:
                b = os.path.join(work, "names-%s-q.qcow2" % version)
                a = os.path.join(work, "names-%s-i.qcow2" % version)
                fixture(["QIMG", "create", "-q", "-f", "qcow2", b, "4M"])
                shutil.copy(b, a)
                long_name = "n" * 300
                for st in (["-c", long_name], ["-c", "with space"], ["-c", "caf\u00e9-\u00fcber-\u65e5\u672c"],
                           ["-c", "x" * 255]):
                    pair("names", st, a, b, oracle, version)
                    same_bytes("names %s after -c %s" % (version, st[1][:20]), a, b)
                pair("names", ["-l"], b, b, oracle, version)
                for st in (["-d", long_name], ["-d", "n" * 255], ["-a", "n" * 300], ["-d", "with space"]):
                    pair("names", st, a, b, oracle, version)
                    same_bytes("names %s after %s %s" % (version, st[0], st[1][:20]), a, b)
        # 100 snapshots made one by one (10.0 profile), then 1000 in a crafted table.
        if not only or "many" in only:
            b = os.path.join(work, "many-q.qcow2")
            a = os.path.join(work, "many-i.qcow2")
            fixture(["QIMG", "create", "-q", "-f", "qcow2", b, "16M"])
            fixture(["QIO", "-c", "write -P 0x51 0 1M", b])
            shutil.copy(b, a)
            for i in range(100):
                r1 = run([qemu_named, "snapshot", "-c", "s%d" % i, a])
                r2 = run([q10, "snapshot", "-c", "s%d" % i, b])
                if r1 != r2:
                    ok(False, "many: -c s%d" % i, "%r\n%r" % (r1, r2))
            same_bytes("100 snapshots", a, b)
            for oracle, version in oracles:
                pair("100 snapshots", ["-l"], b, b, oracle, version)
            for st in (["-d", "s50"], ["-a", "s10"], ["-c", "s100"], ["-d", "s0"]):
                pair("100 snapshots", st, a, b, oracles[1][0], oracles[1][1])
                same_bytes("100 snapshots after %s" % " ".join(st), a, b)
            for count in (1000,):
                b = os.path.join(work, "k%d-q.qcow2" % count)
                a = os.path.join(work, "k%d-i.qcow2" % count)
                fixture(["QIMG", "create", "-q", "-f", "qcow2", b, "64M"])
                craft_many(b, count)
                # qemu's check calls entries without a disk size "incomplete"; nothing else may show.
                rc, out, err = run([q10, "check", b])
                bad = [ln for ln in err.splitlines() if ln and "is incomplete" not in ln]
                ok(rc in (0, 2) and not bad, "crafted %d: qemu-img check" % count, out + err)
                shutil.copy(b, a)
                for oracle, version in oracles:
                    pair("%d snapshots" % count, ["-l"], b, b, oracle, version)
                for st in (["-c", "new"], ["-d", "snap-0500"], ["-a", "999"], ["-d", "new"]):
                    pair("%d snapshots" % count, st, a, b, oracles[1][0], oracles[1][1])
                    same_bytes("%d snapshots after %s" % (count, " ".join(st)), a, b)
        # New IDs from odd ones: qemu takes strtoul of each (spaces, signs, junk, overflow).
        if not only or "ids" in only:
            for ids in (["abc", " 7", "3x"], ["-1"], ["18446744073709551615"], ["99999999999999999999999"],
                        ["+12", "\t5"]):
                b = os.path.join(work, "ids-q.qcow2")
                a = os.path.join(work, "ids-i.qcow2")
                fixture(["QIMG", "create", "-q", "-f", "qcow2", b, "4M"])
                craft_many(b, len(ids), ids=ids)
                shutil.copy(b, a)
                pair("ids %r" % ids, ["-c", "new"], a, b, oracles[1][0], oracles[1][1])
                same_bytes("ids %r after -c" % ids, a, b)
        # 4. Refusals and usage errors, and the formats without internal snapshots.
        if not only or "errors" in only:
            img = os.path.join(work, "err.qcow2")
            fixture(["QIMG", "create", "-q", "-f", "qcow2", img, "4M"])
            for fmt in ("raw", "vmdk", "vpc", "vhdx"):
                p = os.path.join(work, "other." + fmt)
                fixture(["QIMG", "create", "-q", "-f", fmt, p, "4M"])
                # instar never probes raw unless told to (--unsafe-quirks: qemu-img's fallback).
                for st in (["-l"], ["-c", "s"], ["-a", "s"], ["-d", "s"]):
                    compare(fmt, st + [p], instar_extra=["--unsafe-quirks"] if fmt == "raw" else ())
            # Persistent bitmaps: qemu's block layer refuses -a before the driver runs (qemu also
            # stores the bitmaps anew on closing; instar leaves the image untouched: messages only).
            bm = os.path.join(work, "bitmaps.qcow2")
            fixture(["QIMG", "create", "-q", "-f", "qcow2", bm, "4M"])
            fixture(["QIMG", "bitmap", "--add", bm, "b0"])
            fixture(["QIMG", "snapshot", "-c", "s1", bm])
            compare("bitmaps", ["-a", "s1", bm])
            compare("bitmaps", ["-a", "nope", bm])
            # Encrypted (LUKS, and the old AES method): qemu wants the key to open (metadata is not
            # encrypted: instar needs no key material in the guest).
            for enc in ("luks", "aes"):
                b = os.path.join(work, "%s-q.qcow2" % enc)
                a = os.path.join(work, "%s-i.qcow2" % enc)
                fixture(["QIMG", "create", "-q", "-f", "qcow2", "--object", "secret,id=sec0,data=abc", "-o",
                         "encrypt.format=%s,encrypt.key-secret=sec0%s" % (enc, ",encrypt.iter-time=10" if enc == "luks" else ""),
                         b, "4M"])
                shutil.copy(b, a)
                compare(enc, ["-l", b])
                compare(enc, ["-c", "x", b])
                secret = ["--object", "secret,id=sec0,data=abc", "--image-opts"]
                for i, st in enumerate((["-c", "s1"], ["-c", "s2"], ["-a", "s1"], ["-d", "s2"])):
                    oracle, version = oracles[i % 2]
                    want = run([oracle, "snapshot"] + secret + st + ["driver=qcow2,file.filename=%s,encrypt.key-secret=sec0" % b])
                    got = run([qemu_named, "--qemu-version", version, "snapshot"] + secret + st +
                              ["driver=qcow2,file.filename=%s,encrypt.key-secret=sec0" % a])
                    want = (want[0], want[1], want[2].replace(oracle, "QEMU-IMG"))
                    got = (got[0], got[1], got[2].replace(qemu_named, "QEMU-IMG"))
                    ok(want == got, "%s %s %s" % (enc, version, " ".join(st)), "%r\n%r" % (want, got))
                    same_bytes("%s %s after %s" % (enc, version, " ".join(st)), a, b)
                compare(enc, secret + ["-l", "driver=qcow2,file.filename=%s,encrypt.key-secret=sec0" % b])
            # Round 37: -a growing an encrypted overlay from inside its last cluster writes encrypted
            # zeros there (the head shared with the snapshot, copied: decrypted, encrypted again), so
            # the key goes to the edit.
            encbase = os.path.join(work, "encbase.qcow2")
            fixture(["QIMG", "create", "-q", "-f", "qcow2", encbase, "4M"])
            fixture(["QIO", "-c", "write -P 0x55 0 4M", encbase])
            for enc in ("luks", "aes"):
                b = os.path.join(work, "%s-ov-q.qcow2" % enc)
                a = os.path.join(work, "%s-ov-i.qcow2" % enc)
                opts = "driver=qcow2,file.filename=%s,encrypt.key-secret=sec0"
                fixture(["QIMG", "create", "-q", "-f", "qcow2", "--object", "secret,id=sec0,data=abc", "-o",
                         "encrypt.format=%s,encrypt.key-secret=sec0%s" % (enc, ",encrypt.iter-time=10" if enc == "luks" else ""),
                         "-b", encbase, "-F", "qcow2", b, "4M"])
                fixture(["QIO", "--object", "secret,id=sec0,data=abc", "--image-opts", opts % b,
                         "-c", "write -P 3 1M 64k"])
                fixture(["QIMG", "snapshot", "--object", "secret,id=sec0,data=abc", "-c", "s1", "--image-opts",
                         opts % b])
                fixture(["QIMG", "resize", "-q", "--object", "secret,id=sec0,data=abc", "--shrink", "--image-opts",
                         opts % b, "1049088"])
                shutil.copy(b, a)
                oracle, version = oracles[1]
                secret = ["--object", "secret,id=sec0,data=abc", "--image-opts"]
                want = run([oracle, "snapshot"] + secret + ["-a", "s1", opts % b])
                got = run([qemu_named, "--qemu-version", version, "snapshot"] + secret + ["-a", "s1", opts % a])
                want = (want[0], want[1], want[2].replace(oracle, "QEMU-IMG"))
                got = (got[0], got[1], got[2].replace(qemu_named, "QEMU-IMG"))
                ok(want == got, "%s overlay %s -a grown" % (enc, version), "%r\n%r" % (want, got))
                same_bytes("%s overlay %s after -a grown" % (enc, version), a, b)
            compare("raw -f", ["-f", "raw", "-c", "z", img], oracles[1:])
            compare("raw -f", ["-f", "qcow2", "-l", img], oracles[1:])
            for args in (["-a", "nope", img], ["-d", "nope", img], ["-d", "1", img], ["-l", "-c", "x", img],
                         ["-c", "a", "-c", "b", img], [img], ["-l"], ["-c"], ["-x", img], ["-l", img, "extra"],
                         ["-U", "-c", "x", img], ["-U", "-l", img], ["-q", "-l", img], ["-l", "nonexistent.qcow2"],
                         ["-f", "qcow2", "-l", img], ["--list", img], ["--object", "secret,id=s0,data=x", "-l", img],
                         ["--image-opts", "-l", "driver=qcow2,file.filename=" + img],
                         ["--image-opts", "-f", "qcow2", "-l", "driver=qcow2,file.filename=" + img],
                         ["-l", 'json:{"driver":"qcow2","file":{"driver":"file","filename":"%s"}}' % img]):
                compare("usage", args)
        # 5. Crash consistency: the host killed at every write.
        if not only or "crash" in only:
            crash(work, qemu_named, q10, qio, run, fixture, ok)
    finally:
        if FAILED == 0:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("work directory kept: %s" % work)
    print("%d passed, %d failed" % (PASSED, FAILED))
    return 1 if FAILED else 0


def crash(work, instar, q10, qio, run, fixture, ok):
    def setup(path, with_snapshot, opts=()):
        fixture(["QIMG", "create", "-q", "-f", "qcow2"] + list(opts) + [path, "8M"])
        fixture(["QIO", "-c", "write -P 0x61 0 320k", path])
        if with_snapshot:
            fixture(["QIMG", "snapshot", "-c", "s0", path])
            fixture(["QIO", "-c", "write -P 0x62 64k 128k", path])

    def names(path):
        rc, out, err = run([q10, "snapshot", "-l", path])
        return [line.split()[1] for line in out.splitlines()[2:]]

    def same_content(x, y):
        return run([q10, "compare", "-q", x, y])[0] == 0

    # 512-byte clusters: a refcount block covers 128 KiB, so the new clusters need new blocks.
    small = ["-o", "cluster_size=512"]
    cases = [("create-first", False, ["-c", "s1"], ()),
             ("delete", True, ["-d", "s0"], ()), ("apply", True, ["-a", "s0"], ()),
             ("create-512", True, ["-c", "s1"], small), ("delete-512", True, ["-d", "s0"], small),
             ("apply-resized", True, ["-a", "s0"], ())]
    for label, with_snapshot, args, opts in cases:
        base = os.path.join(work, "crash-%s.qcow2" % label)
        setup(base, with_snapshot, opts)
        mid = None
        if label == "apply-resized":
            # The disk grown past the snapshot's 8 MiB, data written there: -a truncates it back
            # first. A kill after the truncate leaves the old active layer at 8 MiB (the snapshot
            # whole, -a can run again): `mid`, qemu-img's own truncate of the image.
            fixture(["QIMG", "resize", "-q", base, "64M"])
            fixture(["QIO", "-c", "write -P 0x63 40M 1M", base])
            mid = os.path.join(work, "crash-%s-mid.qcow2" % label)
            shutil.copy(base, mid)
            fixture(["QIMG", "resize", "-q", "--shrink", mid, "8M"])
        done = os.path.join(work, "crash-%s-done.qcow2" % label)
        shutil.copy(base, done)
        rc, out, err = run([instar, "snapshot"] + args + [done])
        ok(rc == 0, "crash %s: uninterrupted run" % label, err)
        old_names, new_names = names(base), names(done)
        points = 0
        for n in range(1, 200):
            k = os.path.join(work, "crash-%s-k.qcow2" % label)
            shutil.copy(base, k)
            e = dict(os.environ, INSTAR_TEST_KILL_AT_WRITE=str(n))
            p = subprocess.run([instar, "snapshot"] + args + [k], capture_output=True, text=True, env=e)
            if p.returncode == 0:
                ok(masked(k) == masked(done) or names(k) == new_names, "crash %s: the run past the last write" % label)
                break
            points += 1
            # The kill hook ends the host with _exit (137); under the sandbox's seccomp filter that
            # arrives as SIGSYS (-31): either way the process ended at once.
            ok(p.returncode in (137, -31, 159), "crash %s@%d: killed" % (label, n), "rc %d %s" % (p.returncode, p.stderr))
            rc, out, err = run([q10, "check", k])
            errors = [line for line in err.splitlines() if line.startswith("ERROR")]
            accepted = rc in (0, 3) or (rc == 2 and errors and all("OFLAG_COPIED" in line for line in errors))
            ok(accepted, "crash %s@%d: qemu-img check" % (label, n), "rc %d\n%s%s" % (rc, out, err))
            listed = names(k)
            ok(listed in (old_names, new_names), "crash %s@%d: snapshot list" % (label, n), repr(listed))
            ok(same_content(k, base) or same_content(k, done) or (mid is not None and same_content(k, mid)),
               "crash %s@%d: content" % (label, n))
            if rc == 2:
                rc2, out2, err2 = run([q10, "check", "-r", "all", k])
                ok(rc2 == 0, "crash %s@%d: check -r all repairs" % (label, n), out2 + err2)
        ok(3 <= points < 199, "crash %s: killed at %d writes" % (label, points))
        print("crash %s: killed at each of %d writes" % (label, points))


if __name__ == "__main__":
    sys.exit(main())
