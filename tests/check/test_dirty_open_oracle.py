#!/usr/bin/env python3
"""qemu's read-write open of a dirty qcow2 image, against qemu-img 7.2 and 10.0.

A qcow2 image with lazy refcounts whose refcounts were not written back (the dirty bit set, the last
cluster referenced with refcount 0, as a killed qemu leaves it; made by hand so the fixture is the
same every time) is opened read-write by resize, snapshot -c, amend, bitmap, rebase (-u and safe)
and convert -n: qemu repairs it first (qcow2_do_open's check with BDRV_FIX_ERRORS | BDRV_FIX_LEAKS)
and prints check's lines on stderr, then runs the command. instar must print the same (stdout,
stderr, exit status, under both profiles, through a symlink named qemu-img), leave an image that
checks clean and reads as qemu-img's, and byte for byte qemu-img's where nothing depends on the
clock (all but snapshot -c; convert -n places new clusters as it always does, docs/convert.md).
A LUKS-encrypted dirty image is repaired with the key the command line names (rebase -u).
snapshot -l opens read-only: no repair, the image unchanged.
(commit's top and base: tests/commit/test_commit_oracle.py, dirty_top and dirty_base.)

Usage: test_dirty_open_oracle.py INSTAR QEMU72 QEMU10 QEMU_IO
"""
import os
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from oracle_retry import run_fixture, run_normalised  # noqa: E402


def make_dirty(path):
    """The dirty bit set; the last cluster's refcount 0 (it is referenced), the next one's 1."""
    with open(path, "rb") as f:
        d = bytearray(f.read())
    cs = 1 << struct.unpack(">I", d[20:24])[0]
    d[79] |= 1
    block = struct.unpack(">Q", d[struct.unpack(">Q", d[48:56])[0]:][:8])[0]
    last = len(d) // cs - 1
    d[block + 2 * last:block + 2 * last + 4] = b"\0\0\0\1"
    with open(path, "wb") as f:
        f.write(d)


# (arguments after the command name, the image it changes, byte-identical to qemu-img's)
CASES = [
    (["resize", "t.qcow2", "+1M"], "t.qcow2", True),
    (["resize", "--shrink", "t.qcow2", "4M"], "t.qcow2", True),
    (["snapshot", "-c", "s1", "t.qcow2"], "t.qcow2", False),
    (["snapshot", "-l", "t.qcow2"], "t.qcow2", True),
    (["amend", "-o", "lazy_refcounts=off", "t.qcow2"], "t.qcow2", True),
    (["bitmap", "--add", "t.qcow2", "b0"], "t.qcow2", True),
    (["rebase", "-u", "-b", "o.qcow2", "-F", "qcow2", "t.qcow2"], "t.qcow2", True),
    (["rebase", "-b", "", "t.qcow2"], "t.qcow2", True),
    # (convert -n appends new clusters where qemu reuses free space first: content, not bytes.)
    (["convert", "-n", "-O", "qcow2", "s.qcow2", "t.qcow2"], "t.qcow2", False),
    # A LUKS-encrypted dirty image: the repair needs its key (named by the command line, as qemu's
    # open takes it). Compared by bytes only (check and compare would need the key as well).
    (["rebase", "-u", "--object", "secret,id=s0,data=dirty-pass", "-b", "o.qcow2", "-F", "qcow2", "--image-opts",
      "driver=qcow2,file.filename=e.qcow2,encrypt.key-secret=s0"], "e.qcow2", True),
]
ENCRYPTED = {"e.qcow2"}


def main():
    if len(sys.argv) != 5:
        print(__doc__)
        return 2
    instar, q72, q10, qio = sys.argv[1:]
    for prog in (q72, q10, qio):
        if not os.access(prog, os.X_OK):
            print("SKIPPED LOUDLY: %s missing; dirty-open differential NOT run" % prog)
            return 77
    work = tempfile.mkdtemp(prefix="instar-dirty-open-")
    passed = failed = 0
    try:
        fx = os.path.join(work, "fixture")
        os.mkdir(fx)
        for c in ([q72, "create", "-q", "-f", "qcow2", "b.qcow2", "8M"],
                  [qio, "-c", "write -P 0x11 0 2M", "b.qcow2"],
                  [q72, "create", "-q", "-f", "qcow2", "o.qcow2", "8M"],
                  [qio, "-c", "write -P 0x11 0 1M", "o.qcow2"],
                  [q72, "create", "-q", "-f", "qcow2", "s.qcow2", "8M"],
                  [qio, "-c", "write -P 0x33 3M 100k", "s.qcow2"],
                  [q72, "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "-b", "b.qcow2", "-F", "qcow2",
                   "t.qcow2"],
                  [qio, "-c", "write -P 0x22 1M 256k", "-c", "write -z 5M 64k", "t.qcow2"],
                  [q72, "create", "-q", "--object", "secret,id=s0,data=dirty-pass", "-f", "qcow2", "-o",
                   "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10,lazy_refcounts=on", "e.qcow2",
                   "8M"],
                  [qio, "--object", "secret,id=s0,data=dirty-pass", "--image-opts", "-c", "write -P 0x44 1M 128k",
                   "driver=qcow2,file.filename=e.qcow2,encrypt.key-secret=s0"]):
            run_fixture(c, cwd=fx, check=True)
        make_dirty(os.path.join(fx, "t.qcow2"))
        make_dirty(os.path.join(fx, "e.qcow2"))
        link_dir = os.path.join(work, "bin")
        os.mkdir(link_dir)
        ours = os.path.join(link_dir, "qemu-img")
        os.symlink(os.path.abspath(instar), ours)
        env = dict(os.environ, TZ="UTC", LC_ALL="C")
        for profile, qimg in (("7.2", q72), ("10.0", q10)):
            for args, image, exact in CASES:
                dq, di = os.path.join(work, "q"), os.path.join(work, "i")
                for d in (dq, di):
                    shutil.rmtree(d, ignore_errors=True)
                    shutil.copytree(fx, d)
                rq = run_normalised([qimg] + args, dq, env)
                ri = run_normalised([ours] + args, di, dict(env, INSTAR_QEMU_VERSION=profile))
                problems = []
                if rq != ri:
                    problems.append("output\n  qemu-img: %r\n  instar:   %r" % (rq, ri))
                a, b = os.path.join(di, image), os.path.join(dq, image)
                if args[:2] == ["snapshot", "-l"]:
                    if open(a, "rb").read() != open(os.path.join(fx, image), "rb").read():
                        problems.append("a read-only open changed the image")
                elif image not in ENCRYPTED:
                    c = subprocess.run([q72, "check", a], capture_output=True, text=True)
                    if c.returncode != 0:
                        problems.append("check rc %d: %s" % (c.returncode, c.stdout.strip()))
                    c = subprocess.run([q72, "compare", "-f", "qcow2", "-F", "qcow2", a, b], cwd=di,
                                       capture_output=True, text=True)
                    if c.returncode != 0:
                        problems.append("content: " + (c.stdout + c.stderr).strip())
                if exact and open(a, "rb").read() != open(b, "rb").read():
                    problems.append("bytes differ from qemu-img's")
                if problems:
                    failed += 1
                    print("FAIL [%s] %s: %s" % (profile, " ".join(args), "; ".join(problems)))
                else:
                    passed += 1
    finally:
        shutil.rmtree(work)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
