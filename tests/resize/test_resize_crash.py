#!/usr/bin/env python3
"""Crash consistency of `instar resize` on qcow2 (docs/edit.md): the host is killed at the N-th
file-changing hypercall (INSTAR_TEST_KILL_AT_WRITE=N) for every N until the command completes
(or, past MAX_POINTS writes, every SPREAD-th). After each kill `qemu-img check` must accept
the image (exit 0, or 3 for leaked clusters) and its content must be the old image's or the new
one's (qemu-img compare against the untouched copy or against qemu-img's own resize of it).
With persistent bitmaps, each must also be the old image's or the new one's, bit for bit and
consistent (qemu-img check opens the image, loading them: a table sized for another disk fails).
Also hostile images: an L1 table crafted to lie past the file's end must be refused with the
image left byte-identical.

Usage: test_resize_crash.py INSTAR QEMU72 QEMU_IO
"""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from differential_support import start_with_oracles  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bitmap"))
from test_bitmap_oracle import read_bitmaps  # noqa: E402

MAX_POINTS = 40
# Past MAX_POINTS, kill points are this many writes apart (a spread, as docs/edit.md allows).
SPREAD = 23

SCENARIOS = [
    # (label, setup commands, resize args)
    ("grow with L1 growth", [["QIMG", "create", "-q", "-f", "qcow2", "img", "64M"],
                             ["QIO", "-c", "write -P 1 0 2M", "-c", "write -P 2 60M 1M", "img"]],
     ["img", "2T"]),
    ("grow 512-byte clusters", [["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "img", "1M"],
                                ["QIO", "-c", "write -P 5 100k 300k", "img"]],
     ["img", "2G"]),
    ("shrink with L1 shrink", [["QIMG", "create", "-q", "-f", "qcow2", "img", "2G"],
                               ["QIO", "-c", "write -P 1 0 1M", "-c", "write -P 2 1500M 1M",
                                "-c", "write -P 3 1900M 1M", "img"]],
     ["--shrink", "img", "100M"]),
    ("shrink with a snapshot", [["QIMG", "create", "-q", "-f", "qcow2", "img", "2G"],
                                ["QIO", "-c", "write -P 1 0 1M", "-c", "write -P 2 1500M 1M", "img"],
                                ["QIMG", "snapshot", "-c", "s1", "img"],
                                ["QIO", "-c", "write -P 3 1600M 1M", "img"]],
     ["--shrink", "img", "1G"]),
    ("shrink inside a table", [["QIMG", "create", "-q", "-f", "qcow2", "img", "64M"],
                               ["QIO", "-c", "write -P 1 0 3M", "-c", "write -c -P 3 40M 128k",
                                "-c", "write -P 4 63M 1M", "img"]],
     ["--shrink", "img", "20M"]),
    ("grow with metadata preallocation", [["QIMG", "create", "-q", "-f", "qcow2", "img", "64M"],
                                          ["QIO", "-c", "write -P 1 0 2M", "img"]],
     ["--preallocation=metadata", "img", "1100M"]),
    ("metadata, 512-byte clusters, snapshot", [["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512",
                                                 "img", "1M"],
                                                ["QIO", "-c", "write -P 1 0 100k", "img"],
                                                ["QIMG", "snapshot", "-c", "s1", "img"]],
     ["--preallocation=metadata", "img", "12M"]),
    ("grow with falloc preallocation", [["QIMG", "create", "-q", "-f", "qcow2", "img", "64M"],
                                        ["QIO", "-c", "write -P 1 0 2M", "img"]],
     ["--preallocation=falloc", "img", "700M"]),
    ("overlay grow (zero clusters)", [["QIMG", "create", "-q", "-f", "qcow2", "base", "4G"],
                                      ["QIO", "-c", "write -P 7 0 4M", "base"],
                                      ["QIMG", "create", "-q", "-f", "qcow2", "-b", "base", "-F", "qcow2", "img",
                                       "1G"]],
     ["img", "3G"]),
    ("falloc over an allocated head cluster", [["QIMG", "create", "-q", "-f", "qcow2", "img", "100000256"],
                                               ["QIO", "-c", "write -P 5 99999744 512", "img"]],
     ["--preallocation=falloc", "img", "200M"]),
    # Extended L2 entries (round 35): an overlay grown from inside a cluster whose subcluster there
    # reads as zeros (zero subclusters set, then that subcluster zeroed whole and allocated), and
    # falloc moving a head cluster the file ends inside.
    ("extl2 overlay grow over a zero subcluster", [["QIMG", "create", "-q", "-f", "qcow2", "base", "4M"],
                                                  ["QIO", "-c", "write -P 7 0 4M", "base"],
                                                  ["QIMG", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "-b",
                                                   "base", "-F", "qcow2", "img", "1057280"],
                                                  ["QIO", "-c", "write -P 5 1024k 8k", "-c", "write -z 1056768 512",
                                                   "img"]],
     ["img", "3M"]),
    ("extl2 falloc over an allocated head cluster", [["QIMG", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on",
                                                      "img", "1056k"],
                                                     ["QIO", "-c", "write -P 5 1024k 3k", "-c", "write -z 1030k 2k",
                                                      "img"]],
     ["--preallocation=falloc", "img", "3M"]),
    # An overlay grown from inside a cluster it does not map (round 37): a first run asks for the
    # backing file's bytes of that cluster, a second sandbox reads them into a temporary file, a
    # third allocates the cluster (its head those bytes) before the size switch. Kills land in all
    # three; no temporary file may outlive a kill ($TMPDIR checked after each).
    ("overlay grow, head cluster from the backing file", [["QIMG", "create", "-q", "-f", "qcow2", "base", "4M"],
                                                          ["QIO", "-c", "write -P 7 0 4M", "base"],
                                                          ["QIMG", "create", "-q", "-f", "qcow2", "-b", "base", "-F",
                                                           "qcow2", "img", "1049088"]],
     ["img", "3M"]),
    ("overlay grow, head cluster shared with a snapshot", [["QIMG", "create", "-q", "-f", "qcow2", "base", "4M"],
                                                          ["QIO", "-c", "write -P 7 0 4M", "base"],
                                                          ["QIMG", "create", "-q", "-f", "qcow2", "-b", "base", "-F",
                                                           "qcow2", "img", "1049088"],
                                                          ["QIO", "-c", "write -P 9 1M 512", "img"],
                                                          ["QIMG", "snapshot", "-c", "s1", "img"]],
     ["img", "3M"]),
    ("overlay grow, compressed head cluster", [["QIMG", "create", "-q", "-f", "qcow2", "base", "4M"],
                                               ["QIO", "-c", "write -P 7 0 4M", "base"],
                                               ["QIMG", "create", "-q", "-f", "qcow2", "-b", "base", "-F", "qcow2",
                                                "img", "2M"],
                                               ["QIO", "-c", "write -c -P 9 1M 64k", "img"],
                                               ["QIMG", "resize", "-q", "--shrink", "img", "1049088"]],
     ["img", "3M"]),
    ("extl2 overlay grow over an unallocated subcluster", [["QIMG", "create", "-q", "-f", "qcow2", "base", "4M"],
                                                          ["QIO", "-c", "write -P 7 0 4M", "base"],
                                                          ["QIMG", "create", "-q", "-f", "qcow2", "-o",
                                                           "extended_l2=on", "-b", "base", "-F", "qcow2", "img",
                                                           "1049088"]],
     ["img", "1057792"]),
    ("extl2 overlay grow, shared head over the backing file", [["QIMG", "create", "-q", "-f", "qcow2", "base", "4M"],
                                                              ["QIO", "-c", "write -P 7 0 4M", "base"],
                                                              ["QIMG", "create", "-q", "-f", "qcow2", "-o",
                                                               "extended_l2=on", "-b", "base", "-F", "qcow2", "img",
                                                               "1113600"],
                                                              ["QIO", "-c", "write -P 6 1028k 2k", "-c",
                                                               "write -P 8 1086k 1k", "img"],
                                                              ["QIMG", "snapshot", "-c", "s1", "img"]],
     ["img", "3M"]),
    ("overlay with a data file grow, head from the backing file", [["QIMG", "create", "-q", "-f", "qcow2", "base",
                                                                    "4M"],
                                                                   ["QIO", "-c", "write -P 7 0 4M", "base"],
                                                                   ["QIMG", "create", "-q", "-f", "qcow2", "-o",
                                                                    "data_file=df.raw", "-b", "base", "-F", "qcow2",
                                                                    "img", "1049088"]],
     ["img", "3M"]),
    ("overlay metadata, compressed head and an end over the backing file",
     [["QIMG", "create", "-q", "-f", "qcow2", "base", "4M"], ["QIO", "-c", "write -P 7 0 4M", "base"],
      ["QIMG", "create", "-q", "-f", "qcow2", "-b", "base", "-F", "qcow2", "img", "2M"],
      ["QIO", "-c", "write -c -P 9 1M 64k", "img"], ["QIMG", "resize", "-q", "--shrink", "img", "1049088"]],
     ["--preallocation=metadata", "img", "3146240"]),
    ("overlay falloc, head from the backing file", [["QIMG", "create", "-q", "-f", "qcow2", "base", "4M"],
                                                    ["QIO", "-c", "write -P 7 0 4M", "base"],
                                                    ["QIMG", "create", "-q", "-f", "qcow2", "-b", "base", "-F", "qcow2",
                                                     "img", "1049088"]],
     ["--preallocation=falloc", "img", "3M"]),
    ("extl2 overlay grow, compressed head", [["QIMG", "create", "-q", "-f", "qcow2", "base", "4M"],
                                            ["QIO", "-c", "write -P 7 0 4M", "base"],
                                            ["QIMG", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "-b",
                                             "base", "-F", "qcow2", "img", "1051648"],
                                            ["QIO", "-c", "write -c -P 5 1024k 3k", "img"]],
     ["img", "1052160"]),
    # Persistent bitmaps (qcow2_bitmap_carry.h): the size and the bitmaps switch in one header write.
    ("bitmaps, grow (tables grow)", [["QIMG", "create", "-q", "-f", "qcow2", "img", "64M"],
                                     ["QIMG", "bitmap", "--add", "-g", "512", "img", "b512"],
                                     ["QIMG", "bitmap", "--add", "img", "b0"],
                                     ["QIO", "-c", "write -P 1 0 1M", "-c", "write -P 2 63M 1M", "img"]],
     ["img", "1G"]),
    ("bitmaps, shrink (tables shrink)", [["QIMG", "create", "-q", "-f", "qcow2", "img", "1G"],
                                         ["QIMG", "bitmap", "--add", "-g", "512", "img", "b512"],
                                         ["QIO", "-c", "write -P 1 0 1M", "-c", "write -P 2 90M 64k",
                                          "-c", "write -P 3 1000M 1M", "img"]],
     ["--shrink", "img", "100M"]),
    ("bitmaps, shrink (tables kept)", [["QIMG", "create", "-q", "-f", "qcow2", "img", "64M"],
                                       ["QIMG", "bitmap", "--add", "img", "b0"],
                                       ["QIMG", "bitmap", "--add", "-g", "512", "img", "b512"],
                                       ["QIO", "-c", "write -P 1 0 1M", "-c", "write -P 2 33M 512",
                                        "-c", "write -P 3 60M 4M", "img"]],
     ["--shrink", "img", "33M"]),
]


def run(cmd, cwd, env=None):
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def vsize(q, path, cwd):
    return json.loads(run([q, "info", "--output=json", "-U", path], cwd)[1])["virtual-size"]


def header_size(path):
    """The qcow2 header's size field: qemu-img info's virtual-size (checked against it on the old and
    the new image of each scenario), read without a qemu-img process at every kill point."""
    with open(path, "rb") as f:
        f.seek(24)
        return struct.unpack(">Q", f.read(8))[0]


def main():
    args, status = start_with_oracles(__doc__, 3)
    if args is None:
        return status
    instar, q, qio = (os.path.abspath(a) if os.path.exists(a) else a for a in args)
    work = tempfile.mkdtemp(prefix="instar-resize-crash-")
    passed = failed = 0
    try:
        only = os.environ.get("CRASH_ONLY")  # a label substring, to run a few scenarios by hand
        for label, setup, args in SCENARIOS:
            if only and only not in label:
                continue
            tpl = os.path.join(work, "tpl")
            shutil.rmtree(tpl, ignore_errors=True)
            os.mkdir(tpl)
            for c in setup:
                c = [q if a == "QIMG" else qio if a == "QIO" else a for a in c]
                rc, _, err = run(c, tpl)
                if rc != 0:
                    print("SETUP FAIL %s: %s %s" % (label, c, err))
                    return 1
            # The new content: qemu-img's own resize of a copy.
            want = os.path.join(work, "want")
            shutil.rmtree(want, ignore_errors=True)
            shutil.copytree(tpl, want)
            rc, _, err = run([q, "resize"] + args, want)
            if rc != 0:
                print("SETUP FAIL %s: qemu-img resize: %s" % (label, err))
                return 1
            old_size = vsize(q, "img", tpl)
            new_size = vsize(q, "img", want)
            if (header_size(os.path.join(tpl, "img")), header_size(os.path.join(want, "img"))) != (old_size, new_size):
                print("SETUP FAIL %s: header sizes differ from qemu-img info's %d, %d" % (label, old_size, new_size))
                return 1
            # The number of file-changing hypercalls: kill points until the command completes.
            points = []
            n = 1
            total = None
            d = os.path.join(work, "run")
            tmp = os.path.join(work, "tmp") # the runs' $TMPDIR: empty after every kill
            os.makedirs(tmp, exist_ok=True)
            while total is None:
                shutil.rmtree(d, ignore_errors=True)
                shutil.copytree(tpl, d)
                env = dict(os.environ, INSTAR_TEST_KILL_AT_WRITE=str(n), TMPDIR=tmp)
                rc, out, err = run([instar, "resize"] + args, d, env)
                if os.listdir(tmp):
                    failed += 1
                    print("FAIL %s: kill at write %d left %s in $TMPDIR" % (label, n, os.listdir(tmp)))
                    for f in os.listdir(tmp):
                        os.unlink(os.path.join(tmp, f))
                if rc == 0:
                    total = n - 1
                    break
                points.append(n)
                problems = check(q, d, tpl, want, old_size, new_size, bitmaps="bitmaps" in label)
                if problems:
                    failed += 1
                    print("FAIL %s: kill at write %d (rc %d %s): %s" % (label, n, rc, err.strip(), "; ".join(problems)))
                else:
                    passed += 1
                # Dense for the first MAX_POINTS writes, then a spread.
                n += 1 if n < MAX_POINTS else SPREAD
                if n > 100000:
                    print("FAIL %s: more than 100000 writes?" % label)
                    failed += 1
                    break
            # The completed run must be qemu's result.
            problems = check(q, d, tpl, want, old_size, new_size, must_be_new=True, bitmaps="bitmaps" in label)
            if problems:
                failed += 1
                print("FAIL %s: completed run: %s" % (label, "; ".join(problems)))
            else:
                passed += 1
            print("%s: %d kill points of %s writes" % (label, len(points), total))
        passed, failed = hostile(instar, q, work, passed, failed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def check(q, d, tpl, want, old_size, new_size, must_be_new=False, bitmaps=False):
    problems = []
    rc, out, err = run([q, "check", "img"], d)
    if rc not in (0, 3):
        problems.append("qemu-img check rc %d: %s%s" % (rc, out, err))
        return problems
    size = header_size(os.path.join(d, "img"))
    if size == new_size:
        ref = os.path.join(want, "img")
    elif size == old_size and not must_be_new:
        ref = os.path.join(tpl, "img")
    else:
        return ["virtual size %d is neither old %d nor new %d" % (size, old_size, new_size)]
    rc, out, err = run([q, "compare", "-U", ref, "img"], d)
    if rc != 0:
        problems.append("content differs from the %s image: %s%s" % (
            "new" if size == new_size else "old", out, err))
    if bitmaps and read_bitmaps(os.path.join(d, "img")) != read_bitmaps(ref):
        problems.append("bitmaps differ from the %s image's: %s, want %s" % (
            "new" if size == new_size else "old", read_bitmaps(os.path.join(d, "img")), read_bitmaps(ref)))
    return problems


def hostile(instar, q, work, passed, failed):
    """Images whose tables point outside the file: refused, byte-identical afterwards."""
    d = os.path.join(work, "hostile")
    shutil.rmtree(d, ignore_errors=True)
    os.mkdir(d)
    cases = []
    # L1 table offset far past the end of the file, with an l1_size that needs growing.
    run([q, "create", "-q", "-f", "qcow2", "a", "1M"], d)
    with open(os.path.join(d, "a"), "r+b") as f:
        f.seek(40)
        f.write(struct.pack(">Q", 1 << 40))
    cases.append(("L1 past EOF", "a", ["a", "2T"]))
    # L1 size larger than the file can hold.
    run([q, "create", "-q", "-f", "qcow2", "b", "1M"], d)
    with open(os.path.join(d, "b"), "r+b") as f:
        f.seek(36)
        f.write(struct.pack(">I", 0x3fffff))
    cases.append(("L1 size past EOF", "b", ["--shrink", "b", "512k"]))
    # An L2 table pointer past the end, in the range a shrink crops.
    run([q, "create", "-q", "-f", "qcow2", "c", "2G"], d)
    with open(os.path.join(d, "c"), "r+b") as f:
        f.seek(40)
        l1 = struct.unpack(">Q", f.read(8))[0]
        f.seek(l1 + 3 * 8)
        f.write(struct.pack(">Q", (1 << 63) | (1 << 45)))
    cases.append(("L2 past EOF", "c", ["--shrink", "c", "1G"]))
    # A data cluster pointer past the end, in the range a shrink crops.
    run([q, "create", "-q", "-f", "qcow2", "e", "64M"], d)
    run(["qemu-io", "-c", "write -P 1 60M 64k", "e"], d)
    with open(os.path.join(d, "e"), "r+b") as f:
        f.seek(40)
        l1 = struct.unpack(">Q", f.read(8))[0]
        f.seek(l1)
        l2 = struct.unpack(">Q", f.read(8))[0] & 0x00fffffffffffe00
        f.seek(l2 + (60 << 20) // 65536 * 8)
        f.write(struct.pack(">Q", (1 << 63) | (1 << 50)))
    cases.append(("data cluster past EOF", "e", ["--shrink", "e", "1M"]))
    # Refcount table pointing past the end.
    run([q, "create", "-q", "-f", "qcow2", "g", "1M"], d)
    with open(os.path.join(d, "g"), "r+b") as f:
        f.seek(48)
        f.write(struct.pack(">Q", 1 << 44))
    cases.append(("refcount table past EOF", "g", ["g", "2T"]))
    # Persistent bitmaps: a directory past the end, and a table entry with reserved bits set.
    for name, what in (("h", "directory"), ("i", "entry")):
        run([q, "create", "-q", "-f", "qcow2", name, "64M"], d)
        run([q, "bitmap", "--add", name, "b0"], d)
        run(["qemu-io", "-c", "write -P 1 0 64k", name], d)
        with open(os.path.join(d, name), "r+b") as f:
            data = f.read()
            off = struct.unpack(">I", data[100:104])[0]
            while struct.unpack(">I", data[off:off + 4])[0] != 0x23852875:
                off += 8 + ((struct.unpack(">I", data[off + 4:off + 8])[0] + 7) & ~7)
            doff = struct.unpack(">Q", data[off + 24:off + 32])[0]
            if what == "directory":
                f.seek(off + 24)
                f.write(struct.pack(">Q", 1 << 40))
            else:
                table = struct.unpack(">Q", data[doff:doff + 8])[0]
                entry = struct.unpack(">Q", data[table:table + 8])[0]
                f.seek(table)
                f.write(struct.pack(">Q", entry | 0x2))
        cases.append(("bitmap %s" % what, name, [name, "1G"]))
    for label, name, args in cases:
        before = sha(os.path.join(d, name))
        size_before = os.path.getsize(os.path.join(d, name))
        rc, out, err = run([instar, "resize"] + args, d)
        after = sha(os.path.join(d, name))
        if rc == 0 or not err.strip() or before != after or os.path.getsize(os.path.join(d, name)) != size_before:
            failed += 1
            print("FAIL hostile %s: rc %d, image %s: %s%s" % (label, rc, "unchanged" if before == after else "CHANGED",
                                                           out, err))
        else:
            passed += 1
            print("hostile %s: refused: %s" % (label, err.strip()))
    return passed, failed


if __name__ == "__main__":
    sys.exit(main())
