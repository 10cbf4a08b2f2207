#!/usr/bin/env python3
"""Sandbox starts per command that inspects an image first (docs/architecture.md, "One start where
the image stands alone"): a lone image is inspected and edited (resize, snapshot, bitmap), checked, mapped
or compared in one start; an overlay's first inspection is reused, not repeated; a refused size costs one start.
Counted under strace as KVM_CREATE_VM ioctls (the KVM sandbox) or execs of the process sandbox's
loader."""
import os, shutil, subprocess, sys, tempfile

instar, qemu_img = os.path.abspath(sys.argv[1]), sys.argv[2]
if shutil.which("strace") is None:
    print("SKIPPED LOUDLY: needs strace")
    sys.exit(77)
passed = failed = 0

def starts(args, cwd, want_rc):
    log = os.path.join(cwd, "strace.log")
    p = subprocess.run(["strace", "-f", "-e", "trace=ioctl,execve", "-o", log, instar] + args, cwd=cwd,
                       capture_output=True, text=True)
    with open(log) as f:
        n = sum(1 for line in f if "KVM_CREATE_VM" in line or
                ("execve(" in line and "instar-process-loader" in line))  # the loader by its path: one per start
    return p.returncode, n

def check(name, got, want):
    global passed, failed
    if got == want:
        passed += 1
    else:
        failed += 1
        print("FAIL %s: got %r, want %r" % (name, got, want))

def vsize(path):
    out = subprocess.run([qemu_img, "info", path], capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if l.startswith("virtual size")][0]

with tempfile.TemporaryDirectory() as d:
    run = lambda *a: subprocess.run(list(a), cwd=d, check=True, capture_output=True)
    run(qemu_img, "create", "-q", "-f", "qcow2", "t.qcow2", "1T")
    run(qemu_img, "create", "-q", "-f", "qcow2", "-b", "t.qcow2", "-F", "qcow2", "o.qcow2")
    run("truncate", "-s", "4M", "r.img")
    check("lone qcow2 grow", starts(["resize", "-q", "t.qcow2", "2T"], d, 0), (0, 1))
    check("lone qcow2 size", vsize(os.path.join(d, "t.qcow2")), "virtual size: 2 TiB (2199023255552 bytes)")
    check("relative grow", starts(["resize", "-q", "t.qcow2", "+1G"], d, 0), (0, 1))
    check("refused shrink", starts(["resize", "-q", "t.qcow2", "1G"], d, 1), (1, 1))
    check("raw -f", starts(["resize", "-q", "-f", "raw", "r.img", "+1M"], d, 0), (0, 1))
    check("raw size", os.path.getsize(os.path.join(d, "r.img")), 5 << 20)
    check("overlay", starts(["resize", "-q", "o.qcow2", "+1G"], d, 0), (0, 3))
    check("snapshot -c lone", starts(["snapshot", "-c", "s1", "t.qcow2"], d, 0), (0, 1))
    check("snapshot -a lone", starts(["snapshot", "-a", "s1", "t.qcow2"], d, 0), (0, 1))
    check("snapshot -c overlay", starts(["snapshot", "-c", "s1", "o.qcow2"], d, 0), (0, 3))
    check("bitmap --add lone", starts(["bitmap", "--add", "t.qcow2", "b1"], d, 0), (0, 1))
    check("bitmap --remove lone", starts(["bitmap", "--remove", "t.qcow2", "b1"], d, 0), (0, 1))
    # An overlay: the quick attempt's inspection reused, then the edit (bitmap opens no backing).
    check("bitmap --add overlay", starts(["bitmap", "--add", "o.qcow2", "b1"], d, 0), (0, 2))
    check("check lone", starts(["check", "-q", "t.qcow2"], d, 0), (0, 1))
    check("check lone -f", starts(["check", "-q", "-f", "qcow2", "t.qcow2"], d, 0), (0, 1))
    check("check overlay", starts(["check", "-q", "o.qcow2"], d, 0), (0, 3))
    check("check -r lone", starts(["check", "-q", "-r", "leaks", "t.qcow2"], d, 0), (0, 2))
    run(qemu_img, "create", "-q", "-f", "qcow2", "m.qcow2", "1G")
    check("map lone", starts(["map", "m.qcow2"], d, 0), (0, 1))
    check("map lone -f json", starts(["map", "-f", "qcow2", "--output=json", "m.qcow2"], d, 0), (0, 1))
    run(qemu_img, "create", "-q", "-f", "qcow2", "m2.qcow2", "1G")
    check("compare lone", starts(["compare", "m.qcow2", "m2.qcow2"], d, 0), (0, 1))
    check("compare lone -f -F", starts(["compare", "-f", "qcow2", "-F", "qcow2", "m.qcow2", "m2.qcow2"], d, 0), (0, 1))
    # An overlay: both first inspections reused (the overlay's backing costs one, the walk one).
    check("compare overlay", starts(["compare", "o.qcow2", "m.qcow2"], d, 0), (0, 3))
    # Past QUICK_MAP_MAX_VIRTUAL (1 TiB) the plan waits for info's size: two starts.
    check("map lone 2T", starts(["map", "t.qcow2"], d, 0), (0, 2))
    check("map overlay", starts(["map", "o.qcow2"], d, 0), (0, 3))
    chk = subprocess.run([qemu_img, "check", os.path.join(d, "t.qcow2")], capture_output=True)
    check("qemu-img check", chk.returncode, 0)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
