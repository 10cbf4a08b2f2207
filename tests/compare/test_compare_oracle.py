#!/usr/bin/env python3
"""Differential test of `instar compare` against qemu-img 7.2 and 10.0.

Images are made here with qemu-img and qemu-io: one content in every format (raw with holes, qcow2
of several cluster sizes and compressed, vmdk subformats, vpc, vhdx), copies that differ at chosen
offsets (first sector, cluster boundaries, last byte, inside a hole), different sizes with zero and
non-zero tails, and backing chains (an overlay against its flattened raw, a short backing file).
Every case runs through qemu-img and through instar under the matching profile (instar through a
symlink named qemu-img, so messages carry the same program name): stdout, stderr and the exit status
must be identical. Both orders of each pair are run.

Usage: test_compare_oracle.py INSTAR QEMU72 QEMU10 QEMU_IO
"""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from oracle_retry import run_normalised  # noqa: E402
from differential_support import start_with_oracles  # noqa: E402

FIXTURES = []  # [commands] run in order in the fixture directory


def fx(*cmds):
    FIXTURES.extend(list(c) for c in cmds)


def q(*a):
    return ["QIMG"] + list(a)


def io(fmt, f, *ops):
    cmd = ["QIO", "-f", fmt]
    for op in ops:
        cmd += ["-c", op]
    return cmd + [f]


SIZE = "8M"
# Data in the first cluster, across a cluster boundary, zeros written as data, a hole, data near the end.
PATTERN = ["write -P 0x11 0 64k", "write -P 0x22 1000k 100k", "write -P 0 2M 256k", "write -z 3M 1M",
           "write -P 0x33 5M 1M", "write -P 0x44 8184k 8k"]
fx(q("create", "-q", "-f", "raw", "a.raw", SIZE), io("raw", "a.raw", *PATTERN))
fx(q("create", "-q", "-f", "qcow2", "a.qcow2", SIZE), io("qcow2", "a.qcow2", *PATTERN))
fx(q("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "a512.qcow2", SIZE), io("qcow2", "a512.qcow2", *PATTERN))
fx(q("create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", "a2m.qcow2", SIZE), io("qcow2", "a2m.qcow2", *PATTERN))
fx(q("create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "al2.qcow2", SIZE),
   io("qcow2", "al2.qcow2", *PATTERN))
fx(q("convert", "-q", "-c", "-f", "raw", "-O", "qcow2", "a.raw", "ac.qcow2"))
fx(q("convert", "-q", "-f", "raw", "-O", "qcow2", "a.raw", "aconv.qcow2"))
for sub in ["monolithicSparse", "monolithicFlat", "streamOptimized"]:
    fx(q("convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=" + sub, "a.raw", "a-%s.vmdk" % sub))
fx(q("convert", "-q", "-f", "raw", "-O", "vpc", "-o", "subformat=dynamic,force_size=on", "a.raw", "a.vhd"))
fx(q("convert", "-q", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on", "a.raw", "a-fixed.vhd"))
fx(q("convert", "-q", "-f", "raw", "-O", "vhdx", "a.raw", "a.vhdx"))
fx(q("convert", "-q", "-f", "raw", "-O", "vhdx", "-o", "subformat=fixed", "a.raw", "a-fixed.vhdx"))
# a.raw as VMware-only vmdk extents qemu reads but cannot create (plugins/vmdk/tests/vmdk_vmware_images.py):
# COWD and seSparse, its non-zero 4 KiB grains allocated.
VMWARE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "plugins", "vmdk", "tests")
fx(["python3", "-c", "import sys\nsys.path.insert(0, %r)\nfrom vmdk_vmware_images import *\n"
    "d = open('a.raw', 'rb').read()\ng = {i // 4096: d[i:i + 4096] for i in range(0, len(d), 4096) if any(d[i:i + 4096])}\n"
    "cowd('a-cowd.vmdk', len(d) // 512, 8, g)\nsesparse('a-se-x.vmdk', len(d) // 512, g)\n"
    "descriptor('a-se.vmdk', 'seSparse', [(len(d) // 512, 'SESPARSE', 'a-se-x.vmdk')])" % VMWARE])
# vpc without force_size: qemu rounds the size to its CHS geometry (a smaller disk).
fx(q("create", "-q", "-f", "vpc", "p.vhd", SIZE), io("vpc", "p.vhd", *PATTERN[:3]))
# Differences: one byte each, at the first sector, a cluster's last byte, a cluster's first byte,
# inside a hole, the image's last byte; data where the other has written zeros.
DIFFS = [("d0", "write -P 0x99 0 1"), ("d64k-1", "write -P 0x99 65535 1"), ("d64k", "write -P 0x99 64k 1"),
         ("dhole", "write -P 0x99 7000k 1"), ("dlast", "write -P 0x99 8388607 1"),
         ("dzero", "write -P 0x99 3200k 512"), ("dmid", "write -P 0x55 5500k 4k")]
for name, op in DIFFS:
    fx(["cp", "a.qcow2", "%s.qcow2" % name], io("qcow2", "%s.qcow2" % name, op))
    fx(["cp", "--sparse=always", "a.raw", "%s.raw" % name], io("raw", "%s.raw" % name, op))
# Sizes: a shorter image with the same first 4M; longer ones with zero and non-zero tails.
fx(q("create", "-q", "-f", "qcow2", "short.qcow2", "4M"), io("qcow2", "short.qcow2", *PATTERN[:4]))
fx(q("create", "-q", "-f", "qcow2", "long0.qcow2", "12M"), io("qcow2", "long0.qcow2", *PATTERN, "write -z 10M 64k"))
fx(q("create", "-q", "-f", "qcow2", "long1.qcow2", "12M"), io("qcow2", "long1.qcow2", *PATTERN, "write -P 7 11M 4k"))
fx(["python3", "-c", "import os\nf=open('odd.raw','wb')\nf.write(bytes(1000))\nf.write(b'x')\nf.close()"])
fx(q("create", "-q", "-f", "raw", "odd0.raw", "1536"))
# Chains: an overlay over a qcow2 base, its flattened raw; a backing shorter than its overlay.
fx(q("create", "-q", "-f", "qcow2", "base.qcow2", SIZE), io("qcow2", "base.qcow2", "write -P 0x61 0 6M"))
fx(q("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "ov.qcow2"),
   io("qcow2", "ov.qcow2", "write -P 0x62 1M 1M", "write -z 4M 64k"))
fx(q("convert", "-q", "-O", "raw", "ov.qcow2", "ov.raw"))
fx(q("create", "-q", "-f", "qcow2", "sbase.qcow2", "2M"), io("qcow2", "sbase.qcow2", "write -P 0x63 0 2M"))
fx(q("create", "-q", "-f", "qcow2", "-b", "sbase.qcow2", "-F", "qcow2", "sov.qcow2", "6M"),
   io("qcow2", "sov.qcow2", "write -P 0x64 5M 64k"))
fx(q("convert", "-q", "-O", "raw", "sov.qcow2", "sov.raw"))
fx(q("create", "-q", "-f", "qcow2", "-b", "ov.qcow2", "-F", "qcow2", "ov2.qcow2"),
   io("qcow2", "ov2.qcow2", "write -P 0x65 7M 4k"))
fx(q("convert", "-q", "-O", "qcow2", "ov2.qcow2", "ov2flat.qcow2"))
# Chains across formats: qcow2 over a raw backing, a vmdk delta over a vmdk base.
fx(q("create", "-q", "-f", "qcow2", "-b", "a.raw", "-F", "raw", "ovraw.qcow2"),
   io("qcow2", "ovraw.qcow2", "write -P 0x66 6M 128k"))
fx(q("convert", "-q", "-O", "raw", "ovraw.qcow2", "ovraw.raw"))
fx(q("create", "-q", "-f", "vmdk", "vbase.vmdk", SIZE), io("vmdk", "vbase.vmdk", "write -P 0x67 0 3M"))
fx(q("create", "-q", "-f", "vmdk", "-b", "vbase.vmdk", "-F", "vmdk", "vov.vmdk"),
   io("vmdk", "vov.vmdk", "write -P 0x68 1M 64k"))
fx(q("convert", "-q", "-O", "raw", "vov.vmdk", "vov.raw"))
# Subclusters: a 4 KiB difference inside an extended-L2 cluster.
fx(["cp", "al2.qcow2", "dl2.qcow2"], io("qcow2", "dl2.qcow2", "write -P 0x69 5124k 4k"))
fx(q("create", "-q", "-f", "qcow2", "empty.qcow2", SIZE), q("create", "-q", "-f", "raw", "empty.raw", SIZE))
fx(["sh", "-c", "echo garbage > text.txt"])
# A qcow2 whose data clusters lie past the end of its file: qemu reads zeros there, instar's reader
# refuses it (docs/formats/qcow2.md), so compare stops naming the image (docs/compare.md).
fx(q("create", "-q", "-f", "qcow2", "trunc.qcow2", "4M"), io("qcow2", "trunc.qcow2", "write -P 1 0 1M"),
   ["python3", "-c", "open('trunc.qcow2','r+b').truncate(0x48000)"])
# qcow2's metadata-preallocation check (file_status.h, shared with map and measure): freed.qcow2 has
# most of its clusters discarded (holes below the file's end: the old host-side rule, which counted
# every cluster below the end, took it for preallocated) and one data cluster punched out of its
# file; freedz.qcow2 has zeros written as data there. qemu deems neither preallocated: identical.
fx(q("create", "-q", "-f", "qcow2", "freed.qcow2", SIZE),
   io("qcow2", "freed.qcow2", "write -P 0x71 0 6M", "discard 64k 4032k"),
   ["cp", "--sparse=always", "freed.qcow2", "freedz.qcow2"], io("qcow2", "freedz.qcow2", "write -P 0 5M 64k"),
   ["python3", "-c", "import json, subprocess, sys\n"
    "m = json.loads(subprocess.run([sys.argv[1], 'map', '--output=json', 'freed.qcow2'], capture_output=True,"
    " text=True, check=True).stdout)\n"
    "e = next(e for e in m if e['data'] and e['start'] <= 5 << 20 < e['start'] + e['length'])\n"
    "subprocess.run(['fallocate', '-p', '-o', str(e['offset'] + (5 << 20) - e['start']), '-l', '65536',"
    " 'freed.qcow2'], check=True)", "QIMG"])
# Short runs (the runtime's read windows, docs/guest-abi.md): 8 MiB raw with every other 64 KiB block a
# hole, its qcow2 copy (data clusters back to back in the file), and one-byte differences inside a
# data block far into a window, inside a hole, and in the last block of a window.
fx(["python3", "-c", "import os\nf = open('stripes.raw', 'wb')\nf.truncate(8 << 20)\n"
    "for i in range(0, 8 << 20, 128 << 10):\n    f.seek(i)\n    f.write(os.urandom(64 << 10))"],
   q("convert", "-q", "-f", "raw", "-O", "qcow2", "stripes.raw", "stripes.qcow2"))
STRIPE_DIFFS = [("sdata", "write -P 0x99 3200000 1"), ("shole", "write -P 0x99 3000000 1"),
                ("sedge", "write -P 0x99 4259839 1")]
for name, op in STRIPE_DIFFS:
    fx(["cp", "--sparse=always", "stripes.raw", "%s.raw" % name], io("raw", "%s.raw" % name, op))
REFUSED = [(["trunc.qcow2", "empty.qcow2"], 3, "qemu-img: Sector allocation test failed for trunc.qcow2\n")]

CASES = []  # (args, both_orders)


def case(args, both=True):
    CASES.append((args, both))


def pair(a, fa, b, fb, *opts, both=True):
    case(list(opts) + ["-f", fa, "-F", fb, a, b], both)


FORMS = [("a.qcow2", "qcow2"), ("a512.qcow2", "qcow2"), ("a2m.qcow2", "qcow2"), ("al2.qcow2", "qcow2"),
         ("ac.qcow2", "qcow2"), ("aconv.qcow2", "qcow2"), ("a-monolithicSparse.vmdk", "vmdk"),
         ("a-monolithicFlat.vmdk", "vmdk"), ("a-streamOptimized.vmdk", "vmdk"), ("a.vhd", "vpc"), ("a-fixed.vhd", "vpc"),
         ("a.vhdx", "vhdx"), ("a-fixed.vhdx", "vhdx"), ("a-cowd.vmdk", "vmdk"), ("a-se.vmdk", "vmdk")]
# Identical content in every format, against raw (both orders) and strict.
for name, fmt in FORMS:
    pair("a.raw", "raw", name, fmt)
    pair("a.raw", "raw", name, fmt, "-s", both=False)
for name, fmt in FORMS[1:]:
    pair("a.qcow2", "qcow2", name, fmt, "-s", both=False)
# Mismatches at each offset, same format and across formats.
for name, _ in DIFFS:
    pair("a.qcow2", "qcow2", name + ".qcow2", "qcow2")
    pair("a.raw", "raw", name + ".raw", "raw")
    pair("a.vhdx", "vhdx", name + ".qcow2", "qcow2", both=False)
    pair("a-monolithicSparse.vmdk", "vmdk", name + ".raw", "raw", both=False)
    pair("a.qcow2", "qcow2", name + ".qcow2", "qcow2", "-s", both=False)
pair("stripes.raw", "raw", "stripes.qcow2", "qcow2")
for name, _ in STRIPE_DIFFS:
    pair("stripes.raw", "raw", name + ".raw", "raw", both=False)
    pair("stripes.qcow2", "qcow2", name + ".raw", "raw")
# Sizes.
for other in ["short.qcow2", "long0.qcow2", "long1.qcow2"]:
    pair("a.qcow2", "qcow2", other, "qcow2")
    pair("a.qcow2", "qcow2", other, "qcow2", "-s", both=False)
pair("a.raw", "raw", "p.vhd", "vpc")
pair("odd.raw", "raw", "odd0.raw", "raw")
pair("odd0.raw", "raw", "empty.raw", "raw")
# Chains.
pair("ov.qcow2", "qcow2", "ov.raw", "raw")
pair("ov.qcow2", "qcow2", "ov.raw", "raw", "-s", both=False)
pair("sov.qcow2", "qcow2", "sov.raw", "raw")
pair("sov.qcow2", "qcow2", "sov.raw", "raw", "-s", both=False)
pair("ov2.qcow2", "qcow2", "ov2flat.qcow2", "qcow2")
pair("ov2.qcow2", "qcow2", "ov.qcow2", "qcow2")
pair("ov.qcow2", "qcow2", "base.qcow2", "qcow2")
pair("empty.qcow2", "qcow2", "empty.raw", "raw")
pair("ovraw.qcow2", "qcow2", "ovraw.raw", "raw")
pair("ovraw.qcow2", "qcow2", "a.raw", "raw")
pair("ovraw.qcow2", "qcow2", "ovraw.raw", "raw", "-s", both=False)
pair("vov.vmdk", "vmdk", "vov.raw", "raw")
pair("vov.vmdk", "vmdk", "vbase.vmdk", "vmdk")
pair("vov.vmdk", "vmdk", "vov.raw", "raw", "-s", both=False)
pair("al2.qcow2", "qcow2", "dl2.qcow2", "qcow2")
pair("al2.qcow2", "qcow2", "dl2.qcow2", "qcow2", "-s", both=False)
pair("ac.qcow2", "qcow2", "dmid.raw", "raw")
pair("empty.qcow2", "qcow2", "empty.raw", "raw", "-s")
pair("freed.qcow2", "qcow2", "freedz.qcow2", "qcow2", "-s")
pair("freed.qcow2", "qcow2", "freedz.qcow2", "qcow2")
# Options: progress, quiet, cache, force-share, probing, long forms.
pair("a.qcow2", "qcow2", "a.raw", "raw", "-p", both=False)
pair("a.qcow2", "qcow2", "dmid.qcow2", "qcow2", "-p", both=False)
pair("a.qcow2", "qcow2", "long0.qcow2", "qcow2", "-p", both=False)
pair("a.qcow2", "qcow2", "long1.qcow2", "qcow2", "-p", both=False)
pair("a.qcow2", "qcow2", "dmid.qcow2", "qcow2", "-q", both=False)
pair("a.qcow2", "qcow2", "dmid.qcow2", "qcow2", "-q", "-p", "-s", both=False)
pair("a.qcow2", "qcow2", "a.raw", "raw", "-T", "none", "-U", both=False)
# -p steps by qemu's block-status answers, which stop where each driver stops (ReaderImage's
# status_boundary): a qcow2 L2 slice (512 MiB at 64 KiB clusters; INT_MAX bytes for larger slices),
# a vmdk grain (64 MiB: two grain tables) or flat extent, a vdi block, a qcow cluster. Sparse
# images, so nothing is read. qemu-img's qcow clusters are 4 KiB: the qcow pair is 4 MiB (1024
# answers of 0.1 % each, so the progress lines show the step; at 1 GiB its 262144 answers cost a
# minute of CPU in instar's process sandbox, past the guest's time budget on a loaded host).
fx(q("create", "-q", "-f", "qcow2", "p3g.qcow2", "3G"), io("qcow2", "p3g.qcow2", "write -P 0x55 2G 64k"),
   q("create", "-q", "-f", "qcow2", "-o", "cluster_size=1M", "p40g.qcow2", "40G"),
   q("create", "-q", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=2M", "pl2.qcow2", "5G"),
   q("create", "-q", "-f", "vmdk", "p.vmdk", "64M"), io("vmdk", "p.vmdk", "write -P 0x55 32M 64k"),
   q("create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "pflat.vmdk", "3G"),
   q("create", "-q", "-f", "vdi", "p.vdi", "64M"), q("create", "-q", "-f", "vdi", "pq.vdi", "4M"),
   q("create", "-q", "-f", "qcow", "p.qcow", "4M"))
for a, fa, b, fb in (("p3g.qcow2", "qcow2", "p3g.qcow2", "qcow2"), ("p40g.qcow2", "qcow2", "p40g.qcow2", "qcow2"),
                     ("pl2.qcow2", "qcow2", "pl2.qcow2", "qcow2"), ("p.vmdk", "vmdk", "p.vmdk", "vmdk"),
                     ("pflat.vmdk", "vmdk", "p3g.qcow2", "qcow2"), ("p.vdi", "vdi", "p.vmdk", "vmdk"),
                     ("p.qcow", "qcow", "pq.vdi", "vdi")):
    pair(a, fa, b, fb, "-p", both=False)
case(["a.qcow2", "dmid.qcow2"], False)
case(["ov.qcow2", "ov2.qcow2"], False)
case(["--force-share", "a.qcow2", "dmid.qcow2"], False)
case(["--strict", "a.qcow2", "dmid.qcow2"], False)
case(["--a-format=qcow2", "--b-format", "qcow2", "a.qcow2", "dmid.qcow2"], False)
# Errors.
for args in ([], ["a.qcow2"], ["a.qcow2", "a.qcow2", "a.qcow2"], ["-z", "a.qcow2", "a.qcow2"],
             ["--bogus", "a.qcow2", "a.qcow2"], ["a.qcow2", "missing.qcow2"], ["missing.qcow2", "a.qcow2"],
             ["-f", "vpc", "a.qcow2", "a.qcow2"], ["-F", "qcow2", "a.qcow2", "a.raw"], ["-F", "bogus", "a.qcow2", "a.qcow2"], ["-f"],
             ["-T", "bogus", "a.qcow2", "a.qcow2"], ["-p", "-T", "bogus", "a.qcow2", "a.qcow2"],
             ["-p", "missing.qcow2", "a.qcow2"], ["-f", "qcow2", "text.txt", "a.qcow2"],
             ["-s", "-T", "bogus", "a.qcow2"]):
    case(args, False)


run = run_normalised


def main():
    args, status = start_with_oracles(__doc__, 4)
    if args is None:
        return status
    instar, q72, q10, qio = args
    work = tempfile.mkdtemp(prefix="instar-compare-")
    passed, failed = 0, 0
    try:
        fxd = os.path.join(work, "fixtures")
        os.mkdir(fxd)
        env = dict(os.environ, TZ="UTC", LC_ALL="C")
        for c in FIXTURES:
            c = [q72 if a == "QIMG" else qio if a == "QIO" else a for a in c]
            rc, out, err = run(c, fxd, env)
            if rc != 0:
                failed += 1
                print("FAIL fixture %s\n%s" % (c, err))
        link_dir = os.path.join(work, "bin")
        os.mkdir(link_dir)
        ours = os.path.join(link_dir, "qemu-img")
        os.symlink(os.path.abspath(instar), ours)
        runs = []
        for args, both in CASES:
            runs.append(args)
            if both:
                # The same pair swapped: FILE1's options go with FILE2 and back.
                sw = list(args)
                fi, Fi = sw.index("-f"), sw.index("-F")
                sw[fi + 1], sw[Fi + 1] = sw[Fi + 1], sw[fi + 1]
                sw[-1], sw[-2] = sw[-2], sw[-1]
                runs.append(sw)
        for profile, qimg in (("7.2", q72), ("10.0", q10)):
            ienv = dict(env, INSTAR_QEMU_VERSION=profile)
            for args in runs:
                rq = run([qimg, "compare"] + args, fxd, env)
                ri = run([ours, "compare"] + args, fxd, ienv)
                if rq != ri:
                    failed += 1
                    print("FAIL [%s] compare %s\n  qemu-img: %r\n  instar:   %r" % (profile, " ".join(args), rq, ri))
                else:
                    passed += 1
        # Deliberate differences: instar's own exit status and message, for both profiles.
        for args, rc_want, err_want in REFUSED:
            for profile in ("7.2", "10.0"):
                rc, out, err = run([ours, "compare"] + args, fxd, dict(env, INSTAR_QEMU_VERSION=profile))
                if (rc, out, err) != (rc_want, "", err_want):
                    failed += 1
                    print("FAIL [%s] refused compare %s: %r" % (profile, " ".join(args), (rc, out, err)))
                else:
                    passed += 1
    finally:
        shutil.rmtree(work)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
