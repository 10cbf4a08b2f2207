#!/usr/bin/env python3
"""Crash test of `instar dd`: the output appears atomically. With INSTAR_TEST_KILL_AT_WRITE=N the
host dies at its N-th file-changing hypercall (docs/edit.md); for every N up to the copy's total,
an existing output file must still hold its old bytes and no other file may be left in its
directory. The run that is not killed must produce what qemu-img dd produces (qemu-img compare).

Usage: test_dd_crash.py INSTAR QEMU_IMG QEMU_IO
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from differential_support import start_with_oracles  # noqa: E402

MAX_WRITES = 400  # far above a 2 MiB qcow2 output's write count; the loop stops at the first clean run


def main():
    args, status = start_with_oracles(__doc__, 3)
    if args is None:
        return status
    instar, qimg, qio = (os.path.abspath(a) for a in args[:3])
    work = tempfile.mkdtemp(prefix="instar-dd-crash-")
    passed, failed = 0, 0
    try:
        src = os.path.join(work, "src.qcow2")
        subprocess.run([qimg, "create", "-q", "-f", "qcow2", src, "4M"], check=True)
        subprocess.run([qio, "-f", "qcow2", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 2M 64k", src],
                       check=True, stdout=subprocess.DEVNULL)
        out_dir = os.path.join(work, "out")
        os.mkdir(out_dir)
        out = os.path.join(out_dir, "out.qcow2")
        old = b"old contents\n" * 100
        args = [instar, "dd", "-O", "qcow2", "bs=1000", "skip=3", "count=2500", "if=" + src, "of=" + out]
        for n in range(1, MAX_WRITES + 1):
            with open(out, "wb") as f:
                f.write(old)
            env = dict(os.environ, INSTAR_TEST_KILL_AT_WRITE=str(n))
            p = subprocess.run(args, env=env, capture_output=True)
            left = sorted(os.listdir(out_dir))
            if p.returncode == 0:
                ref = os.path.join(work, "ref.qcow2")
                subprocess.run([qimg] + args[1:-1] + ["of=" + ref], check=True, capture_output=True)
                c = subprocess.run([qimg, "compare", "-f", "qcow2", "-F", "qcow2", out, ref], capture_output=True)
                chk = subprocess.run([qimg, "check", out], capture_output=True)
                if c.returncode == 0 and chk.returncode == 0 and left == ["out.qcow2"]:
                    passed += 1
                else:
                    failed += 1
                    print("FAIL clean run after %d kills: compare %r check %r files %r" % (n - 1, c.stdout, chk.stdout, left))
                print("killed at each of %d writes" % (n - 1))
                break
            with open(out, "rb") as f:
                intact = f.read() == old
            if intact and left == ["out.qcow2"]:
                passed += 1
            else:
                failed += 1
                print("FAIL kill at write %d: rc %d, old output intact: %s, files: %r" % (n, p.returncode, intact, left))
        else:
            failed += 1
            print("FAIL: no clean run within %d writes" % MAX_WRITES)
    finally:
        shutil.rmtree(work)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
