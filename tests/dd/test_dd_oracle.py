#!/usr/bin/env python3
"""Differential test of `instar dd` against qemu-img 7.2 and 10.0.

Inputs of every format instar reads (raw with an odd size and holes, qcow2 with zero and compressed
clusters, a qcow2 chain whose backing is shorter than the overlay, vmdk, vpc, vhdx) are made here
with qemu-img and qemu-io. Each case runs the same command line through qemu-img and through instar
under the matching profile (instar runs through a symlink named qemu-img); stdout, stderr and the
exit status must be equal, and so must the output: byte-identical for raw outputs, else the same
`qemu-img info --output=json` (without file names and sizes on disk), the same `qemu-img map
--output=json` (allocation) and `qemu-img compare` saying identical. Operands cover unaligned block
sizes, count and skip past the end, skip combined with count (qemu's size - skip quirk), and every
error message.

Usage: test_dd_oracle.py INSTAR QEMU72 QEMU10 QEMU_IO
"""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from oracle_retry import run_normalised  # noqa: E402
from differential_support import start_with_oracles  # noqa: E402

run = run_normalised
FIXTURES = []  # (name, [commands])


def fixture(name, *cmds):
    FIXTURES.append((name, list(cmds)))


def q(*a):
    return ["QIMG"] + list(a)


def io(fmt, f, *ops):
    cmd = ["QIO", "-f", fmt]
    for op in ops:
        cmd += ["-c", op]
    return cmd + [f]


PATTERN = ["write -P 0x11 0 64k", "write -P 0x22 1000k 100k", "write -z 2M 1M", "write -P 0x33 3M 1M",
           "write -P 0x44 4095k 1k"]
fixture("a.raw", ["python3", "-c",
                  "import os\nf=open('a.raw','wb')\nf.write(os.urandom(1<<20))\nf.write(bytes(1<<20))\n"
                  "f.seek(3<<20)\nf.write(os.urandom(100000))\nf.truncate(4<<20)"])
fixture("odd.raw", ["python3", "-c", "import os\nopen('odd.raw','wb').write(os.urandom(100001))"])
fixture("q.qcow2", q("create", "-q", "-f", "qcow2", "q.qcow2", "4M"), io("qcow2", "q.qcow2", *PATTERN),
        io("qcow2", "q.qcow2", "write -c -P 0x55 1536k 64k", "discard 0 4k"))
fixture("base.qcow2", q("create", "-q", "-f", "qcow2", "base.qcow2", "2M"),
        io("qcow2", "base.qcow2", "write -P 0x99 0 2M", "write -z 1M 64k"))
fixture("ov.qcow2", q("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "ov.qcow2", "4M"),
        io("qcow2", "ov.qcow2", "write -P 0xaa 512k 64k", "write -z 1536k 64k", "write -P 0xab 3M 64k"))
fixture("v.vmdk", q("create", "-q", "-f", "vmdk", "v.vmdk", "4M"), io("vmdk", "v.vmdk", *PATTERN))
fixture("p.vhd", q("create", "-q", "-f", "vpc", "p.vhd", "4M"), io("vpc", "p.vhd", *PATTERN))
fixture("x.vhdx", q("create", "-q", "-f", "vhdx", "-o", "block_size=1M", "x.vhdx", "4M"), io("vhdx", "x.vhdx", *PATTERN))
# a damaged qcow2 (an unaligned L2 table offset): the driver's corruption line, then img_dd's
fixture("qbad.qcow2", q("create", "-q", "-f", "qcow2", "qbad.qcow2", "1G"),
        io("qcow2", "qbad.qcow2", "write -P 1 0 64k", "write -P 2 600M 64k"),
        ["python3", "-c", "import struct\nf=open('qbad.qcow2','r+b')\nf.seek(0x30000+8*1)\n"
                          "f.write(struct.pack('>Q', (1<<63)|0x30200))"])

INPUTS = {"a.raw": ["-f", "raw"], "odd.raw": ["-f", "raw"], "q.qcow2": [], "ov.qcow2": [], "v.vmdk": [],
          "p.vhd": [], "x.vhdx": []}
OPERANDS = [[], ["bs=1000", "count=3"], ["bs=4k", "skip=100", "count=300"], ["bs=1000", "skip=1001"],
            ["count=99999999"], ["skip=99999999"], ["bs=777", "skip=5", "count=3000"], ["count=2", "skip=5"],
            ["count=0"], ["bs=3", "skip=7", "count=100"], ["bs=100000", "count=3", "skip=1"]]

CASES = []  # (label, args, output format or None for error-only cases)
# Every operand set for raw inputs and the chain; the unaligned ones for the other formats.
SHORT = [[], ["bs=1000", "skip=1001"], ["bs=777", "skip=5", "count=3000"]]
for name, named in INPUTS.items():
    for ops in OPERANDS if name in ("a.raw", "odd.raw", "ov.qcow2") else SHORT:
        CASES.append(("%s %s" % (name, " ".join(ops)), ["dd"] + named + ops + ["if=" + name, "of=out.img"], "raw"))
# Every output format instar creates, from a chain and from raw (fewer operand sets; qcow v1 fewer still).
# The whole image in default 512-byte blocks from the chain only: raw input in default blocks is in
# the raw-output cases above, and goes into each format here in 64 KiB blocks and (but for qcow)
# in unaligned 777-byte ones to the end.
OUT_OPERANDS = [[], ["bs=64k", "skip=3", "count=20"], ["skip=99999999"], ["bs=777", "skip=11"]]
for out in ("qcow2", "vmdk", "vpc", "vhdx", "qcow"):
    for name in ("ov.qcow2", "a.raw"):
        for ops in OUT_OPERANDS[:2] if out == "qcow" else OUT_OPERANDS:
            if not ops and name == "a.raw":
                continue
            CASES.append(("-O %s %s %s" % (out, name, " ".join(ops)),
                          ["dd", "-O", out] + INPUTS[name] + ops + ["if=" + name, "of=out.img"], out))
CASES.append(("-U", ["dd", "-U", "if=q.qcow2", "of=out.img", "count=9"], "raw"))
CASES.append(("--force-share", ["dd", "--force-share", "if=q.qcow2", "of=out.img", "count=9"], "raw"))
CASES.append(("operands first", ["dd", "if=q.qcow2", "of=out.img", "-O", "qcow2", "bs=2k"], "qcow2"))
CASES.append(("repeated operands", ["dd", "if=q.qcow2", "bs=1k", "of=x.img", "bs=2k", "of=out.img", "count=5"], "raw"))
CASES.append(("existing output is replaced", ["dd", "if=q.qcow2", "of=old.img", "count=5"], "old"))
CASES.append(("-f qcow2 -O raw", ["dd", "-f", "qcow2", "-O", "raw", "if=q.qcow2", "of=out.img"], "raw"))
CASES.append(("--format / --output-format", ["dd", "--format", "qcow2", "--output-format", "qcow2", "if=q.qcow2",
                                              "of=out.img"], "qcow2"))
CASES.append(("bs hex with suffix", ["dd", "bs=0x1k", "count=3", "if=q.qcow2", "of=out.img"], "raw"))
CASES.append(("bs fraction", ["dd", "bs=1.5k", "count=3", "if=q.qcow2", "of=out.img"], "raw"))
CASES.append(("bs max", ["dd", "bs=2147483647", "if=q.qcow2", "of=out.img"], "raw"))
# Errors: qemu-img's messages and exit codes (nothing is created).
for args in (["dd"], ["dd", "if=q.qcow2"], ["dd", "of=out.img"], ["dd", "foo"], ["dd", "foo=1", "if=q.qcow2"],
             ["dd", "if=q.qcow2", "of=out.img", "bs=0"], ["dd", "bs=abc", "if=q.qcow2", "of=out.img"],
             ["dd", "count=x", "if=q.qcow2", "of=out.img"], ["dd", "bs=-1", "if=q.qcow2", "of=out.img"],
             ["dd", "count=-1", "if=q.qcow2", "of=out.img"], ["dd", "skip=-1", "if=q.qcow2", "of=out.img"],
             ["dd", "skip=1z", "if=q.qcow2", "of=out.img"], ["dd", "bs=3G", "if=q.qcow2", "of=out.img"],
             ["dd", "bs=2147483648", "if=q.qcow2", "of=out.img"], ["dd", "count=9E", "if=q.qcow2", "of=out.img"],
             ["dd", "skip=99999999999999999999", "if=q.qcow2", "of=out.img"], ["dd", "bs=", "if=q.qcow2"],
             ["dd", "bs=1e3", "if=q.qcow2", "of=out.img"], ["dd", "bs=-0", "if=q.qcow2", "of=out.img"],
             ["dd", "count=-1k", "if=q.qcow2", "of=out.img"], ["dd", "if=q.qcow2", "of=out.img", "x"],
             ["dd", "bs=0", "foo", "if=q.qcow2", "of=out.img"], ["dd", "foo", "bs=0", "if=q.qcow2", "of=out.img"],
             ["dd", "-O", "foo", "if=q.qcow2", "of=out.img"], ["dd", "-O", "bochs", "if=q.qcow2", "of=out.img"],
             ["dd", "-O", "vvfat", "if=q.qcow2", "of=out.img"], ["dd", "-O", "bochs", "if=missing.img", "of=out.img"], ["dd", "-O", "foo", "if=missing.img", "of=out.img"],
             ["dd", "if=missing.img", "of=out.img"], ["dd", "-f", "qcow2", "if=a.raw", "of=out.img"],
             ["dd", "-f", "bogus", "if=q.qcow2", "of=out.img"], ["dd", "if=q.qcow2", "of=/nonexistent/out.img"],
             ["dd", "-x", "if=q.qcow2", "of=out.img"], ["dd", "--bogus", "if=q.qcow2", "of=out.img"],
             ["dd", "if=q.qcow2", "of=out.img", "-O"], ["dd", "-f"], ["dd", "--format", "qcow2", "if=q.qcow2"],
             ["dd", "-O", "qcow2", "bs=1k", "if=ov.qcow2"],
             # (qemu leaves the partly written output; instar's appears only complete: not compared)
             ["dd", "bs=1M", "skip=590", "count=700", "if=qbad.qcow2", "of=out.img"]):
    CASES.append(("error: " + " ".join(args[1:]), args, None))
# Image names (cli/image_name.h; more in tests/cli/test_image_names_convert.py).
CASES.append(("--image-opts", ["dd", "--image-opts", "if=driver=qcow2,file.filename=q.qcow2", "of=out.img"], "raw"))
CASES.append(("json: if=", ["dd", 'if=json:{"file":{"filename":"q.qcow2"}}', "of=out.img"], "raw"))
CASES.append(("help --help", ["dd", "--help"], None))
CASES.append(("help -h", ["dd", "-h", "if=x"], None))
# 10.0 reads count= and skip= as plain integers (no suffixes), 7.2 as sizes.
for v in ("1k", "0x10", "010", "08", " 5", "5 ", "+5", "-0", "-5", "99999999999999999999",
          "9223372036854775807", "9223372036854775808", "1.5", "", "0x", "0x10k"):
    for op in ("count", "skip"):
        args = ["dd", "bs=4k", "%s=%s" % (op, v), "if=q.qcow2", "of=out.img"]
        CASES.append(("number: %s=%r" % (op, v), args, "raw"))

# Where instar's result differs from qemu-img's on purpose (docs/dd.md): run and reported, not counted.
KNOWN = {}

# What instar refuses on purpose where qemu-img goes ahead (docs/dd.md): exit 1 naming why.
REFUSED = [("raw without -f", ["dd", "if=a.raw", "of=out.img"], "instar never guesses raw"),
           ("-O nbd", ["dd", "-O", "nbd", "if=q.qcow2", "of=out.img"], "instar cannot create nbd images")]


def strip(j):
    if isinstance(j, dict):
        # (vmdk's cid is random in both)
        return {k: strip(v) for k, v in j.items() if k not in ("filename", "actual-size", "cid")}
    if isinstance(j, list):
        return [strip(v) for v in j]
    return j


def same_output(qimg, fmt, ours, theirs, cwd, env):
    """None when the two outputs agree, else what differs."""
    if not os.path.exists(theirs):
        return None if not os.path.exists(ours) else "instar made an output, qemu-img none"
    if not os.path.exists(ours):
        return "instar made no output"
    if fmt in ("raw", "old"):
        with open(ours, "rb") as a, open(theirs, "rb") as b:
            return None if a.read() == b.read() else "raw outputs differ"
    problems = []
    for what in (["info", "--output=json"], ["map", "--output=json"]):
        # (an output qemu-img cannot open, e.g. an empty vmdk, is compared by its error)
        oi = "".join(run([qimg] + what + ["-f", fmt, ours], cwd, env)[1:]).replace(ours, "OUT")
        ot = "".join(run([qimg] + what + ["-f", fmt, theirs], cwd, env)[1:]).replace(theirs, "OUT")
        try:
            oi, ot = strip(json.loads(oi)), strip(json.loads(ot))
        except ValueError:
            pass
        if oi != ot:
            # map's offsets are where data lies in each file: compare them only when the files agree.
            problems.append("%s: %r != %r" % (what[0], oi, ot))
    rc, out, err = run([qimg, "compare", "-f", fmt, "-F", fmt, ours, theirs], cwd, env)
    if rc != 0 and not (oi == ot and "Could not open" in str(oi)):
        problems.append("compare: %s%s" % (out, err))
    return "; ".join(problems) or None


def main():
    args, status = start_with_oracles(__doc__, 4)
    if args is None:
        return status
    instar, q72, q10, qio = args[:4]
    instar = os.path.abspath(instar)
    only = os.environ.get("DD_ONLY")
    work = tempfile.mkdtemp(prefix="instar-dd-")
    passed, failures = 0, []
    try:
        fx = os.path.join(work, "fixtures")
        os.mkdir(fx)
        env = dict(os.environ, TZ="UTC", LC_ALL="C")
        for name, cmds in FIXTURES:
            for c in cmds:
                c = [q72 if a == "QIMG" else qio if a == "QIO" else a for a in c]
                rc, out, err = run(c, fx, env)
                if rc != 0:
                    failures.append("fixture " + name)
                    print("FAIL fixture %s: %s\n%s" % (name, c, err))
        link_dir = os.path.join(work, "bin")
        os.mkdir(link_dir)
        ours = os.path.join(link_dir, "qemu-img")
        os.symlink(instar, ours)
        for profile, qimg in (("7.2", q72), ("10.0", q10)):
            ienv = dict(env, INSTAR_QEMU_VERSION=profile)
            for label, args, fmt in CASES:
                if only and only not in label:
                    continue
                name = "[%s] %s" % (profile, label)
                if label.startswith("help") and profile == "7.2":
                    continue  # 7.2 prints its global help: instar prints its own (as every command)
                target = next((a[3:] for a in reversed(args) if a.startswith("of=")), None)
                results = []
                for prog, e, keep in ((qimg, env, "theirs.img"), (ours, ienv, "ours.img")):
                    for f in ("theirs.img", "ours.img") if keep == "theirs.img" else ():
                        if os.path.exists(os.path.join(fx, f)):
                            os.unlink(os.path.join(fx, f))
                    if fmt == "old":
                        with open(os.path.join(fx, target), "wb") as f:
                            f.write(b"\x5a" * (3 << 20))
                    elif target and os.path.exists(os.path.join(fx, target)) and not target.startswith("/"):
                        os.unlink(os.path.join(fx, target))
                    results.append(run([prog] + args, fx, e))
                    if target and not target.startswith("/") and os.path.exists(os.path.join(fx, target)):
                        os.rename(os.path.join(fx, target), os.path.join(fx, keep))
                rq, ri = results
                problem = None
                if rq != ri:
                    problem = "\n  qemu-img: %r\n  instar:   %r" % (rq, ri)
                elif fmt is not None:
                    problem = same_output(qimg, "raw" if fmt == "old" else fmt, os.path.join(fx, "ours.img"),
                                          os.path.join(fx, "theirs.img"), fx, env)
                if problem and label in KNOWN:
                    print("KNOWN %s: %s" % (name, KNOWN[label]))
                elif problem:
                    failures.append(name)
                    print("FAIL %s: %s" % (name, problem))
                else:
                    passed += 1
        for label, args, why in REFUSED:
            rc, out, err = run([ours] + args, fx, env)
            if rc == 1 and why in err and not os.path.exists(os.path.join(fx, "out.img")):
                passed += 1
            else:
                failures.append("refused " + label)
                print("FAIL refused %s: rc %d %r" % (label, rc, err))
    finally:
        shutil.rmtree(work)
    print("%d passed, %d failed" % (passed, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
