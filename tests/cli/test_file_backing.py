#!/usr/bin/env python3
"""Backing file names with qemu's file: protocol ("file:base.qcow2"), against qemu-img 7.2 and 10.0.

qemu keeps a backing name with a protocol as it is: it opens "file:NAME" as NAME from the working
directory (not the image's), prints it as the actual path, and `commit -b` matches such a name as a
string only. instar follows file: backing names the same way, through its path policy (every
instar run gets --allow-path for the work directory, so the policy never decides a case here).
Each case runs on a fresh copy of one chain, from a given working directory; stdout, stderr
(program name normalised), exit code and afterwards every image's backing name and content must
equal each oracle's.

Usage: test_file_backing.py INSTAR QEMU72 QEMU10 QEMU_IO
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

INSTAR, Q72, Q10, QIO = [os.path.abspath(a) if os.path.exists(a) else a for a in sys.argv[1:5]]

# (working directory inside the chain's directory, arguments). The chain: base.qcow2 <- mid.qcow2
# (names "file:base.qcow2") <- top.qcow2 (names "mid.qcow2"); sub/top.qcow2 names "file:mid.qcow2"
# (from sub/ no such file: the working directory decides); base2.qcow2 has other data.
CASES = [
    (".", ["info", "--backing-chain", "top.qcow2"]),
    (".", ["info", "--backing-chain", "--output=json", "@/top.qcow2"]),
    (".", ["info", "@/mid.qcow2"]),  # no "(actual path: ...)": a protocol name is its own full name
    (".", ["info", "--output=json", "@/mid.qcow2"]),
    ("sub", ["info", "--backing-chain", "@/sub/top.qcow2"]),
    (".", ["map", "top.qcow2"]),
    (".", ["map", "--output=json", "sub/top.qcow2"]),
    ("sub", ["map", "@/top.qcow2"]),
    (".", ["compare", "top.qcow2", "base2.qcow2"]),
    (".", ["convert", "-O", "raw", "top.qcow2", "out.raw"]),
    (".", ["commit", "top.qcow2"]),
    (".", ["commit", "-b", "file:base.qcow2", "top.qcow2"]),
    (".", ["commit", "-b", "base.qcow2", "top.qcow2"]),  # a protocol name matches as a string only
    (".", ["commit", "-b", "mid.qcow2", "top.qcow2"]),
    (".", ["commit", "-b", "file:mid.qcow2", "top.qcow2"]),
    (".", ["commit", "-b", "file:mid.qcow2", "sub/top.qcow2"]),
    (".", ["commit", "-b", "mid.qcow2", "sub/top.qcow2"]),
    (".", ["commit", "-b", "file:base.qcow2", "sub/top.qcow2"]),
    (".", ["commit", "-d", "mid.qcow2"]),
    (".", ["rebase", "-b", "file:base2.qcow2", "-F", "qcow2", "top.qcow2"]),
    (".", ["rebase", "-b", "file:base2.qcow2", "-F", "qcow2", "sub/top.qcow2"]),
    (".", ["rebase", "-b", "file:sub/nothere.qcow2", "-F", "qcow2", "sub/top.qcow2"]),
    (".", ["rebase", "-u", "-b", "file:base2.qcow2", "-F", "qcow2", "sub/top.qcow2"]),
    (".", ["create", "-f", "qcow2", "-b", "file:base2.qcow2", "-F", "qcow2", "new.qcow2"]),
    ("sub", ["create", "-f", "qcow2", "-b", "file:base2.qcow2", "-F", "qcow2", "@/new.qcow2"]),
    (".", ["convert", "-O", "qcow2", "-B", "file:base2.qcow2", "-F", "qcow2", "top.qcow2", "new.qcow2"]),
]


def make_chain(d):
    def q(*a):
        subprocess.run(list(a), cwd=d, check=True, capture_output=True)
    os.mkdir(os.path.join(d, "sub"))
    q(Q72, "create", "-q", "-f", "qcow2", "base.qcow2", "1M")
    q(QIO, "-c", "write -P 7 0 64k", "base.qcow2")
    q(Q72, "create", "-q", "-f", "qcow2", "base2.qcow2", "1M")
    q(QIO, "-c", "write -P 6 0 192k", "base2.qcow2")
    q(Q72, "create", "-q", "-f", "qcow2", "-u", "-b", "file:base.qcow2", "-F", "qcow2", "mid.qcow2", "1M")
    q(QIO, "-c", "write -P 8 64k 64k", "mid.qcow2")
    q(Q72, "create", "-q", "-f", "qcow2", "-u", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2", "1M")
    q(QIO, "-c", "write -P 9 128k 64k", "top.qcow2")
    shutil.copy(os.path.join(d, "top.qcow2"), os.path.join(d, "sub", "top.qcow2"))
    q(Q72, "rebase", "-u", "-b", "file:mid.qcow2", "-F", "qcow2", "sub/top.qcow2")


def state(d):
    """Every image's backing name (as written) and content, read by qemu-img 7.2 alone."""
    out = []
    for root, _, files in os.walk(d):
        for f in sorted(files):
            p = os.path.join(root, f)
            rel = os.path.relpath(p, d)
            info = subprocess.run([Q72, "info", "-U", "--output=json", p], capture_output=True, text=True).stdout
            backing = [l.strip() for l in info.splitlines() if '"backing-filename"' in l]
            raw = os.path.join(os.path.dirname(d), "content.raw")
            subprocess.run([Q72, "convert", "-U", "-O", "raw", p, raw], capture_output=True)
            digest = hashlib.sha256(open(raw, "rb").read()).hexdigest()[:12] if os.path.exists(raw) else "-"
            if os.path.exists(raw):
                os.unlink(raw)
            out.append((rel, tuple(backing), digest))
    return sorted(out)


def run_case(template, scratch, cwd, args, tool, extra):
    w = os.path.join(scratch, "w")
    shutil.rmtree(w, ignore_errors=True)
    shutil.copytree(template, w)
    argv = [a.replace("@", w) for a in args]
    argv = [tool] + extra + argv[:1] + (["--allow-path", w] if tool == INSTAR else []) + argv[1:]
    r = subprocess.run(argv, capture_output=True, text=True, cwd=os.path.join(w, cwd))
    err = r.stderr.replace(tool + ":", "PROG:").replace(os.path.basename(tool) + ":", "PROG:")
    return r.returncode, r.stdout.replace(w, "W"), err.replace(w, "W"), state(w)


passed = failed = 0
with tempfile.TemporaryDirectory() as d:
    template = os.path.join(d, "template")
    os.mkdir(template)
    make_chain(template)
    scratch = os.path.join(d, "scratch")
    os.mkdir(scratch)
    for cwd, args in CASES:
        for oracle, version in ((Q72, "7.2.0"), (Q10, "10.0.2")):
            want = run_case(template, scratch, cwd, args, oracle, [])
            got = run_case(template, scratch, cwd, args, INSTAR, ["--qemu-version", version])
            if got == want:
                passed += 1
                continue
            failed += 1
            print(f"FAIL [{version}] (cwd {cwd}) {' '.join(args)}")
            for name, w, g in zip(("rc", "stdout", "stderr", "images"), want, got):
                if w != g:
                    print(f"  {name}: qemu-img {w!r}\n  {' ' * len(name)}  instar   {g!r}")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
