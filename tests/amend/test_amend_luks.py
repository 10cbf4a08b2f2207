#!/usr/bin/env python3
"""Differential test of `instar amend` of LUKS key slots (raw luks: state, keyslot, new-secret,
old-secret, iter-time, --force; a LUKS qcow2's encrypt.* ones, alone and with other qcow2 keys)
against qemu-img 7.2 and 10.0.

The luks images are made by qemu-img 7.2 (iter-time=10, retried through qemu's transient PBKDF
timing failure) and given data with qemu-io. For every (image, amend command) pair each oracle
amends one copy and instar (named qemu-img, under the oracle's --qemu-version) another: stdout,
stderr and exit status must be equal. A refused command must leave the file byte-identical. A
change must leave the same key slots active (qemu-img info --output=json, without the iteration
counts, which qemu calibrates on the machine) and the same passphrases opening the image: qemu-img
compare against the original data with each of the test's passphrases, through qemu-img 7.2 and
10.0 and instar. Then crash tests: adding and erasing a key slot killed at every file-changing
hypercall (INSTAR_TEST_KILL_AT_WRITE) leave an image whose old key still opens it, with the old
or the new slot table and the same content; replacing the only key with --force leaves one the old
or the new key opens.

Usage: test_amend_luks.py INSTAR QEMU72 QEMU10 QEMU_IO
"""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from oracle_retry import run_fixture, run_in_place  # noqa: E402
from differential_support import start_with_oracles  # noqa: E402
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from amend_images import Images  # noqa: E402

# The passphrases: s0 is each image's key (key-secret), s1 and s2 others.
SECRETS = {"s0": "old", "s1": "new", "s2": "other"}
OBJECTS = sum((["--object", "secret,id=%s,data=%s" % (k, v)] for k, v in SECRETS.items()), [])
F = "img.luks"
# Images whose name starts with "q" are qcow2 (encrypt.format=luks unless named otherwise).
FQ = "img.qcow2"


def fname(image):
    return FQ if image.startswith("q") else F


def opts(image, secret, path=None):
    if image.startswith("q"):
        return "driver=qcow2,encrypt.key-secret=%s,file.filename=%s" % (secret, path or FQ)
    return "driver=luks,key-secret=%s,file.filename=%s" % (secret, path or F)


def add_slot(secret, extra="", image="one"):
    prefix = "encrypt." if image.startswith("q") else ""
    keys = "state=active,new-secret=%s,iter-time=10%s" % (secret, extra)
    return ["QIMG", "amend"] + OBJECTS + ["--image-opts", "-o", ",".join(prefix + k for k in keys.split(",")),
                                          opts(image, "s0")]


def qcow2_luks(extra=""):
    return [["QIMG", "create", "-q", "-f", "qcow2"] + OBJECTS +
            ["-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10" + extra, FQ, "1M"],
            ["QIO"] + OBJECTS + ["--image-opts", "-c", "write -P 7 0 64k", "-c", "write -P 9 512k 4k",
                                 opts("q", "s0")]]


# name -> setup commands (QIMG: qemu-img 7.2, QIO: qemu-io 7.2), run in the image's directory.
IMAGES = {
    # slot 0: "old"
    "one": [["QIMG", "create", "-q", "-f", "luks"] + OBJECTS + ["-o", "key-secret=s0,iter-time=10", F, "1M"],
            ["QIO"] + OBJECTS + ["--image-opts", "-c", "write -P 7 0 64k", "-c", "write -P 9 512k 4k",
                                 opts("one", "s0")]],
    # slot 0: "old", slot 1: "other"
    "two": "one", "two+": [add_slot("s2")],
    # slots 0 and 1: "old"
    "same": "one", "same+": [add_slot("s0")],
    # all eight slots active: "old", then "other" in 1..7
    "full": "one", "full+": [add_slot("s2") for _ in range(7)],
    # qcow2, encrypt.format=luks: slot 0 "old"; then slot 1 "other"; compat=0.10; legacy aes; none
    "q-one": qcow2_luks(),
    "q-two": "q-one", "q-two+": [add_slot("s2", image="q")],
    "q-v2": qcow2_luks(",compat=0.10"),
    "q-aes": [["QIMG", "create", "-q", "-f", "qcow2"] + OBJECTS +
              ["-o", "encrypt.format=aes,encrypt.key-secret=s0", FQ, "1M"]],
    "q-plain": [["QIMG", "create", "-q", "-f", "qcow2", FQ, "1M"]],
}

# Refusals: (image, amend arguments after the objects and --image-opts); the image name is last.
REFUSED = [
    ("one", ["-o", "iter-time=10"]),
    ("one", ["-o", "state=foo"]),
    ("one", ["-o", "state=active"]),
    ("one", ["-o", "state=active,new-secret=s1,old-secret=s0"]),
    ("one", ["-o", "state=active,new-secret=s1,keyslot=8"]),
    ("one", ["-o", "state=active,new-secret=s1,keyslot=-1"]),
    ("one", ["-o", "state=active,new-secret=s1,keyslot=0"]),
    ("one", ["-o", "state=active,new-secret=zz,keyslot=0"]),
    ("one", ["-o", "state=active,new-secret=zz"]),
    ("one", ["-o", "state=active,new-secret=zz,keyslot=9"]),
    ("one", ["-o", "keyslot=x,state=active"]),
    ("one", ["-o", "state=active,new-secret=s1,iter-time=x"]),
    ("one", ["-o", "state=inactive,new-secret=s1"]),
    ("one", ["-o", "state=inactive,iter-time=10"]),
    ("one", ["-o", "state=inactive"]),
    ("one", ["-o", "state=inactive,keyslot=1"]),
    ("one", ["-o", "state=inactive,keyslot=0"]),
    ("one", ["-o", "state=inactive,old-secret=s1"]),
    ("one", ["-o", "state=inactive,old-secret=s0"]),
    ("one", ["-o", "state=inactive,old-secret=zz"]),
    ("one", ["-o", "state=inactive,keyslot=9"]),
    ("one", ["-o", "state=inactive,keyslot=-1"]),
    ("one", ["-o", "state=active,new-secret=s1,keyslot=4294967296,iter-time=10"]),
    ("one", ["-o", "state=inactive,keyslot=1,old-secret=zz"]),
    ("one", ["-o", "state=inactive,keyslot=1,old-secret=s1"]),
    ("two", ["-o", "state=inactive,keyslot=1,old-secret=s0"]),
    ("two", ["-o", "state=inactive,keyslot=2"]),
    ("same", ["-o", "state=inactive,old-secret=s0"]),
    ("full", ["-o", "state=active,new-secret=s1,iter-time=10"]),
    ("full", ["-o", "state=active,new-secret=s1,keyslot=3,iter-time=10"]),
    # qcow2: qemu's messages name the keys without "encrypt."; its option loop's checks (encryption
    # present and LUKS, compat, refcount width) come before the key-slot ones, the upgrade too.
    ("q-one", ["-o", "encrypt.keyslot=1"]),
    ("q-one", ["-o", "encrypt.state=foo"]),
    ("q-one", ["-o", "encrypt.state=active"]),
    ("q-one", ["-o", "encrypt.state=inactive,encrypt.new-secret=s1"]),
    ("q-one", ["-o", "encrypt.state=active,encrypt.new-secret=s1,encrypt.keyslot=0"]),
    ("q-one", ["-o", "encrypt.state=active,encrypt.new-secret=zz"]),
    ("q-one", ["-o", "encrypt.state=inactive,encrypt.keyslot=0"]),
    ("q-one", ["-o", "encrypt.state=inactive,encrypt.keyslot=9"]),
    ("q-one", ["-o", "encrypt.state=inactive,encrypt.old-secret=s0"]),
    ("q-one", ["-o", "compat=foo,encrypt.state=foo"]),
    ("q-one", ["-o", "encrypt.state=foo,refcount_bits=3"]),
    ("q-v2", ["-o", "compat=1.1,encrypt.state=foo"]),
    ("q-aes", ["-o", "encrypt.state=active,encrypt.new-secret=s1"]),
    ("q-plain", ["-o", "encrypt.state=foo"]),
]

# Changes: (image, amend arguments).
CHANGED = [
    ("one", ["-o", "state=active,new-secret=s1,iter-time=10"]),
    ("one", ["-o", "state=active,new-secret=s1,keyslot=5,iter-time=10"]),
    ("one", ["-o", "state=active,new-secret=s1,iter-time=0"]),
    ("one", ["--force", "-o", "state=active,new-secret=s1,keyslot=0,iter-time=10"]),
    ("one", ["--force", "-o", "state=inactive,keyslot=0"]),
    ("one", ["--force", "-o", "state=inactive,keyslot=3"]),
    ("two", ["-o", "state=inactive,keyslot=1"]),
    ("two", ["-o", "state=inactive,keyslot=4294967297"]),
    ("two", ["-o", "state=inactive,keyslot=0"]),
    ("two", ["-o", "state=inactive,old-secret=s0"]),
    ("two", ["-o", "state=inactive,old-secret=s2"]),
    ("two", ["-o", "state=inactive,keyslot=1,old-secret=s2"]),
    ("same", ["--force", "-o", "state=inactive,old-secret=s0"]),
    ("same", ["-o", "state=inactive,keyslot=1"]),
    ("full", ["--force", "-o", "state=active,new-secret=s1,keyslot=3,iter-time=10"]),
    ("full", ["-o", "state=inactive,old-secret=s2"]),
    ("q-one", ["-o", "encrypt.state=active,encrypt.new-secret=s1,encrypt.iter-time=10"]),
    ("q-one", ["--force", "-o", "encrypt.state=active,encrypt.new-secret=s1,encrypt.keyslot=0,encrypt.iter-time=10"]),
    ("q-one", ["-p", "-o", "encrypt.state=active,encrypt.new-secret=s1,encrypt.iter-time=10,refcount_bits=8"]),
    ("q-two", ["-o", "encrypt.state=inactive,encrypt.keyslot=1"]),
    ("q-two", ["-o", "encrypt.state=inactive,encrypt.old-secret=s2"]),
    ("q-v2", ["-o", "compat=1.1,encrypt.state=active,encrypt.new-secret=s1,encrypt.iter-time=10"]),
]

# Crash tests: (image, amend arguments); the old key (s0) must open the image at every kill point.
CRASH = [
    ("one", ["-o", "state=active,new-secret=s1,iter-time=10"]),
    ("two", ["-o", "state=inactive,keyslot=1"]),
    ("two", ["-o", "state=inactive,old-secret=s2"]),
    ("q-one", ["-o", "encrypt.state=active,encrypt.new-secret=s1,encrypt.iter-time=10"]),
    ("q-two", ["-o", "encrypt.state=inactive,encrypt.keyslot=1"]),
    # --force over the only active slot: the old or the new key opens the image at every kill point
    # (qemu's in-place order has one where neither does; instar goes through a free slot).
    ("one", ["--force", "-o", "state=active,new-secret=s1,keyslot=0,iter-time=10"]),
    ("q-one", ["--force", "-o", "encrypt.state=active,encrypt.new-secret=s1,encrypt.keyslot=0,encrypt.iter-time=10"]),
]


def run(cmd, cwd, env=None):
    p = run_fixture(cmd, cwd=cwd, env=env, timeout=300)
    return p.returncode, p.stdout, p.stderr


def slots(q, d, env, image):
    """The key slots' active flags and key offsets (qemu-img info), with a qcow2's compat and refcount
    width, or the error."""
    rc, out, err = run([q, "info", "--output=json", fname(image)], d, env)
    if rc != 0:
        return "info failed: " + err
    data = json.loads(out)["format-specific"]["data"]
    if not image.startswith("q"):
        return [(s["active"], s["key-offset"]) for s in data["slots"]]
    crypt = data.get("encrypt", {})
    return (data["compat"], data["refcount-bits"],
            [(s["active"], s["key-offset"]) for s in crypt.get("slots", [])])


def main():
    args, status = start_with_oracles(__doc__, 4)
    if args is None:
        return status
    instar, q72, q10, qio = args[:4]
    env = dict(os.environ, TZ="UTC", LC_ALL="C")
    passed = failed = 0
    work = tempfile.mkdtemp(prefix="instar-amend-luks-")
    os.mkdir(os.path.join(work, "bin"))
    qemu_named = os.path.join(work, "bin", "qemu-img")
    os.symlink(os.path.abspath(instar), qemu_named)
    only = os.environ.get("AMEND_ONLY")
    images = Images(work, IMAGES, run, env, q72, qio)
    master, fresh = images.master, images.fresh

    def fail(msg):
        nonlocal failed
        failed += 1
        print("FAIL " + msg)

    def opens(q, d, name, extra=()):
        """Which passphrases open the image in d (its data compared with the master's)."""
        result = []
        for s in sorted(SECRETS):
            rc, out, err = run([q] + list(extra) + ["compare"] + OBJECTS + ["--image-opts", opts(name, s),
                               opts(name, "s0", os.path.join(master(name), fname(name)))], d, env)
            if rc == 0:
                result.append(s)
            elif "Invalid password, cannot unlock any keyslot" not in err:
                return "compare with %s: rc %d %s%s" % (s, rc, out, err)
        return result

    def amend(q, version, d, args, name):
        """Amends the fresh copy of image name in d; a retry after qemu's transient PBKDF failure
        starts again from a fresh copy."""
        cmd = [q] + (["--qemu-version", version] if version else []) + ["amend"] + OBJECTS + \
            ["--image-opts"] + args + [opts(name, "s0")]
        p = run_in_place(cmd, lambda: fresh(name, os.path.basename(d)), cwd=d, env=env, timeout=300)
        return p.returncode, p.stdout, p.stderr.replace(q, "QEMU-IMG")

    try:
        for name, args in REFUSED + CHANGED:
            if only and only not in name:
                continue
            for oracle, version in ((q72, "7.2.22"), (q10, "10.0.2")):
                dw = fresh(name, "want")
                dg = fresh(name, "got")
                want = amend(oracle, None, dw, args, name)
                got = amend(qemu_named, version, dg, args, name)
                label = "%s: qemu-img %s amend %s" % (name, version, " ".join(args))
                if want != got:
                    fail("%s\n--- want (rc %d)\n%s%s--- got (rc %d)\n%s%s" %
                         (label, want[0], want[1], want[2], got[0], got[1], got[2]))
                    continue
                f = fname(name)
                if want[0] != 0:
                    with open(os.path.join(master(name), f), "rb") as a, open(os.path.join(dw, f), "rb") as w, \
                            open(os.path.join(dg, f), "rb") as b:
                        m, w, b = a.read(), w.read(), b.read()
                    # qemu changes some images before its refusal (an upgrade before the key-slot
                    # checks): then the same state as qemu's.
                    if m == w and m != b:
                        fail("%s: refused, but the file changed" % label)
                        continue
                    if m != w and slots(q72, dw, env, name) != slots(q72, dg, env, name):
                        fail("%s: refused after a change: want %s got %s" %
                             (label, slots(q72, dw, env, name), slots(q72, dg, env, name)))
                        continue
                    passed += 1
                    continue
                ws, gs = slots(q72, dw, env, name), slots(q72, dg, env, name)
                if ws != gs:
                    fail("%s: key slots differ: want %s got %s" % (label, ws, gs))
                    continue
                wo = opens(q72, dw, name)
                checks = [("qemu-img 7.2", opens(q72, dg, name)), ("qemu-img 10.0", opens(q10, dg, name)),
                          ("instar", opens(qemu_named, dg, name, ["--qemu-version", version]))]
                bad = [(who, o) for who, o in checks if o != wo]
                if bad:
                    fail("%s: passphrases opening qemu's result %s, instar's %s" % (label, wo, bad))
                    continue
                passed += 1
        for name, args in CRASH:
            if only and only not in name:
                continue
            dn = fresh(name, "new")
            rc, _, err = amend(qemu_named, None, dn, args, name)
            if rc != 0:
                fail("%s: crash reference run failed: %s" % (name, err))
                continue
            old_slots, new_slots = slots(q72, master(name), env, name), slots(q72, dn, env, name)
            n = 0
            while True:
                n += 1
                dk = fresh(name, "kill")
                kenv = dict(env, INSTAR_TEST_KILL_AT_WRITE=str(n))
                rc, _, err = run([qemu_named, "amend"] + OBJECTS + ["--image-opts"] + args + [opts(name, "s0")], dk,
                                 kenv)
                label = "%s: amend %s killed at write %d" % (name, " ".join(args), n)
                # 137: the host's _Exit; -31: the same _Exit refused by the vCPU thread's seccomp
                # filter (exit_group), which ends the process as abruptly.
                if rc not in (0, 137, -31):
                    fail("%s: rc %d %s" % (label, rc, err))
                    break
                state = slots(q72, dk, env, name)
                o = opens(q72, dk, name)
                if "--force" in args:
                    # Replacing the only key: the old one or the new one opens the image (with the
                    # same content); the free slot passed through may be active in between.
                    if not isinstance(o, list) or not ("s0" in o or "s1" in o):
                        fail("%s: neither the old nor the new key opens the image: %s" % (label, o))
                    elif rc == 0 and (state != new_slots or o != ["s1"]):
                        fail("%s: finished with slots %s opened by %s" % (label, state, o))
                    else:
                        passed += 1
                elif state not in (old_slots, new_slots):
                    fail("%s: key slots are neither old nor new: %s" % (label, state))
                elif not isinstance(o, list) or "s0" not in o:
                    fail("%s: the old key no longer opens the image: %s" % (label, o))
                else:
                    passed += 1
                if rc == 0:
                    print("crash %s amend %s: %d kill points" % (name, " ".join(args), n - 1))
                    break
                if n > 100:
                    fail("%s: more than 100 writes" % label)
                    break
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
