#!/usr/bin/env python3
"""Differential test of `instar rebase` against qemu-img 7.2 and 10.0.

A fixture directory is made once with qemu-img and qemu-io: qcow2 backing files of different cluster
sizes and contents (one shorter than the overlay), overlays of 16k, 64k and 512-byte clusters and a v2
(compat=0.10) one, a three-level chain, a raw backing file, a vmdk overlay, an overlay with persistent
bitmaps and a raw image. Each case
runs on two fresh copies of the directory: qemu-img rebase on one, instar rebase (through a symlink
named qemu-img, so messages carry the same program name) on the other, under the matching profile.
Checked: stdout, stderr and exit status identical; then, on the image rebased,
  - unsafe (-u) cases: the image byte-identical to qemu-img's;
  - safe cases: `qemu-img check` clean; the image's own allocation (map, depth 0) the same as
    qemu-img's under both profiles (zero clusters where the old backing file had ended); every bit
    of every persistent bitmap the same as qemu-img's (7.2 writes differing sectors, 10.0 whole
    clusters: a 512-byte bitmap tells them apart); `qemu-img compare` of
    instar's result against qemu-img's result and against the content before (each read through its
    new chain), and the backing file name and format in `qemu-img info --output=json` the same as
    qemu-img's.

Usage: test_rebase_oracle.py INSTAR QEMU72 QEMU10 QEMU_IO
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from oracle_retry import run_normalised  # noqa: E402
from differential_support import start_with_oracles  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bitmap"))
from test_bitmap_oracle import read_bitmaps  # noqa: E402

LONG300 = "d/" + "n" * 298
LONG600 = "n" * 600
LONG1024 = "n" * 1024

FIXTURES = [
    ["QIMG", "create", "-q", "-f", "qcow2", "b1.qcow2", "8M"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x11 0 3M", "-c", "write -P 0x22 5M 1M", "-c", "write -z 6M 64k",
     "b1.qcow2"],
    ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "b2.qcow2", "8M"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x33 2M 100k", "-c", "write -P 0x22 5M 4k",
     "b2.qcow2"],
    ["QIMG", "create", "-q", "-f", "qcow2", "bshort.qcow2", "3M"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x11 0 2M", "bshort.qcow2"],
    ["QIMG", "create", "-q", "-f", "raw", "b.raw", "8M"],
    ["QIO", "-f", "raw", "-c", "write -P 0x11 1M 1M", "-c", "write -P 0x66 7M 1M", "b.raw"],
    # Overlays over b1: 16k clusters, 64k, 512 bytes, v2; data at a cluster boundary and a sector.
    ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=16k", "-b", "b1.qcow2", "-F", "qcow2", "ov.qcow2"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x44 512k 64k", "-c", "write -P 0x55 7M 512", "ov.qcow2"],
    ["QIMG", "create", "-q", "-f", "qcow2", "-b", "b2.qcow2", "-F", "qcow2", "ov64.qcow2"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x44 60k 8k", "-c", "write -z 4M 64k", "ov64.qcow2"],
    ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "-b", "b1.qcow2", "-F", "qcow2",
     "ov512.qcow2"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x77 1M 1536", "ov512.qcow2"],
    ["QIMG", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "b1.qcow2", "-F", "qcow2", "ovv2.qcow2"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x12 2M 64k", "ovv2.qcow2"],
    # A chain: top over mid over b1 (rebasing top onto b1 skips mid's unchanged clusters).
    ["QIMG", "create", "-q", "-f", "qcow2", "-b", "b1.qcow2", "-F", "qcow2", "mid.qcow2"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x88 1M 128k", "mid.qcow2"],
    ["QIMG", "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x99 1088k 4k", "top.qcow2"],
    # An overlay larger than its backing file (reads past b-short's end are zeros).
    ["QIMG", "create", "-q", "-f", "qcow2", "-b", "bshort.qcow2", "-F", "qcow2", "ovlong.qcow2", "8M"],
    ["QIMG", "create", "-q", "-f", "vmdk", "vb.vmdk", "8M"],
    ["QIMG", "create", "-q", "-f", "vmdk", "-b", "vb.vmdk", "-F", "vmdk", "vo.vmdk"],
    ["QIMG", "create", "-q", "-f", "raw", "r.img", "1M"],
    # Overlays with extended L2 entries, an internal snapshot, an external data file.
    ["QIMG", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "-b", "b1.qcow2", "-F", "qcow2", "ovx.qcow2"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x46 100k 5k", "-c", "write -z 1M 3k", "-c", "write -P 0x47 6M 70k",
     "ovx.qcow2"],
    ["QIMG", "create", "-q", "-f", "qcow2", "-b", "b1.qcow2", "-F", "qcow2", "ovs.qcow2"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x41 100k 200k", "ovs.qcow2"],
    ["QIMG", "snapshot", "-c", "snap1", "ovs.qcow2"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x42 6M 64k", "ovs.qcow2"],
    ["QIMG", "create", "-q", "-f", "qcow2", "-o", "data_file=ovd.raw", "-b", "b1.qcow2", "-F", "qcow2", "ovd.qcow2"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x43 1M 64k", "ovd.qcow2"],
    # An overlay with persistent bitmaps (round 33): the copies record themselves in the enabled
    # ones (a 512-byte one shows 7.2's sector writes against 10.0's clusters); the disabled one
    # keeps its bits.
    ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "-b", "b1.qcow2", "-F", "qcow2", "ovb.qcow2"],
    ["QIMG", "bitmap", "--add", "ovb.qcow2", "t0"],
    ["QIMG", "bitmap", "--add", "-g", "512", "ovb.qcow2", "t512"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x45 2M 8k", "ovb.qcow2"],
    ["QIMG", "bitmap", "--add", "--disable", "ovb.qcow2", "t1"],
    # An overlay with the corrupt bit (round 36): qemu's read-write open refuses it in both modes.
    ["QIMG", "create", "-q", "-f", "qcow2", "-b", "b1.qcow2", "-F", "qcow2", "ovc.qcow2"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x48 1M 64k", "ovc.qcow2"],
    [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats", "qcow2_header.py"),
     "ovc.qcow2", "2"],
    # An image without a backing file, to be given one (safe: what the new one adds is zeroed).
    ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "solo.qcow2", "8M"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x13 1M 64k", "solo.qcow2"],
]

# (args, image, mode): mode "bytes" = byte-identical image, "content" = check + compare, "msg" = only
# the output (nothing changed or a failure).
CASES = [
    # unsafe
    (["-u", "-b", "b2.qcow2", "-F", "qcow2", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["-u", "-b", "", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["-u", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["-u", "-b", "", "-F", "raw", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["-u", "-b", LONG300, "-F", "qcow2", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["-u", "-b", LONG300, "-F", "qcow2", "ov512.qcow2"], "ov512.qcow2", "bytes"),
    (["-u", "-b", LONG600, "-F", "qcow2", "ov512.qcow2"], "ov512.qcow2", "bytes"),
    (["-u", "-b", LONG1024, "-F", "qcow2", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["-u", "-b", "b2.qcow2", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["-u", "-b", "b2.qcow2", "-F", "bogus", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["-u", "-b", "b.raw", "-F", "raw", "ovv2.qcow2"], "ovv2.qcow2", "bytes"),
    (["-u", "-b", "b2.qcow2", "-F", "qcow2", "ov64.qcow2"], "ov64.qcow2", "bytes"),
    (["-u", "-b", LONG300, "-F", "qcow2", "ovx.qcow2"], "ovx.qcow2", "bytes"),
    (["-u", "-b", "b2.qcow2", "-F", "qcow2", "ovs.qcow2"], "ovs.qcow2", "bytes"),
    # Safe mode into an overlay with an internal snapshot (round 31): what the snapshot shares is
    # copied on write.
    (["-b", "b2.qcow2", "-F", "qcow2", "ovs.qcow2"], "ovs.qcow2", "content"),
    # Safe mode into an overlay with extended L2 entries (round 35): partial subclusters completed.
    (["-b", "b2.qcow2", "-F", "qcow2", "ovx.qcow2"], "ovx.qcow2", "content"),
    (["-b", "", "ovx.qcow2"], "ovx.qcow2", "content"),
    # Safe mode into an overlay with an external data file (round 31, guest ABI 9): the data file is
    # written through the image's writer, as commit's base's.
    (["-b", "b2.qcow2", "-F", "qcow2", "ovd.qcow2"], "ovd.qcow2", "content"),
    (["-u", "-b", "b2.qcow2", "-F", "qcow2", "ovd.qcow2"], "ovd.qcow2", "bytes"),
    (["-u", "-b", "vb2.vmdk", "-F", "vmdk", "vo.vmdk"], "vo.vmdk", "bytes"),
    (["-u", "-b", "", "vo.vmdk"], "vo.vmdk", "bytes"),
    (["-u", "-f", "raw", "-b", "x", "-F", "raw", "r.img"], "r.img", "bytes"),
    (["-u", "-f", "raw", "-b", "x", "-F", "raw", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["-p", "-u", "-b", "b2.qcow2", "-F", "qcow2", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["-p", "-u", "-b", "b2.qcow2", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["-q", "-p", "-u", "-b", "b2.qcow2", "-F", "qcow2", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["-c", "-u", "-b", "b2.qcow2", "-F", "qcow2", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["--compress", "-u", "-f", "raw", "-b", "x", "-F", "raw", "r.img"], "r.img", "bytes"),
    (["-u", "-t", "bogus", "-b", "b2.qcow2", "-F", "qcow2", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["-u", "-T", "bogus", "-b", "b2.qcow2", "-F", "qcow2", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["-u", "-t", "none", "-T", "writeback", "-U", "-b", "b2.qcow2", "-F", "qcow2", "ov.qcow2"], "ov.qcow2", "bytes"),
    (["-u", "-b", "x", "-F", "qcow2", "missing.qcow2"], "ov.qcow2", "msg"),
    (["-u", "--image-opts", "-f", "qcow2", "ov.qcow2"], "ov.qcow2", "msg"),
    (["-u", "--image-opts", "-b", "b2.qcow2", "-F", "qcow2", "driver=qcow2,file.filename=ov.qcow2"], "ov.qcow2",
     "bytes"),
    (["-u", "-b", "b2.qcow2", "-F", "qcow2", 'json:{"driver":"qcow2","file":{"driver":"file","filename":"ov.qcow2"}}'],
     "ov.qcow2", "bytes"),
    (["-b", "b2.qcow2", "-F", "qcow2", "--image-opts", "driver=qcow2,file.filename=ov64.qcow2"], "ov64.qcow2",
     "content"),
    # usage
    ([], "ov.qcow2", "msg"),
    (["ov.qcow2"], "ov.qcow2", "msg"),
    (["-u", "ov.qcow2", "ov64.qcow2"], "ov.qcow2", "msg"),
    (["-b"], "ov.qcow2", "msg"),
    (["-z", "ov.qcow2"], "ov.qcow2", "msg"),
    (["--bogus", "ov.qcow2"], "ov.qcow2", "msg"),
    (["--backing-unsafe", "ov.qcow2"], "ov.qcow2", "msg"),
    # safe
    (["-b", "b2.qcow2", "-F", "qcow2", "ov.qcow2"], "ov.qcow2", "content"),
    (["-b", "", "ov.qcow2"], "ov.qcow2", "content"),
    (["-b", "bshort.qcow2", "-F", "qcow2", "ov.qcow2"], "ov.qcow2", "content"),
    (["-b", "b1.qcow2", "-F", "qcow2", "ov64.qcow2"], "ov64.qcow2", "content"),
    (["-b", "b2.qcow2", "-F", "qcow2", "ov512.qcow2"], "ov512.qcow2", "content"),
    (["-b", "b.raw", "-F", "raw", "ovv2.qcow2"], "ovv2.qcow2", "content"),
    (["-b", "b1.qcow2", "-F", "qcow2", "top.qcow2"], "top.qcow2", "content"),
    (["-b", "b2.qcow2", "-F", "qcow2", "ovlong.qcow2"], "ovlong.qcow2", "content"),
    (["-b", "", "ovlong.qcow2"], "ovlong.qcow2", "content"),
    (["-q", "-b", "b2.qcow2", "-F", "qcow2", "-T", "none", "ov64.qcow2"], "ov64.qcow2", "content"),
    (["-b", "b2.qcow2", "ov.qcow2"], "ov.qcow2", "content"),
    (["-p", "-b", "b2.qcow2", "-F", "qcow2", "ov.qcow2"], "ov.qcow2", "content"),
    (["-p", "-b", "b2.qcow2", "-F", "qcow2", "ovlong.qcow2"], "ovlong.qcow2", "content"),
    (["-p", "-b", "bshort.qcow2", "-F", "qcow2", "ov64.qcow2"], "ov64.qcow2", "content"),
    (["-p", "-b", "", "ov512.qcow2"], "ov512.qcow2", "content"),
    (["-p", "-b", "b2.qcow2", "ov.qcow2"], "ov.qcow2", "content"),
    (["-c", "-b", "", "ov64.qcow2"], "ov64.qcow2", "content"),
    (["-b", "b2.qcow2", "-F", "qcow2", "solo.qcow2"], "solo.qcow2", "content"),
    (["-b", "b2.qcow2", "-F", "qcow2", "ovb.qcow2"], "ovb.qcow2", "content"),
    (["-b", "", "ovb.qcow2"], "ovb.qcow2", "content"),
    (["-u", "-b", "b2.qcow2", "-F", "qcow2", "solo.qcow2"], "solo.qcow2", "bytes"),
    (["-b", "nb.qcow2", "-F", "qcow2", "ov.qcow2"], "ov.qcow2", "msg"),
    (["-b", "b2.qcow2", "-F", "qcow2", "ovc.qcow2"], "ovc.qcow2", "bytes"),
    (["-b", "", "ovc.qcow2"], "ovc.qcow2", "bytes"),
    (["-u", "-b", "b2.qcow2", "-F", "qcow2", "ovc.qcow2"], "ovc.qcow2", "bytes"),
    (["-b", "b2.qcow2", "-F", "vmdk", "ov.qcow2"], "ov.qcow2", "msg"),
    (["-b", "b2.qcow2", "-F", "qcow2", "vo.vmdk"], "vo.vmdk", "msg"),
]


def run(cmd, cwd, env=None):
    return run_normalised(cmd, cwd, env)


def info_backing(qimg, path, cwd):
    p = subprocess.run([qimg, "info", "-U", "--output=json", path], cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        return ("info failed", p.stderr)
    j = json.loads(p.stdout)
    return (j.get("backing-filename"), j.get("backing-filename-format"))


def alloc_map(qimg, path, cwd):
    """The image's own allocation (depth 0) as qemu-img map reports it, host offsets left out."""
    p = subprocess.run([qimg, "map", "-U", "--output=json", path], cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        return ("map failed", p.stderr)
    return [(e["start"], e["length"], e["data"], e["zero"]) for e in json.loads(p.stdout) if e["depth"] == 0]


def main():
    args, status = start_with_oracles(__doc__, 4)
    if args is None:
        return status
    instar, q72, q10, qio = args
    work = tempfile.mkdtemp(prefix="instar-rebase-")
    passed, failed = 0, 0
    try:
        fxd = os.path.join(work, "fixtures")
        os.mkdir(fxd)
        os.mkdir(os.path.join(fxd, "d"))
        env = dict(os.environ, TZ="UTC", LC_ALL="C")
        for c in FIXTURES:
            c = [q72 if a == "QIMG" else qio if a == "QIO" else a for a in c]
            rc, out, err = run(c, fxd, env)
            if rc != 0:
                failed += 1
                print("FAIL fixture %s\n%s" % (c, err))
        # The content of every image before, flat.
        for img in ("ov.qcow2", "ov64.qcow2", "ov512.qcow2", "ovv2.qcow2", "top.qcow2", "ovlong.qcow2",
                    "solo.qcow2", "ovs.qcow2", "ovd.qcow2", "ovb.qcow2", "ovx.qcow2"):
            run([q72, "convert", "-O", "raw", img, img + ".before.raw"], fxd, env)
        link_dir = os.path.join(work, "bin")
        os.mkdir(link_dir)
        ours = os.path.join(link_dir, "qemu-img")
        os.symlink(os.path.abspath(instar), ours)
        for profile, qimg in (("7.2", q72), ("10.0", q10)):
            ienv = dict(env, INSTAR_QEMU_VERSION=profile)
            for args, image, mode in CASES:
                dq, di = os.path.join(work, "q"), os.path.join(work, "i")
                for d in (dq, di):
                    shutil.rmtree(d, ignore_errors=True)
                    shutil.copytree(fxd, d)
                rq = run([qimg, "rebase"] + args, dq, env)
                ri = run([ours, "rebase"] + args, di, ienv)
                label = "[%s] rebase %s" % (profile, " ".join(a if len(a) < 40 else a[:12] + "..." for a in args))
                problems = []
                if rq != ri:
                    problems.append("output\n  qemu-img: %r\n  instar:   %r" % (rq, ri))
                if mode == "bytes":
                    with open(os.path.join(dq, image), "rb") as a, open(os.path.join(di, image), "rb") as b:
                        if a.read() != b.read():
                            problems.append("image bytes differ from qemu-img's")
                elif mode == "content":
                    c = subprocess.run([q72, "check", image], cwd=di, capture_output=True, text=True)
                    if c.returncode != 0:
                        problems.append("check: %s" % (c.stdout + c.stderr))
                    # qemu's result flat first (each image read from its own directory: a data
                    # file's relative name is found from there), then compared from instar's.
                    flat = os.path.join(work, "qemu-result.raw")
                    subprocess.run([q72, "convert", "-O", "raw", image, flat], cwd=dq, capture_output=True)
                    c = subprocess.run([q72, "compare", "-F", "raw", image, flat], cwd=di, capture_output=True,
                                       text=True)
                    if c.returncode != 0:
                        problems.append("compare with qemu-img's result: %s" % (c.stdout + c.stderr))
                    c = subprocess.run([q72, "compare", image + ".before.raw", image], cwd=di,
                                       capture_output=True, text=True)
                    if c.returncode != 0:
                        problems.append("compare with the content before: %s" % (c.stdout + c.stderr))
                    # The same allocation, and zero clusters (not data) where the old backing
                    # file had ended (10.0 writes whole clusters, 7.2 differing sectors).
                    mq, mi = alloc_map(q10, image, dq), alloc_map(q10, image, di)
                    if mq != mi:
                        problems.append("map %r, qemu-img's %r" % (mi, mq))
                    if image.endswith(".qcow2"):
                        bq, bi = read_bitmaps(os.path.join(dq, image)), read_bitmaps(os.path.join(di, image))
                        if bq != bi:
                            problems.append("bitmaps %r, qemu-img's %r" % (bi, bq))
                    bq, bi = info_backing(q72, image, dq), info_backing(q72, image, di)
                    if bq != bi:
                        problems.append("backing %r, qemu-img's %r" % (bi, bq))
                if problems:
                    failed += 1
                    print("FAIL %s: %s" % (label, "; ".join(problems)))
                else:
                    passed += 1
    finally:
        shutil.rmtree(work)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
