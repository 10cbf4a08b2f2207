#!/usr/bin/env python3
"""The corrupt bit against both qemu-img oracles, for every command that opens a qcow2 image
read-write (and a few that do not): qemu's read-write open refuses such an image first, "Could not
open 'IMG': qcow2: Image is corrupt; cannot be opened read/write", before it would repair a dirty
image, look at a new backing file or write anything (round 36: resize, snapshot, amend and bitmap
had worded it without the open's frame, commit had committed into the base first, rebase had
blamed the write). Each command runs on the corrupt-bit image and on one with the dirty bit too;
stdout, stderr (program name aside), exit status and the image's bytes afterwards must equal
qemu-img's. (commit into a corrupt base is a divergence: commit_oracle's corrupt_base.)

usage: test_corrupt_open.py INSTAR QEMU72 QEMU10 QEMU_IO
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from differential_support import start_with_oracles  # noqa: E402
from oracle_retry import run_fixture  # noqa: E402
from qcow2_header import set_incompat_bits  # noqa: E402

COMMANDS = [
    ["resize", "t.qcow2", "2M"], ["resize", "--shrink", "t.qcow2", "512k"], ["resize", "-q", "t.qcow2", "+1M"],
    ["snapshot", "-c", "s", "t.qcow2"], ["snapshot", "-a", "s", "t.qcow2"], ["snapshot", "-d", "s", "t.qcow2"],
    ["snapshot", "-l", "t.qcow2"],
    ["amend", "-o", "lazy_refcounts=off", "t.qcow2"], ["bitmap", "--add", "t.qcow2", "b0"],
    ["commit", "t.qcow2"], ["commit", "-d", "t.qcow2"],
    ["rebase", "-b", "n.qcow2", "-F", "qcow2", "t.qcow2"], ["rebase", "-b", "nope.qcow2", "-F", "qcow2", "t.qcow2"],
    ["rebase", "-u", "-b", "n.qcow2", "-F", "qcow2", "t.qcow2"], ["rebase", "-b", "", "t.qcow2"],
    ["convert", "-n", "-O", "qcow2", "n.qcow2", "t.qcow2"], ["check", "t.qcow2"],
]


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    args, status = start_with_oracles(__doc__, 4)
    if args is None:
        return status
    instar, q72, q10, qio = args[:4]
    work = tempfile.mkdtemp(prefix="instar-corrupt-")
    passed = failed = 0
    try:
        link = os.path.join(work, "bin")
        os.mkdir(link)
        ours = os.path.join(link, "qemu-img")
        os.symlink(os.path.abspath(instar), ours)
        tpl = os.path.join(work, "tpl")
        os.mkdir(tpl)
        for c in ([q72, "create", "-q", "-f", "qcow2", "b.qcow2", "1M"], [q72, "create", "-q", "-f", "qcow2", "n.qcow2", "1M"],
                  [q72, "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "-b", "b.qcow2", "-F", "qcow2",
                   "t.qcow2"],
                  [qio, "-f", "qcow2", "-c", "write -P 3 0 64k", "t.qcow2"], [q72, "snapshot", "-c", "s", "t.qcow2"]):
            p = run_fixture(c, cwd=tpl)
            if p.returncode != 0:
                print("SETUP FAIL %s: %s" % (c, p.stderr))
                return 1
        env = dict(os.environ, TZ="UTC", LC_ALL="C")
        for bits, what in ((2, "corrupt"), (3, "corrupt and dirty")):
            for cmd in COMMANDS:
                for oracle, version in ((q72, "7.2.22"), (q10, "10.0.2")):
                    got = {}
                    for who, exe in (("qemu", [oracle]), ("instar", [ours, "--qemu-version", version])):
                        d = os.path.join(work, who)
                        shutil.rmtree(d, ignore_errors=True)
                        shutil.copytree(tpl, d)
                        set_incompat_bits(os.path.join(d, "t.qcow2"), bits)
                        p = subprocess.run(exe + cmd, cwd=d, env=env, capture_output=True, text=True)
                        got[who] = (p.returncode, p.stdout, p.stderr.replace(exe[0], "QEMU-IMG"),
                                    {f: digest(os.path.join(d, f)) for f in ("t.qcow2", "b.qcow2")})
                    if got["qemu"] != got["instar"]:
                        failed += 1
                        print("FAIL [%s] %s: %s\n  qemu   %r\n  instar %r" % (version, what, " ".join(cmd),
                                                                           got["qemu"][:3], got["instar"][:3]))
                    else:
                        passed += 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
