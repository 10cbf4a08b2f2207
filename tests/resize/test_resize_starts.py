#!/usr/bin/env python3
"""Sandbox starts per command that inspects an image first (docs/architecture.md, "One start where
the image stands alone" and "... and over a backing chain"): a lone image is inspected and edited (resize,
snapshot, bitmap), checked, mapped, measured or compared in one start, an overlay checked or `info --backing-chain`ed in
one; a lone source converted (or dd'ed) into a new image, and `rebase -u`, in one start; the chain commit,
rebase and amend open inspected in one start; an overlay's first inspection is reused,
not repeated; a refused size costs one start.
Counted under strace as KVM_CREATE_VM ioctls (the KVM sandbox) or execs of the process sandbox's
loader."""
import os, shutil, subprocess, sys, tempfile

instar, qemu_img = os.path.abspath(sys.argv[1]), sys.argv[2]
if shutil.which("strace") is None:
    print("SKIPPED LOUDLY: needs strace")
    sys.exit(77)
passed = failed = 0

def starts(args, cwd, want_rc, env=None):
    log = os.path.join(cwd, "strace.log")
    p = subprocess.run(["strace", "-f", "-e", "trace=ioctl,execve", "-o", log, instar] + args, cwd=cwd,
                       capture_output=True, text=True, env=None if env is None else dict(os.environ, **env))
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
    # An overlay: its backing chain opened in the same start (INSTAR_EDIT_INFO_CHAINS).
    check("overlay", starts(["resize", "-q", "o.qcow2", "+1G"], d, 0), (0, 1))
    check("snapshot -c lone", starts(["snapshot", "-c", "s1", "t.qcow2"], d, 0), (0, 1))
    check("snapshot -a lone", starts(["snapshot", "-a", "s1", "t.qcow2"], d, 0), (0, 1))
    check("snapshot -c overlay", starts(["snapshot", "-c", "s1", "o.qcow2"], d, 0), (0, 1))
    check("snapshot -a overlay", starts(["snapshot", "-a", "s1", "o.qcow2"], d, 0), (0, 1))
    check("bitmap --add lone", starts(["bitmap", "--add", "t.qcow2", "b1"], d, 0), (0, 1))
    check("bitmap --remove lone", starts(["bitmap", "--remove", "t.qcow2", "b1"], d, 0), (0, 1))
    # An overlay: bitmap opens no backing file (as qemu-img), so the backing reference does not
    # stop the quick attempt (INSTAR_EDIT_INFO_NO_BACKING).
    check("bitmap --add overlay", starts(["bitmap", "--add", "o.qcow2", "b1"], d, 0), (0, 1))
    run(qemu_img, "create", "-q", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2", "og.qcow2", "1G")
    check("bitmap --add overlay, backing missing", starts(["bitmap", "--add", "og.qcow2", "b1"], d, 0), (0, 1))
    check("check lone", starts(["check", "-q", "t.qcow2"], d, 0), (0, 1))
    check("check lone -f", starts(["check", "-q", "-f", "qcow2", "t.qcow2"], d, 0), (0, 1))
    # A chain in one start: the guest asks for each backing file as it runs (INSTAR_HC_NEXT_IMAGE).
    check("check overlay", starts(["check", "-q", "o.qcow2"], d, 0), (0, 1))
    run(qemu_img, "create", "-q", "-f", "qcow2", "-b", "o.qcow2", "-F", "qcow2", "o2.qcow2")
    check("check three levels", starts(["check", "-q", "o2.qcow2"], d, 0), (0, 1))
    check("info --backing-chain", starts(["info", "--backing-chain", "o2.qcow2"], d, 0), (0, 1))
    check("info plain overlay", starts(["info", "o2.qcow2"], d, 0), (0, 1))
    # A backing file whose format's module is not in the run: level by level, the top's inspection
    # reused (the quick attempt, the raw backing's inspection, the check).
    run(qemu_img, "create", "-q", "-f", "qcow2", "-b", "r.img", "-F", "raw", "or.qcow2")
    check("check overlay of raw", starts(["check", "-q", "or.qcow2"], d, 0), (0, 3))
    check("info --backing-chain of raw", starts(["info", "--backing-chain", "or.qcow2"], d, 0), (0, 2))
    # A missing backing file: the quick attempt stops at it; the ordinary path words the error.
    run(qemu_img, "create", "-q", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2", "om.qcow2", "1G")
    check("check overlay missing", starts(["check", "-q", "om.qcow2"], d, 1), (1, 1))
    check("check -r lone", starts(["check", "-q", "-r", "leaks", "t.qcow2"], d, 0), (0, 2))
    run(qemu_img, "create", "-q", "-f", "qcow2", "m.qcow2", "1G")
    check("map lone", starts(["map", "m.qcow2"], d, 0), (0, 1))
    check("map lone -f json", starts(["map", "-f", "qcow2", "--output=json", "m.qcow2"], d, 0), (0, 1))
    run(qemu_img, "create", "-q", "-f", "qcow2", "m2.qcow2", "1G")
    check("compare lone", starts(["compare", "m.qcow2", "m2.qcow2"], d, 0), (0, 1))
    check("compare lone -f -F", starts(["compare", "-f", "qcow2", "-F", "qcow2", "m.qcow2", "m2.qcow2"], d, 0), (0, 1))
    # An overlay: its backing file joins the plan in the guest (INSTAR_COMPARE_CHAIN_FROM_INFO).
    run(qemu_img, "create", "-q", "-f", "qcow2", "-b", "m.qcow2", "-F", "qcow2", "mo.qcow2")
    run(qemu_img, "create", "-q", "-f", "qcow2", "-b", "mo.qcow2", "-F", "qcow2", "mo2.qcow2")
    check("compare overlay", starts(["compare", "mo.qcow2", "m.qcow2"], d, 0), (0, 1))
    check("compare two overlays", starts(["compare", "mo2.qcow2", "mo.qcow2"], d, 0), (0, 1))
    # A raw backing (not the top's format): the quick attempt, the raw's inspection, the compare.
    check("compare overlay of raw", starts(["compare", "or.qcow2", "m.qcow2"], d, 0), (0, 3))
    # Past QUICK_COMPARE_MAX_VIRTUAL: level by level (o.qcow2 is 1 TiB).
    check("compare overlay 1T", starts(["compare", "o.qcow2", "t.qcow2"], d, 0), (0, 3))
    # Past QUICK_MAP_MAX_VIRTUAL (1 TiB) the plan waits for info's size: two starts.
    check("map lone 2T", starts(["map", "t.qcow2"], d, 0), (0, 2))
    # An overlay within QUICK_MAP_MAX_VIRTUAL: one start (INSTAR_MAP_PLAN_CHAIN_FROM_INFO); o.qcow2's
    # 2 TiB does not fit it: level by level.
    check("map overlay", starts(["map", "mo.qcow2"], d, 0), (0, 1))
    check("map overlay 2T", starts(["map", "o.qcow2"], d, 0), (0, 3))
    check("map overlay of raw", starts(["map", "or.qcow2"], d, 0), (0, 3))
    # measure walks in the start that inspects (INSTAR_MEASURE_PLAN_FROM_INFO), over a chain of the
    # top's format too; a raw target needs no walk; past QUICK_MEASURE_MAX_VIRTUAL (1 TiB) and over a
    # raw backing, level by level as map.
    check("measure lone", starts(["measure", "-O", "qcow2", "m.qcow2"], d, 0), (0, 1))
    check("measure overlay", starts(["measure", "-O", "qcow2", "-o", "cluster_size=4k", "mo2.qcow2"], d, 0), (0, 1))
    check("measure -O raw", starts(["measure", "-O", "raw", "m.qcow2"], d, 0), (0, 1))
    check("measure lone 2T", starts(["measure", "-O", "qcow2", "t.qcow2"], d, 0), (0, 2))
    check("measure overlay of raw", starts(["measure", "-O", "qcow2", "or.qcow2"], d, 0), (0, 3))
    # convert of one source into a new image inspects and copies in one start
    # (INSTAR_CONVERT_PLAN_FROM_INFO), over a chain of the source's format too; anything else takes
    # the ordinary path, reusing the inspection, and the quick attempt's target file is gone (named
    # temporaries here, so a stray one would show).
    named = {"INSTAR_NO_TMPFILE": "1"}
    def stray():
        return sorted(n for n in os.listdir(d) if ".instar-" in n)
    check("convert lone", starts(["convert", "-O", "qcow2", "m.qcow2", "c1.qcow2"], d, 0, named), (0, 1))
    check("convert raw -f", starts(["convert", "-f", "raw", "-O", "vmdk", "r.img", "c2.vmdk"], d, 0, named), (0, 1))
    check("convert overlay", starts(["convert", "-O", "raw", "mo2.qcow2", "c3.raw"], d, 0, named), (0, 1))
    check("convert -c -p", starts(["convert", "-c", "-p", "-O", "qcow2", "mo.qcow2", "c4.qcow2"], d, 0, named), (0, 1))
    for c in ("c1.qcow2", "c4.qcow2"):
        cmp = subprocess.run([qemu_img, "compare", "m.qcow2", c], cwd=d, capture_output=True)
        check("convert content " + c, cmp.returncode, 0)
    check("convert vmdk size", vsize(os.path.join(d, "c2.vmdk")), "virtual size: 5 MiB (5242880 bytes)")
    # dd too: the guest takes img_dd's window of the size it inspected (instar/guest/dd_window.h).
    check("dd lone", starts(["dd", "-O", "raw", "bs=64k", "count=3", "skip=1", "if=m.qcow2", "of=c9.raw"], d, 0, named),
          (0, 1))
    check("dd window size", os.path.getsize(os.path.join(d, "c9.raw")), 2 * 65536)
    check("dd skip past the end", starts(["dd", "-O", "raw", "bs=1M", "skip=4096", "if=m.qcow2", "of=c10.raw"], d, 0,
                                         named), (0, 1))
    check("dd skip past the end size", os.path.getsize(os.path.join(d, "c10.raw")), 0)
    # Past QUICK_CONVERT_MAX_VIRTUAL (4 GiB): the inspection reused, the copy in a second start.
    check("convert 2T", starts(["convert", "-O", "qcow2", "t.qcow2", "c5.qcow2"], d, 0, named), (0, 2))
    check("convert 2T size", vsize(os.path.join(d, "c5.qcow2")), vsize(os.path.join(d, "t.qcow2")))
    # A raw backing (not the source's format): the quick attempt, the raw's inspection, the copy.
    check("convert overlay of raw", starts(["convert", "-O", "qcow2", "or.qcow2", "c6.qcow2"], d, 0, named), (0, 3))
    # -B: the ordinary path from the start (the target's backing chain is opened before the plan).
    check("convert -B", starts(["convert", "-O", "qcow2", "-B", "m.qcow2", "-F", "qcow2", "mo.qcow2", "c7.qcow2"],
                               d, 0, named), (0, 4))
    # A missing backing file: the quick attempt stops at it and the ordinary path words the error.
    check("convert overlay missing", starts(["convert", "-O", "qcow2", "om.qcow2", "c8.qcow2"], d, 1, named), (1, 1))
    check("convert no target", os.path.exists(os.path.join(d, "c8.qcow2")), False)
    check("convert no stray temporaries", stray(), [])
    # rebase -u opens the image alone (no backing chain) and switches in the start that inspects it;
    # without -F the switch fails after the open, on the ordinary path.
    check("rebase -u", starts(["rebase", "-u", "-b", "m2.qcow2", "-F", "qcow2", "mo.qcow2"], d, 0), (0, 1))
    check("rebase -u detach", starts(["rebase", "-u", "-b", "", "c1.qcow2"], d, 0), (0, 1))
    check("rebase -u no -F", starts(["rebase", "-u", "-b", "m.qcow2", "mo.qcow2"], d, 1), (1, 1))
    check("rebase -u back", starts(["rebase", "-u", "-b", "m.qcow2", "-F", "qcow2", "mo.qcow2"], d, 0), (0, 1))
    # The commands that open a chain before a run of their own inspect a chain of plain images of one
    # format in one start (open_chain_at_once): commit (chain, copy, emptying), a safe rebase (the
    # image's chain, the new backing's, the copy, the switch), amend (chain, edit).
    run(qemu_img, "create", "-q", "-f", "qcow2", "cb.qcow2", "64M")
    run(qemu_img, "create", "-q", "-f", "qcow2", "-b", "cb.qcow2", "-F", "qcow2", "co.qcow2")
    check("commit overlay", starts(["commit", "-q", "co.qcow2"], d, 0), (0, 3))
    check("commit -d overlay", starts(["commit", "-q", "-d", "co.qcow2"], d, 0), (0, 2))
    run(qemu_img, "create", "-q", "-f", "qcow2", "-b", "cb.qcow2", "-F", "qcow2", "cn.qcow2")
    check("rebase onto an overlay", starts(["rebase", "-b", "cn.qcow2", "-F", "qcow2", "co.qcow2"], d, 0), (0, 4))
    check("amend overlay", starts(["amend", "-o", "lazy_refcounts=on", "co.qcow2"], d, 0), (0, 2))
    chk = subprocess.run([qemu_img, "check", os.path.join(d, "t.qcow2")], capture_output=True)
    check("qemu-img check", chk.returncode, 0)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
