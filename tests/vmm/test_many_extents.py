#!/usr/bin/env python3
"""Every vmdk instar can create works in every command: a 30 TiB twoGbMaxExtentFlat vmdk (15360
extent files, each a device of the guest) through info (human, json; KVM and, where KVM is usable,
the process sandbox too), check, map, measure, convert and compare; the open-file limit's message;
create's 64 TiB bound; and info equal to qemu-img 7.2's and 10.0's on a 1000 GiB one (500
extents: qemu opens extents in quadratic time, over 10 minutes for 15360 on a loaded 2-core host,
so 30 TiB is not compared).

usage: test_many_extents.py INSTAR QEMU_IMG_7_2 QEMU_IMG_10
"""
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

SIZE_30T = 30 << 40
EXTENTS_30T = 15360


def run(cmd, cwd, env=None, limit=None):
    def lower():
        resource.setrlimit(resource.RLIMIT_NOFILE, limit)
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                       preexec_fn=lower if limit else None)
    return p.returncode, p.stdout, p.stderr


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    instar, q72, q10 = sys.argv[1:4]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < EXTENTS_30T + 2048:
        print("SKIPPED LOUDLY: the hard open-file limit (%d) is below what 15360 extents need" % hard)
        return 77
    results = []

    def expect(label, ok, detail=""):
        results.append((label, ok))
        if not ok:
            print("FAIL %s\n%s" % (label, detail))

    work = tempfile.mkdtemp(prefix="instar-extents-")
    try:
        rc, out, err = run([instar, "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentFlat",
                            "big.vmdk", "30T"], work)
        files = len(os.listdir(work))
        expect("create 30T", rc == 0 and files == EXTENTS_30T + 1, "rc %d, %d files\n%s" % (rc, files, err))

        rc, out, err = run([instar, "info", "big.vmdk"], work)
        expect("info 30T", rc == 0 and "virtual size: 30 TiB (%d bytes)" % SIZE_30T in out and
               "[%d]:" % (EXTENTS_30T - 1) in out and "filename: big-f15360.vmdk" in out, err)
        rc, out, err = run([instar, "info", "--output=json", "big.vmdk"], work)
        kvm_json = out
        ok = rc == 0
        if ok:
            j = json.loads(out)
            ok = j["virtual-size"] == SIZE_30T and len(j["format-specific"]["data"]["extents"]) == EXTENTS_30T
        expect("info --output=json 30T", ok, err)
        # The process sandbox again only where the run above could have used KVM: without a usable
        # /dev/kvm (or with INSTAR_SANDBOX=process) that run was already the process sandbox's.
        if os.access("/dev/kvm", os.R_OK | os.W_OK) and os.environ.get("INSTAR_SANDBOX") != "process":
            rc, out, err = run([instar, "info", "--output=json", "big.vmdk"], work,
                               env=dict(os.environ, INSTAR_SANDBOX="process"))
            expect("info 30T, process sandbox", rc == 0 and out == kvm_json, err)
        else:
            print("NOTE LOUDLY: /dev/kvm is not usable here; info 30T above ran in the process sandbox")

        rc, out, err = run([instar, "check", "big.vmdk"], work)
        expect("check 30T", rc == 0 and "No errors were found on the image." in out, out + err)
        rc, out, err = run([instar, "map", "--output=json", "big.vmdk"], work)
        ok = rc == 0
        if ok:
            m = json.loads(out)
            ok = m[0]["start"] == 0 and sum(e["length"] for e in m) == SIZE_30T
            ok = ok and all(a["start"] + a["length"] == b["start"] for a, b in zip(m, m[1:]))
        expect("map 30T", ok, err)
        rc, out, err = run([instar, "measure", "-O", "qcow2", "big.vmdk"], work)
        expect("measure 30T", rc == 0 and "required size:" in out, err)
        rc, out, err = run([instar, "convert", "-O", "qcow2", "big.vmdk", "copy.qcow2"], work)
        expect("convert 30T to qcow2", rc == 0, err)
        rc, out, err = run([instar, "compare", "big.vmdk", "copy.qcow2"], work)
        expect("compare 30T with its qcow2 copy", rc == 0 and out == "Images are identical.\n", out + err)

        # The hard limit too low for 15360 extents: the count and the limit, not EMFILE.
        rc, out, err = run([instar, "info", "big.vmdk"], work, limit=(1024, 8000))
        expect("info 30T under ulimit -Hn 8000", rc == 1 and "needs 15360 files open at once" in err and
               "(8000; raise it with ulimit -Hn)" in err, err)

        # create's bound: 64 TiB is 32768 extents, one byte more is refused before any file exists.
        rc, out, err = run([instar, "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentFlat",
                            "over.vmdk", str((64 << 40) + 512)], work)
        expect("create above 64 TiB refused", rc == 1 and "at most 32768 extent files" in err and
               not os.path.exists(os.path.join(work, "over.vmdk")), err)

        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        # qemu-img's own output on the largest set it opens in seconds.
        run([instar, "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentFlat", "mid.vmdk", "1000G"], work)
        for oracle, version in ((q72, "7.2.22"), (q10, "10.0.2")):
            if not os.access(oracle, os.X_OK):
                print("SKIPPED LOUDLY: oracle missing: %s" % oracle)
                continue
            for extra in ([], ["--output=json"]):
                want = run([oracle, "info"] + extra + ["mid.vmdk"], work)
                got = run([instar, "--qemu-version", version, "info"] + extra + ["mid.vmdk"], work)
                expect("info %s 1000G vs qemu-img %s" % (" ".join(extra), version),
                       want == got and want[0] == 0, "want %r\ngot %r" % (want[:2], got[:2]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = sum(1 for _, ok in results if not ok)
    print("%d passed, %d failed" % (len(results) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
