#!/usr/bin/env python3
"""Which cache modes make the written files durable, against qemu-img 7.2 and 10.0: every mode but
`unsafe` flushes what the command wrote before it returns (qemu: bdrv_close flushes a node and its
children; `unsafe` sets BDRV_O_NO_FLUSH). Counted under strace as fdatasync/fsync/syncfs calls on
the target's files (-y names each descriptor's file). convert -n into an existing qcow2, raw and
multi-file vmdk, commit -t (the base and the emptied top), rebase -t (safe and -u), amend -t and
check -r -T (a repair that writes): the same
"some flush or none" as qemu-img, and at least every file qemu-img flushes. A new convert target:
qemu-img's create step flushes the empty image in every mode, so there instar's own rule is checked
(its unnamed temporary is flushed before it is linked into place unless -t unsafe).
docs/convert.md "Cache modes"."""
import os, re, shutil, subprocess, sys, tempfile

instar, oracles = os.path.abspath(sys.argv[1]), sys.argv[2:]
if shutil.which("strace") is None:
    print("SKIPPED LOUDLY: needs strace")
    sys.exit(77)
passed = failed = 0
# The call as strace starts its line (with -f a call another thread interrupts ends in
# "<unfinished ...>", its result on a later "resumed" line without the file): the call made counts.
SYNC = re.compile(r"\b(?:fdatasync|fsync|syncfs)\((\d+)<([^>]*)>(\(deleted\))?")


def flushed(tool, args, cwd):
    """The basenames of the files in `cwd` a command flushed (a deleted temporary counts as 'new'),
    and its exit code."""
    log = os.path.join(cwd, "..", "strace.log")
    p = subprocess.run(["strace", "-f", "-y", "-e", "trace=fdatasync,fsync,syncfs", "-o", log, tool] + args,
                       cwd=cwd, capture_output=True, text=True)
    names = set()
    with open(log) as f:
        for line in f:
            m = SYNC.search(line)
            if not m:
                continue
            path = m.group(2)
            if os.path.dirname(path) != os.path.realpath(cwd):
                continue
            base = os.path.basename(path)
            names.add("new" if m.group(3) or base.startswith("#") or base.startswith(".") else base)
    return p.returncode, names, p.stderr


def check(name, ok, detail):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL %s: %s" % (name, detail))


def run(cwd, *a):
    subprocess.run(list(a), cwd=cwd, check=True, capture_output=True)


def fixture(d, qemu_img, kind):
    """Fresh target files for a case, in d (emptied first)."""
    for n in os.listdir(d):
        os.unlink(os.path.join(d, n))
    with open(os.path.join(d, "src.raw"), "wb") as f:
        f.write(bytes(range(256)) * (4 << 12))  # 4 MiB of data
    if kind == "qcow2":
        run(d, qemu_img, "create", "-q", "-f", "qcow2", "t.img", "4M")
    elif kind == "raw":
        run(d, qemu_img, "create", "-q", "-f", "raw", "t.img", "4M")
    elif kind == "vmdk":
        run(d, qemu_img, "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", "t.img", "4M")
    elif kind == "commit":
        run(d, qemu_img, "create", "-q", "-f", "qcow2", "base.qcow2", "4M")
        run(d, qemu_img, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2")
        run(d, qemu_img, "convert", "-n", "-f", "raw", "-O", "qcow2", "src.raw", "top.qcow2")
    elif kind == "lazy":  # refcounts never written (lazy_refcounts, qemu-io killed): check -r repairs
        run(d, qemu_img, "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "t.img", "4M")
        subprocess.run([os.path.join(os.path.dirname(qemu_img), "qemu-io"), "-f", "qcow2", "-c", "write -P 7 0 1M",
                        "-c", "sigraise 9", "t.img"], cwd=d, capture_output=True)
    elif kind == "rebase":
        run(d, qemu_img, "create", "-q", "-f", "qcow2", "base.qcow2", "4M")
        run(d, qemu_img, "convert", "-f", "raw", "-O", "qcow2", "src.raw", "base2.qcow2")
        run(d, qemu_img, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2")


MODES = ["unsafe", "writeback", "writethrough", "none", "directsync"]
CASES = [("new qcow2", None, lambda t: ["convert", "-t", t, "-f", "raw", "-O", "qcow2", "src.raw", "new.qcow2"],
          MODES)]
for kind in ("qcow2", "raw", "vmdk"):
    fmt = kind
    CASES.append(("-n %s" % kind, kind,
                  lambda t, fmt=fmt: ["convert", "-n", "-t", t, "-f", "raw", "-O", fmt, "src.raw", "t.img"],
                  MODES if kind == "qcow2" else ["unsafe", "writeback"]))
CASES.append(("commit", "commit", lambda t: ["commit", "-t", t, "-f", "qcow2", "top.qcow2"], ["unsafe", "writeback"]))
CASES.append(("amend", "qcow2", lambda t: ["amend", "-t", t, "-f", "qcow2", "-o", "lazy_refcounts=on", "t.img"],
              ["unsafe", "writeback"]))
CASES.append(("check -r all", "lazy", lambda t: ["check", "-r", "all", "-T", t, "t.img"], ["unsafe", "writeback"]))
CASES.append(("rebase", "rebase", lambda t: ["rebase", "-t", t, "-b", "base2.qcow2", "-F", "qcow2", "top.qcow2"],
              ["unsafe", "writeback"]))
CASES.append(("rebase -u", "rebase",
              lambda t: ["rebase", "-u", "-t", t, "-b", "base2.qcow2", "-F", "qcow2", "top.qcow2"],
              ["unsafe", "writeback"]))

with tempfile.TemporaryDirectory() as top:
    d = os.path.join(top, "w")
    os.mkdir(d)
    for oracle in oracles:
        for name, kind, args, modes in CASES:
            for mode in modes:
                label = "%s -t %s (%s)" % (name, mode, oracle)
                fixture(d, oracles[0], kind)
                q_rc, q_names, q_err = flushed(oracle, args(mode), d)
                fixture(d, oracles[0], kind)
                i_rc, i_names, i_err = flushed(instar, args(mode), d)
                check(label + " exit code", i_rc == q_rc, "instar %d (%s), qemu-img %d (%s)" %
                      (i_rc, i_err.strip(), q_rc, q_err.strip()))
                if kind is None:  # a new target: flushed (as "new") unless -t unsafe
                    check(label + " flushes or not", i_names == (set() if mode == "unsafe" else {"new"}),
                          "instar flushed %s" % sorted(i_names))
                    continue
                check(label + " flushes or not", bool(i_names) == bool(q_names),
                      "instar flushed %s, qemu-img %s" % (sorted(i_names), sorted(q_names)))
                check(label + " every file qemu-img flushes", q_names <= i_names,
                      "instar flushed %s, qemu-img %s" % (sorted(i_names), sorted(q_names)))

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
