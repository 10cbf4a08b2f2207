#!/usr/bin/env python3
"""Crash consistency of `instar convert -n` into existing VHD, VHDX, qcow2 (extended L2 entries;
the other qcow2 layouts: tests/commit/test_commit_crash.py) and vmdk (monolithicFlat,
twoGbMaxExtentSparse, streamOptimized with a parent and behind a descriptor file, COWD with a missing
grain table) images, and into a VHDX whose log needs replay: the host is killed
(INSTAR_TEST_KILL_AT_WRITE=N, docs/edit.md) at
every file-changing hypercall N from the first on, up to MAX_POINTS and then at doubling N, until a
run completes. After each kill the target must still open in qemu-img and instar, pass
`qemu-img check` (vhdx, vmdk), and every 512-byte sector of its disk, as
each tool reads it, must hold either the target's old content or the source's: new blocks are
written before the table entry that points at them (docs/convert.md, "-n"). A target whose log
needs replay (REPLAY) is read from a copy `qemu-img check -r all` replayed, if a log is still
pending: its old content is the replayed fixture's.

Usage: test_convert_n_crash.py INSTAR QEMU72 QEMU_IO
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from differential_support import start_with_oracles  # noqa: E402

# Kill points tried one by one per target; past them N doubles.
MAX_POINTS = 40
SECTOR = 512
HERE = os.path.dirname(os.path.abspath(__file__))
VHDX_TESTS = os.path.join(HERE, "..", "..", "plugins", "vhdx", "tests")
# The log's entry: a data sector and a zero sector in block 0 (1 MiB blocks), and file growth.
LOG = ("import sys\nsys.path.insert(0, %r)\nfrom vhdx_log_images import with_pending_log, block_offset\n"
       "b = block_offset('base.vhdx', 0)\n"
       "with_pending_log('base.vhdx', 'log.vhdx', writes=[(b + 8192, bytes(range(256)) * 16)],"
       " zeros=[(b + 4096, 4096)], grow=4096)" % VHDX_TESTS)
REPLAY = {"log.vhdx"}
VMDK_TESTS = os.path.join(HERE, "..", "..", "plugins", "vmdk", "tests")
# The source's size (below): a streamOptimized target takes only whole grains but the disk's last,
# so those targets end where the source does.
SRC_BYTES = (5 << 20) + 4096


def vmware(script):
    return ["python3", "-c", "import sys\nsys.path.insert(0, %r)\nfrom vmdk_vmware_images import *\n%s" %
            (VMDK_TESTS, script)]


TARGETS = {
    # name: (format, commands making it in the work directory)
    "dyn.vhd": ("vpc", [["QIMG", "create", "-q", "-f", "vpc", "-o", "force_size=on", "dyn.vhd", "8M"],
                        ["QIO", "-f", "vpc", "-c", "write -P 0x5a 0 3M", "dyn.vhd"]]),
    "diff.vhd": ("vpc", [["QIMG", "create", "-q", "-f", "vpc", "-o", "force_size=on", "parent.vhd", "8M"],
                         ["QIO", "-f", "vpc", "-c", "write -P 0x77 0 8M", "parent.vhd"],
                         ["INSTAR", "create", "-q", "-f", "vpc", "-b", "parent.vhd", "-F", "vpc", "diff.vhd"]]),
    "dyn.vhdx": ("vhdx", [["QIMG", "create", "-q", "-f", "vhdx", "-o", "block_size=1M", "dyn.vhdx", "8M"],
                          ["QIO", "-f", "vhdx", "-c", "write -P 0x5a 0 3M", "dyn.vhdx"]]),
    "zero.vhdx": ("vhdx", [["QIMG", "create", "-q", "-f", "vhdx", "-o", "block_size=1M,block_state_zero=on",
                            "zero.vhdx", "8M"],
                           ["QIO", "-f", "vhdx", "-c", "write -P 0x5a 1M 1M", "zero.vhdx"]]),
    "log.vhdx": ("vhdx", [["QIMG", "create", "-q", "-f", "vhdx", "-o", "block_size=1M", "base.vhdx", "8M"],
                          ["QIO", "-f", "vhdx", "-c", "write -P 0x5a 0 3M", "base.vhdx"],
                          ["python3", "-c", LOG]]),
    "flat.vmdk": ("vmdk", [["QIMG", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "flat.vmdk", "8M"],
                           ["QIO", "-f", "vmdk", "-c", "write -P 0x5a 0 3M", "flat.vmdk"]]),
    "split.vmdk": ("vmdk", [["QIMG", "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse",
                             "split.vmdk", "8M"],
                            ["QIO", "-f", "vmdk", "-c", "write -P 0x5a 1M 1M", "split.vmdk"]]),
    # streamOptimized with a parent: each new grain is the parent's, then the compressed data.
    "so-parent.vmdk": ("vmdk", [["QIMG", "create", "-q", "-f", "vmdk", "so-base.vmdk", str(SRC_BYTES)],
                                ["QIO", "-f", "vmdk", "-c", "write -P 0x77 0 5M", "so-base.vmdk"],
                                ["QIMG", "create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", "-b",
                                 "so-base.vmdk", "-F", "vmdk", "so-parent.vmdk"]]),
    # streamOptimized extents behind a descriptor file (the second with zeroed grains).
    "dso.vmdk": ("vmdk", [["QIMG", "create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", "dso-s.vmdk",
                           "4M"],
                          ["QIMG", "create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized,zeroed_grain=on",
                           "dso-t.vmdk", str(SRC_BYTES - (4 << 20))],
                          vmware("descriptor('dso.vmdk', 'twoGbMaxExtentSparse', [(8192, 'SPARSE', 'dso-s.vmdk'), "
                                 "(%d, 'SPARSE', 'dso-t.vmdk')])" % ((SRC_BYTES >> 9) - 8192))]),
    # qcow2 with extended L2 entries (16 KiB clusters, 512-byte subclusters): partial subclusters
    # completed in place, new clusters holding only what a request covers, zeros as zero bits over
    # data (the source's zero run lands on the target's data).
    "l2.qcow2": ("qcow2", [["QIMG", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=16k", "l2.qcow2",
                            "8M"],
                           ["QIO", "-f", "qcow2", "-c", "write -P 0x5a 0 1M", "-c", "write -P 0x5b 2100k 3k", "-c",
                            "write -z 2200k 1k", "-c", "write -P 0x5c 2500k 600k", "-c", "write -c -P 0x5d 4M 16k",
                            "l2.qcow2"]]),
    # COWD whose second grain table is missing (allocated by the writer: quirk vmdk-missing-grain-table).
    "gaps.vmdk": ("vmdk", [vmware("cowd('gaps.vmdk', 16384, 2, {0: b'\\x11' * 1024, 100: b'\\x22' * 1024}, "
                                  "missing_tables=(1,))")]),
}


def sh(cmd, cwd, env=None):
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


def replayed(q72, name, cwd):
    """A copy of `name` whose log qemu-img replayed (check -r all opens it read-write), or None."""
    copy = "replayed-" + name
    shutil.copyfile(os.path.join(cwd, name), os.path.join(cwd, copy))
    rc, _ = sh([q72, "check", "-q", "-r", "all", "-f", "vhdx", copy], cwd)
    return copy if rc == 0 else None


def read_disk(tool, fmt, name, cwd):
    """The image's disk as `tool` reads it (convert to raw), or None when it cannot."""
    if name is None:
        return None
    out = os.path.join(cwd, "read.raw")
    if os.path.exists(out):
        os.unlink(out)
    rc, _ = sh([tool, "convert", "-f", fmt, "-O", "raw", name, "read.raw"], cwd)
    if rc != 0:
        return None
    with open(out, "rb") as f:
        return f.read()


def mixed(result, old, new):
    """The first sector of `result` that is neither `old`'s nor `new`'s (new is shorter: the
    target's tail keeps its old content), or None."""
    if result is None or len(result) != len(old):
        return 0
    for at in range(0, len(result), SECTOR):
        r = result[at:at + SECTOR]
        if r != old[at:at + SECTOR] and (at >= len(new) or r != new[at:at + SECTOR]):
            return at
    return None


def main():
    args, status = start_with_oracles(__doc__, 3)
    if args is None:
        return status
    instar, q72, qio = [os.path.abspath(a) if os.path.exists(a) else a for a in args[:3]]
    passed, failed = 0, []
    work = tempfile.mkdtemp(prefix="instar-convert-n-crash-")
    try:
        src = os.path.join(work, "src.raw")
        with open(src, "wb") as f:  # data, a zero run (written as zeros: no zero init), data
            f.write(os.urandom(2 << 20) + bytes(1 << 20) + os.urandom(SRC_BYTES - (3 << 20)))
        with open(src, "rb") as f:
            new = f.read()
        # CRASH_ONLY=REGEX runs only the targets whose name matches (while working on one).
        only = os.environ.get("CRASH_ONLY")
        for name, (fmt, cmds) in TARGETS.items():
            if only and not re.search(only, name):
                continue
            fx = os.path.join(work, "fx-" + name)
            os.mkdir(fx)
            for c in cmds:
                c = [q72 if a == "QIMG" else qio if a == "QIO" else instar if a == "INSTAR" else a for a in c]
                rc, out = sh(c, fx)
                if rc != 0:
                    failed.append("fixture " + name)
                    print("FAIL fixture %s: %s\n%s" % (name, c, out))
            seen = replayed(q72, name, fx) if name in REPLAY else name
            old = {t: read_disk(t, fmt, seen, fx) for t in (q72, instar)}
            args = [instar, "convert", "-n", "-f", "raw", "-O", fmt, src, name]
            # The total: an unkilled run counts nothing, so find it by growing N until a run completes.
            n, total = 1, None
            points = []
            while total is None and n < 100000:
                d = os.path.join(work, "k-%s-%d" % (name, n))
                shutil.copytree(fx, d)
                rc, out = sh(args, d, dict(os.environ, INSTAR_TEST_KILL_AT_WRITE=str(n)))
                if rc == 0:
                    total = n - 1
                elif rc not in (137, 159, -9, -31):
                    failed.append("%s kill %d" % (name, n))
                    print("FAIL %s kill at %d: rc %d %s" % (name, n, rc, out))
                    total = n
                else:
                    points.append((n, d))
                n = n + 1 if n < MAX_POINTS else n * 2
            # Kill points that leave the same files as an earlier one (a write that changed no byte)
            # get that one's verdict: every check below reads only these files.
            verdicts = {}
            for n, d in points:
                state = hashlib.sha256()
                for f in sorted(os.listdir(d)):
                    with open(os.path.join(d, f), "rb") as fh:
                        state.update(f.encode() + b"\0" + hashlib.sha256(fh.read()).digest())
                state = state.digest()
                if state in verdicts:
                    problems = verdicts[state]
                    if problems:
                        failed.append("%s kill %d" % (name, n))
                        print("FAIL %s killed at write %d (as an earlier point)" % (name, n))
                    else:
                        passed += 1
                    shutil.rmtree(d)
                    continue
                problems = []
                verdicts[state] = problems
                seen = replayed(q72, name, d) if name in REPLAY else name
                for tool in (q72, instar):
                    at = mixed(read_disk(tool, fmt, seen, d), old[tool], new)
                    if at is not None:
                        problems.append("%s reads a sector that is neither old nor new at %d" %
                                        (os.path.basename(tool), at))
                if fmt in ("vhdx", "vmdk", "qcow2") and seen is not None:
                    rc, out = sh([q72, "check", "-f", fmt, seen], d)
                    if rc != 0 and not (rc == 63 and "does not support checks" in out) and not (
                            rc == 3 and fmt == "qcow2"):  # COWD; qcow2: leaked clusters at worst
                        problems.append("qemu-img check: " + out)
                if problems:
                    failed.append("%s kill %d" % (name, n))
                    print("FAIL %s killed at write %d:" % (name, n))
                    for p in problems:
                        print("   ", p)
                else:
                    passed += 1
                shutil.rmtree(d)
            print("%s: %d kill points (%d leaving distinct files), complete with %d writes allowed" %
                  (name, len(points), len(verdicts), total or 0))
    finally:
        shutil.rmtree(work)
    print("%d passed, %d failed" % (passed, len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
