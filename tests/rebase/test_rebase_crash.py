#!/usr/bin/env python3
"""Crash consistency of `instar rebase` (docs/rebase.md, docs/edit.md).

Each scenario runs instar rebase killed at its N-th file-changing hypercall (INSTAR_TEST_KILL_AT_WRITE=N,
the host ends as a kill -9 would): every N up to 16, then N growing by an eighth until a run
completes, then every N between the last kill and the completing run (the copy's end, the header
switch). After every kill:
`qemu-img check` accepts the image (exit 0, or 3 for leaked clusters only), its content (read through
whichever backing file its header names) is the content before, and its backing file is the old or
the new one. The completed run must give the new backing file, the same content and a clean check.

Scenarios: safe rebase of a 16k-cluster overlay from a 64k-cluster backing onto a 4k-cluster one (data
copied, L2 tables and refcount blocks added, then the header switched); safe detach (-b ""), which
copies every cluster the old backing held; the same rebase of a 512-byte-cluster overlay (many L2
tables and refcount blocks); -u with a name longer than the old one (relocated in the header
cluster).

Usage: test_rebase_crash.py INSTAR QEMU72 QEMU_IO
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from differential_support import start_with_oracles  # noqa: E402

TAIL = 12  # the last writes, each killed: the end of the copy, the flush point and the header switch
MAX_RUNS = 100000  # far above any scenario's write count: a run that never completes is a failure

FIXTURES = [
    ["QIMG", "create", "-q", "-f", "qcow2", "b1.qcow2", "8M"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x11 0 3M", "-c", "write -P 0x22 5M 1M", "b1.qcow2"],
    ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "b2.qcow2", "8M"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x33 2M 100k", "b2.qcow2"],
    ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=16k", "-b", "b1.qcow2", "-F", "qcow2", "ov.qcow2"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x44 512k 64k", "-c", "write -P 0x55 7M 512", "ov.qcow2"],
    # 512-byte clusters: many L2 tables and refcount blocks appended on the way.
    ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "-b", "b1.qcow2", "-F", "qcow2", "ov512.qcow2"],
    ["QIO", "-f", "qcow2", "-c", "write -P 0x44 100k 3k", "ov512.qcow2"],
]

SCENARIOS = [
    ("safe onto b2", "ov.qcow2", ["-b", "b2.qcow2", "-F", "qcow2", "ov.qcow2"], ("b1.qcow2", "b2.qcow2")),
    ("safe detach", "ov.qcow2", ["-b", "", "ov.qcow2"], ("b1.qcow2", None)),
    ("safe onto b2, 512-byte clusters", "ov512.qcow2", ["-b", "b2.qcow2", "-F", "qcow2", "ov512.qcow2"],
     ("b1.qcow2", "b2.qcow2")),
    ("-u relocated", "ov.qcow2", ["-u", "-b", "d/" + "n" * 200 + "/../../b1.qcow2", "-F", "qcow2", "ov.qcow2"],
     ("b1.qcow2", "d/" + "n" * 200 + "/../../b1.qcow2")),
]


def sh(cmd, cwd, env=None):
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout + p.stderr


def backing(q, cwd, image):
    rc, out = sh([q, "info", "-U", "--output=json", image], cwd)
    if rc != 0:
        return "info failed: " + out
    return json.loads(out).get("backing-filename")


def kill_once(instar, q, fxd, work, env, image, args, n, old, new):
    """One run killed at write n, checked: (exit status, problems)."""
    d = os.path.join(work, "run")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(fxd, d)
    rc, out = sh([instar, "rebase"] + args, d, dict(env, INSTAR_TEST_KILL_AT_WRITE=str(n)))
    problems = []
    if rc not in (0, 137, -31):  # -31: the sandbox's seccomp filter turns the hook's _exit into SIGSYS
        problems.append("exit %d: %s" % (rc, out))
    crc, cout = sh([q, "check", image], d)
    if crc not in (0, 3) or "ERROR" in cout:
        problems.append("check exit %d: %s" % (crc, cout))
    mrc, mout = sh([q, "compare", image + ".before.raw", image], d)
    if mrc != 0:
        problems.append("content changed: " + mout)
    b = backing(q, d, image)
    want = (new,) if rc == 0 else (old, new)
    if b not in want:
        problems.append("backing %r, expected one of %r" % (b, want))
    if rc == 0 and crc != 0:
        problems.append("the completed run left leaks or errors")
    return rc, problems


def main():
    args, status = start_with_oracles(__doc__, 3)
    if args is None:
        return status
    instar, q, qio = args
    instar = os.path.abspath(instar)
    work = tempfile.mkdtemp(prefix="instar-rebase-crash-")
    tally = [0, 0]

    def count(label, n, problems):
        if problems:
            tally[1] += 1
            print("FAIL %s, killed at write %d: %s" % (label, n, "; ".join(problems)))
        else:
            tally[0] += 1

    try:
        fxd = os.path.join(work, "fixtures")
        os.makedirs(os.path.join(fxd, "d", "n" * 200))
        for c in FIXTURES:
            c = [q if a == "QIMG" else qio if a == "QIO" else a for a in c]
            rc, out = sh(c, fxd)
            if rc != 0:
                print("FAIL fixture %s: %s" % (c, out))
                return 1
        for image in ("ov.qcow2", "ov512.qcow2"):
            sh([q, "convert", "-O", "raw", image, image + ".before.raw"], fxd)
        env = dict(os.environ, LC_ALL="C")
        for label, image, args, (old, new) in SCENARIOS:
            completed = False
            n, tried, last_killed = 0, set(), 0
            while n < MAX_RUNS:
                # Every write up to 16, then steps of an eighth (at least 30 points on the way to
                # hundreds of writes); when a run completes, every write of the last stretch too
                # (the copy's end, the flush, the header switch).
                n = n + 1 if n < 16 else n + n // 8
                if completed:
                    break
                rc, problems = kill_once(instar, q, fxd, work, env, image, args, n, old, new)
                count(label, n, problems)
                tried.add(n)
                if rc != 0:
                    last_killed = n
                    continue
                completed = True
                # Bisect for the first completing run (every probe checked as well), then kill at
                # each of the last TAIL writes: the end of the copy and the header switch.
                lo, hi = last_killed, n  # lo killed (or 0), hi completed
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    rc_mid, problems = kill_once(instar, q, fxd, work, env, image, args, mid, old, new)
                    tried.add(mid)
                    count(label, mid, problems)
                    lo, hi = (mid, hi) if rc_mid != 0 else (lo, mid)
                total = hi - 1
                for m in range(max(1, total - TAIL + 1), total + 1):
                    if m in tried:
                        continue
                    _, problems = kill_once(instar, q, fxd, work, env, image, args, m, old, new)
                    tried.add(m)
                    count(label, m, problems)
                print("%s: %d writes; killed at %d points" % (label, total, len([t for t in tried if t <= total])))
            if not completed:
                tally[1] += 1
                print("FAIL %s: no run completed within %d writes" % (label, MAX_RUNS))
    finally:
        shutil.rmtree(work)
    print("%d passed, %d failed" % (tally[0], tally[1]))
    return 1 if tally[1] else 0


if __name__ == "__main__":
    sys.exit(main())
