#!/usr/bin/env python3
"""Differential CLI test: instar's messages, exit codes and `-o help` tables against qemu-img 7.2 and 10.0.

instar runs through a symlink named qemu-img, so both programs see the same basename; the directories
each one lives in are replaced by ARGV0DIR before comparing. Usage: test_cli_oracle.py INSTAR QEMU72 QEMU10
"""
import os
import subprocess
import sys
import tempfile

FORMATS = ["qcow2", "vmdk", "vpc", "vhdx", "raw"]

# (args, how): "exact" compares stdout, stderr and exit code; "first-line" compares exit code and the
# first stderr line up to instar's extra " (got '...')" detail; "no-72" skips qemu-img 7.2 (7.2 lacks
# the long options instar accepts in every profile, see docs/quirks.md).
CASES = [
    ([], "exact"),
    (["foo"], "exact"),
    (["--bogus"], "exact"),
    (["-z"], "exact"),
    (["create", "-z", "x", "1M"], "exact"),
    (["create", "-f"], "exact"),
    (["create", "--format"], "no-72"),
    (["create", "--bogus", "x"], "exact"),
    (["create"], "exact"),
    (["create", "-f", "bogus", "-o", "help"], "exact"),
    (["create", "-f", "qcow2", "-o", "size=1M,", "x"], "exact"),
    (["create", "-f", "qcow2", "-o", ",size=1M", "x"], "exact"),
    (["create", "-f", "qcow2", "-o", "size=1M", "-o", "help"], "exact"),
    (["create", "-fqcow2", "-o", "help"], "exact"),
    (["create", "-f", "qcow2", "-o", "size=1M,help"], "exact"),
    (["create", "-f", "qcow2", "-o", "?"], "exact"),
    (["create", "-f", "qcow2", "-o", "foo=bar", "x", "1M"], "first-line"),
    (["create", "-f", "qcow2", "-o", "lazy_refcounts=maybe", "x", "1M"], "first-line"),
    (["create", "-f", "qcow2", "-o", "refcount_bits=x", "x", "1M"], "first-line"),
    (["create", "-f", "qcow2", "-o", "cluster_size=abc", "x", "1M"], "first-line"),
    (["create", "-f", "raw", "-o", "size=16E", "x"], "first-line"),
    (["create", "--help"], "no-72"),
]
for fmt in FORMATS:
    CASES.append((["create", "-f", fmt, "-o", "help"], "exact"))
    CASES.append((["create", "-f", fmt, "-o", "help", "target.img"], "exact"))
# "chain": run in a directory holding l/t.qcow2 -> l/p.qcow2 -> l/gp.qcow2 with l/gp.qcow2 deleted:
# every command that opens the backing chain says qemu's "Could not open 'l/t.qcow2': Could not open
# backing file: Could not open backing file: Could not open 'l/gp.qcow2': No such file or directory",
# info --backing-chain its own words, plain info and rebase -u nothing.
for args in (["convert", "-O", "raw", "l/t.qcow2", "o.raw"], ["info", "--backing-chain", "l/t.qcow2"],
             ["info", "l/t.qcow2"], ["map", "l/t.qcow2"], ["compare", "l/t.qcow2", "l/p.qcow2"],
             ["check", "l/t.qcow2"], ["measure", "-O", "qcow2", "l/t.qcow2"],
             ["amend", "-o", "lazy_refcounts=on", "l/t.qcow2"], ["commit", "l/p.qcow2"],
             ["resize", "l/t.qcow2", "2M"], ["snapshot", "-l", "l/t.qcow2"], ["dd", "if=l/t.qcow2", "of=o.raw"],
             ["rebase", "-u", "-b", "", "l/p.qcow2"], ["convert", "-n", "-f", "raw", "-O", "qcow2", "o.raw", "l/t.qcow2"]):
    CASES.append((args, "chain"))

# "image": run in a directory holding a.qcow2 (1 MiB). An option given again: getopt's rule, the last
# value wins and a flag repeats harmlessly, except that qemu checks some values as getopt returns them
# (-r, -S, -m, -g, --start-offset, --max-length, 10.0's --output), so an earlier bad one is refused.
for args in (["info", "-U", "-U", "--backing-chain", "--backing-chain", "a.qcow2"],
             ["info", "--image-opts", "--image-opts", "file.filename=a.qcow2"],
             ["info", "-f", "raw", "-f", "qcow2", "--output=json", "--output=human", "a.qcow2"],
             ["info", "--output=bogus", "--output=json", "a.qcow2"],
             ["check", "-q", "-q", "-r", "leaks", "-r", "all", "a.qcow2"],
             ["check", "-r", "bogus", "-r", "all", "a.qcow2"],
             ["check", "--output=bogus", "--output=json", "a.qcow2"],
             ["compare", "-p", "-p", "-s", "-s", "-f", "raw", "-f", "qcow2", "a.qcow2", "a.qcow2"],
             ["map", "--force-share", "--force-share", "--start-offset=1k", "--start-offset=0", "a.qcow2"],
             ["map", "--start-offset=bogus", "--start-offset=0", "a.qcow2"],
             ["map", "--max-length=bogus", "--max-length=1M", "a.qcow2"],
             ["map", "--output=bogus", "--output=json", "a.qcow2"],
             ["convert", "-p", "-p", "-c", "-c", "-O", "raw", "-O", "qcow2", "-S", "4k", "-S", "8k", "-m", "3",
              "-m", "2", "a.qcow2", "o.qcow2"],
             ["convert", "-S", "bogus", "-S", "4k", "-O", "raw", "a.qcow2", "o.raw"],
             ["convert", "-m", "bogus", "-m", "2", "-O", "raw", "a.qcow2", "o.raw"],
             ["convert", "-r", "bogus", "-r", "1M", "-O", "raw", "a.qcow2", "o.raw"],
             ["commit", "-r", "bogus", "-r", "1M", "a.qcow2"],
             ["bitmap", "--add", "-g", "bogus", "-g", "64k", "a.qcow2", "b1"],
             ["bitmap", "--add", "-g", "64k", "-g", "128k", "a.qcow2", "b1"],
             ["resize", "-q", "-q", "a.qcow2", "2M"],
             ["snapshot", "-l", "-l", "a.qcow2"],
             ["create", "-f", "raw", "-f", "qcow2", "n.qcow2", "1M"]):
    CASES.append((args, "image"))


def run(prog, args, cwd, env):
    p = subprocess.run([prog] + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    d = os.path.dirname(prog)
    return p.returncode, p.stdout.replace(d, "ARGV0DIR"), p.stderr.replace(d, "ARGV0DIR")


def make_chain(qemu_img, work):
    """l/t.qcow2 -> l/p.qcow2 -> l/gp.qcow2 (deleted), and o.raw, made by qemu-img."""
    os.mkdir(os.path.join(work, "l"))
    for cmd in (["create", "-q", "-f", "qcow2", "l/gp.qcow2", "1M"],
                ["create", "-q", "-f", "qcow2", "-b", "gp.qcow2", "-F", "qcow2", "l/p.qcow2"],
                ["create", "-q", "-f", "qcow2", "-b", "p.qcow2", "-F", "qcow2", "l/t.qcow2"],
                ["create", "-q", "-f", "raw", "o.raw", "1M"]):
        subprocess.run([qemu_img] + cmd, cwd=work, check=True, capture_output=True, timeout=60)
    os.unlink(os.path.join(work, "l", "gp.qcow2"))


def strip_detail(line):
    cut = line.find(" (got '")
    return line if cut < 0 else line[:cut]


def main():
    instar, q72, q10 = sys.argv[1:4]
    missing = [q for q in (q72, q10) if not os.access(q, os.X_OK)]
    if missing:
        print("SKIPPED LOUDLY: qemu-img oracle(s) missing: %s (run tools/install-deps.sh)" % ", ".join(missing))
        return 77
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        link_dir = os.path.join(tmp, "bin")
        os.mkdir(link_dir)
        link = os.path.join(link_dir, "qemu-img")
        os.symlink(os.path.abspath(instar), link)
        for oracle, version in ((q72, "7.2.22"), (q10, "10.0.2")):
            env = dict(os.environ, INSTAR_QEMU_VERSION=version)
            for args, how in CASES:
                if how == "no-72" and version.startswith("7."):
                    continue
                work_q = tempfile.mkdtemp(dir=tmp)
                work_i = tempfile.mkdtemp(dir=tmp)
                if how == "chain":
                    for w in (work_q, work_i):
                        make_chain(q72, w)
                if how == "image":
                    for w in (work_q, work_i):
                        subprocess.run([q72, "create", "-q", "-f", "qcow2", "a.qcow2", "1M"], cwd=w, check=True,
                                       capture_output=True, timeout=60)
                want = run(oracle, args, work_q, env)
                got = run(link, args, work_i, env)
                if how == "first-line":
                    want = (want[0], "", strip_detail(want[2].split("\n")[0]))
                    got = (got[0], "", strip_detail(got[2].split("\n")[0]))
                if want == got:
                    passed += 1
                else:
                    failed += 1
                    print("FAIL qemu-img %s %s\n  want %r\n  got  %r" % (version, args, want, got))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
