#!/usr/bin/env python3
"""Crash consistency of `instar commit`: the host is killed (INSTAR_TEST_KILL_AT_WRITE=N, docs/edit.md)
at every file-changing hypercall N of a commit, from the first to the last (the run that is not
killed gives the total). After each kill, every qcow2 image of the chain must pass `qemu-img check`
(exit 0, or 3: leaked clusters only) and the top's chain must still read exactly the original
content (`qemu-img compare` against a flat copy made before): the data is in the base before the
top loses it. Chains: an overlay over its base (the top emptied afterwards), an overlay whose base
grows a refcount block, a qcow2 overlay over a vmdk base (monolithicSparse, and twoGbMaxExtentSparse:
a descriptor and an extent file), a three-deep chain committed into the middle
image (copy-on-write from the bottom image), a base with compressed clusters and an internal snapshot
(copy on write of what the snapshot shares; the snapshot must read as before), the same over a
LUKS-encrypted base, a top with an internal snapshot emptied after the commit, a top whose data is in an external data file (its L2 tables zeroed, then the data file's
clusters discarded), a top with a persistent bitmap emptied after the commit (the bitmap must keep
every bit), a base with persistent bitmaps the commit dirties (bits before data: each changed chunk
has its bit at every kill point), a plain top over a LUKS-encrypted qcow2 base (the base
must still decrypt to the old or the new data of each cluster), and a LUKS-encrypted top emptied after
the commit (named by json: with their secrets; checked and compared with --image-opts; their base,
decrypted, must hold in each cluster the old data or the data of the commit that was not killed).

Usage: test_commit_crash.py INSTAR QEMU72 QEMU_IO
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from oracle_retry import run_fixture  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bitmap"))
from test_bitmap_oracle import read_bitmaps  # noqa: E402

# Kill points per chain at most: a spread of this many when a commit makes more writes.
MAX_POINTS = 80

CHAINS = {
    "two": ([["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "b.qcow2", "4M"],
             ["QIO", "-c", "write -P 0x11 0 3M", "b.qcow2"],
             ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "-b", "b.qcow2", "-F", "qcow2",
              "t.qcow2"],
             ["QIO", "-c", "write -P 0x21 1k 9k", "-c", "write -z 64k 8k", "-c", "write -P 0x22 3M 20k",
              "-c", "write -P 0x23 4090k 2k", "t.qcow2"]],
            [], ["t.qcow2", "b.qcow2"]),
    # refcount_bits=64 with 512-byte clusters: a block covers 64 clusters, so the base grows blocks.
    "refblocks": ([["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512,refcount_bits=64", "b.qcow2",
                    "1M"],
                   ["QIO", "-c", "write -P 0x11 0 64k", "b.qcow2"],
                   ["QIMG", "create", "-q", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "t.qcow2"],
                   ["QIO", "-c", "write -P 0x31 100k 30k", "-c", "write -P 0x32 900k 2k", "t.qcow2"]],
                  [], ["t.qcow2", "b.qcow2"]),
    # A qcow2 top over a monolithicSparse vmdk base (vmdk_existing_write.cpp).
    "vmdk_base": ([["QIMG", "create", "-q", "-f", "vmdk", "b.vmdk", "4M"],
                   ["QIO", "-f", "vmdk", "-c", "write -P 0x11 0 1M", "b.vmdk"],
                   ["QIMG", "create", "-q", "-f", "qcow2", "-b", "b.vmdk", "-F", "vmdk", "t.qcow2"],
                   ["QIO", "-c", "write -P 0x51 2k 70k", "-c", "write -z 512k 64k", "-c", "write -P 0x52 3M 5k",
                    "t.qcow2"]],
                  [], ["t.qcow2", "b.vmdk"]),
    # A qcow2 top over a twoGbMaxExtentSparse vmdk base: a descriptor and a sparse extent file, whose
    # grains and grain tables the commit writes (round 29: extent files reopened for writing).
    "vmdk_split_base": ([["QIMG", "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse", "b.vmdk",
                          "4M"],
                         ["QIO", "-f", "vmdk", "-c", "write -P 0x11 0 1M", "b.vmdk"],
                         ["QIMG", "create", "-q", "-f", "qcow2", "-b", "b.vmdk", "-F", "vmdk", "t.qcow2"],
                         ["QIO", "-c", "write -P 0x71 2k 70k", "-c", "write -z 512k 64k", "-c",
                          "write -P 0x72 3M 5k", "t.qcow2"]],
                        [], ["t.qcow2", "b.vmdk"]),
    "three": ([["QIMG", "create", "-q", "-f", "qcow2", "b.qcow2", "4M"],
               ["QIO", "-c", "write -P 0x11 0 4M", "b.qcow2"],
               ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=16k", "-b", "b.qcow2", "-F", "qcow2",
                "m.qcow2"],
               ["QIO", "-c", "write -P 0x41 100k 20k", "m.qcow2"],
               ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "-b", "m.qcow2", "-F", "qcow2",
                "t.qcow2"],
               ["QIO", "-c", "write -P 0x42 2k 5k", "-c", "write -z 1M 16k", "-c", "write -P 0x43 2M 33k",
                "t.qcow2"]],
              [], ["t.qcow2", "m.qcow2", "b.qcow2"]),
    # A plain top over a LUKS-encrypted qcow2 base (the base's writer encrypts; secrets in SECRETS).
    "enc_base": ([["QIMG", "create", "-q", "OBJ", "-f", "qcow2", "-o",
                   "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10,cluster_size=4k", "b.qcow2", "4M"],
                  ["QIO", "OBJ", "-c", "write -P 0x11 0 1M", "--image-opts",
                   "driver=qcow2,encrypt.key-secret=s0,file.filename=b.qcow2"],
                  ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "-b", "b.qcow2", "-F", "qcow2",
                   "t.qcow2"],
                  ["QIO", "OBJ", "-c", "write -P 0x61 1k 9k", "-c", "write -z 64k 8k", "-c", "write -P 0x62 2M 20k",
                   "--image-opts", "driver=qcow2,backing.encrypt.key-secret=s0,file.filename=t.qcow2"]],
                 [], ["t.qcow2", "b.qcow2"]),
    # A LUKS-encrypted top over a plain base, emptied after the commit (qcow2_edit_empty.cpp).
    "enc_top": ([["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "b.qcow2", "4M"],
                 ["QIO", "-c", "write -P 0x11 0 3M", "b.qcow2"],
                 ["QIMG", "create", "-q", "OBJ", "-f", "qcow2", "-o",
                  "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10,cluster_size=4k", "-b", "b.qcow2",
                  "-F", "qcow2", "t.qcow2"],
                 ["QIO", "OBJ", "-c", "write -P 0x71 1k 9k", "-c", "write -z 64k 8k", "-c", "write -P 0x72 3M 20k",
                  "--image-opts", "driver=qcow2,encrypt.key-secret=s0,file.filename=t.qcow2"]],
                [], ["t.qcow2", "b.qcow2"]),
    # A base with compressed clusters and an internal snapshot: the top's writes copy on write the
    # compressed clusters, the L2 table and the data clusters the snapshot shares
    # (qcow2_existing_write.cpp); the snapshot must read as before at every kill point.
    "snapshot_base": ([["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "b.qcow2", "4M"],
                       ["QIO", "-c", "write -P 0x11 0 1M", "-c", "write -c -P 0x12 2M 4k", "-c",
                        "write -c -P 0x13 2052k 4k", "b.qcow2"],
                       ["QIMG", "snapshot", "-c", "s1", "b.qcow2"],
                       ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "-b", "b.qcow2", "-F", "qcow2",
                        "t.qcow2"],
                       ["QIO", "-c", "write -P 0x81 1k 9k", "-c", "write -z 64k 8k", "-c", "write -P 0x82 2M 6k",
                        "-c", "write -P 0x83 3M 4k", "t.qcow2"]],
                      [], ["t.qcow2", "b.qcow2"]),
    # The same over a LUKS-encrypted base: a partial write into a shared cluster decrypts its old
    # sectors and encrypts them again at the new cluster's offset.
    "enc_snapshot_base": ([["QIMG", "create", "-q", "OBJ", "-f", "qcow2", "-o",
                            "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10,cluster_size=4k",
                            "b.qcow2", "4M"],
                           ["QIO", "OBJ", "-c", "write -P 0x11 0 1M", "--image-opts",
                            "driver=qcow2,encrypt.key-secret=s0,file.filename=b.qcow2"],
                           ["QIMG", "snapshot", "OBJ", "--image-opts", "-c", "s1",
                            "driver=qcow2,encrypt.key-secret=s0,file.filename=b.qcow2"],
                           ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "-b", "b.qcow2", "-F",
                            "qcow2", "t.qcow2"],
                           ["QIO", "OBJ", "-c", "write -P 0x91 1k 9k", "-c", "write -z 64k 8k", "-c",
                            "write -P 0x92 2M 20k", "--image-opts",
                            "driver=qcow2,backing.encrypt.key-secret=s0,file.filename=t.qcow2"]],
                          [], ["t.qcow2", "b.qcow2"]),
    # A top with an internal snapshot, emptied after the commit (qcow2_edit_empty_discard.cpp): the
    # active layer's references are dropped, the snapshot keeps its clusters.
    "snapshot_top": ([["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "b.qcow2", "4M"],
                      ["QIO", "-c", "write -P 0x11 0 3M", "b.qcow2"],
                      ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "-b", "b.qcow2", "-F",
                       "qcow2", "t.qcow2"],
                      ["QIO", "-c", "write -P 0xa1 1k 9k", "-c", "write -c -P 0xa2 1M 4k", "-c",
                       "write -P 0xa3 3M 20k", "t.qcow2"],
                      ["QIMG", "snapshot", "-c", "s1", "t.qcow2"],
                      ["QIO", "-c", "write -P 0xa4 2k 3k", "-c", "write -z 3M 4k", "t.qcow2"]],
                     [], ["t.qcow2", "b.qcow2"]),
    # A top whose data is in an external data file (extended L2 entries), emptied after the commit
    # (qcow2_edit_empty_discard.cpp): each L2 table zeroed and flushed before the data-file clusters
    # it named are discarded.
    "data_file_top": ([["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "b.qcow2", "4M"],
                       ["QIO", "-c", "write -P 0x11 0 3M", "b.qcow2"],
                       ["QIMG", "create", "-q", "-f", "qcow2", "-o",
                        "cluster_size=16k,extended_l2=on,data_file=t.data", "-b", "b.qcow2", "-F", "qcow2", "t.qcow2"],
                       ["QIO", "-c", "write -P 0xb1 1k 9k", "-c", "write -z 64k 8k", "-c", "write -P 0xb2 2M 20k",
                        "-c", "write -P 0xb3 3M 4k", "t.qcow2"]],
                      [], ["t.qcow2", "b.qcow2"]),
    # A top with a persistent bitmap dirtied by its writes, emptied after the commit by the discard
    # loop: the bitmap must keep every bit at every kill point (BITMAPS).
    "bitmap_top": ([["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "b.qcow2", "4M"],
                    ["QIO", "-c", "write -P 0x11 0 3M", "b.qcow2"],
                    ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "-b", "b.qcow2", "-F",
                     "qcow2", "t.qcow2"],
                    ["QIMG", "bitmap", "--add", "-g", "4k", "t.qcow2", "b0"],
                    ["QIO", "-c", "write -P 0xc1 1k 9k", "-c", "write -z 64k 8k", "-c", "write -P 0xc2 2M 20k",
                     "t.qcow2"]],
                   [], ["t.qcow2", "b.qcow2"]),
    # A base with persistent bitmaps (round 33): one of 4 KiB granularity with bits and data
    # clusters already, one of 64 KiB with none (its first bit gets a new data cluster), one
    # disabled. Bits are set before the data they cover (BASE_BITMAPS).
    "bitmap_base": ([["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "b.qcow2", "4M"],
                     ["QIMG", "bitmap", "--add", "-g", "4k", "b.qcow2", "b0"],
                     ["QIO", "-c", "write -P 0x11 0 3M", "b.qcow2"],
                     ["QIMG", "bitmap", "--add", "-g", "64k", "b.qcow2", "b1"],
                     ["QIMG", "bitmap", "--add", "--disable", "b.qcow2", "b2"],
                     ["QIMG", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "-b", "b.qcow2", "-F",
                      "qcow2", "t.qcow2"],
                     ["QIO", "-c", "write -P 0xd1 1k 9k", "-c", "write -z 64k 8k", "-c", "write -P 0xd2 2M 20k",
                      "-c", "write -P 0xd3 3500k 8k", "t.qcow2"]],
                    [], ["t.qcow2", "b.qcow2"]),
}
# Chains with an internal snapshot: (image, snapshot) that must read the same after every kill.
SNAPSHOTS = {"snapshot_base": ("b.qcow2", "s1"), "enc_snapshot_base": ("b.qcow2", "s1"),
             "snapshot_top": ("t.qcow2", "s1")}
# The encrypted chains: the top's name (json:, its chain's secrets) and each image's --image-opts.
OBJ = ["--object", "secret,id=s0,data=crash-pass"]
SECRETS = {
    "enc_base": {"t.qcow2": "driver=qcow2,backing.encrypt.key-secret=s0,file.filename=t.qcow2",
                 "b.qcow2": "driver=qcow2,encrypt.key-secret=s0,file.filename=b.qcow2"},
    "enc_top": {"t.qcow2": "driver=qcow2,encrypt.key-secret=s0,file.filename=t.qcow2",
                "b.qcow2": "driver=qcow2,file.filename=b.qcow2"},
    "enc_snapshot_base": {"t.qcow2": "driver=qcow2,backing.encrypt.key-secret=s0,file.filename=t.qcow2",
                          "b.qcow2": "driver=qcow2,encrypt.key-secret=s0,file.filename=b.qcow2"},
}


# Chains with persistent bitmaps: the image whose bitmaps must read the same after every kill.
BITMAPS = {"bitmap_top": "t.qcow2"}
# Chains whose base has persistent bitmaps the commit dirties: after every kill each bitmap holds
# at least its old bits and at most those of the commit that was not killed, and every chunk of
# the base whose data changed has its bit set in each enabled bitmap (bits go before data).
BASE_BITMAPS = {"bitmap_base": "b.qcow2"}


def base_bitmap_problems(name, where, qimg):
    image = BASE_BITMAPS[name]
    base = os.path.dirname(where)
    old = read_bitmaps(os.path.join(where, "base-bitmaps-old.qcow2"))
    final = read_bitmaps(os.path.join(base, name + "-ref", image))
    now = read_bitmaps(os.path.join(where, image))
    if [b[:3] for b in now] != [b[:3] for b in old]:
        return ["bitmaps of %s: %s, were %s" % (image, [b[:3] for b in now], [b[:3] for b in old])]
    run_fixture([qimg, "convert", "-O", "raw", "-f", "qcow2", image, "base-now.raw"], cwd=where, check=True)
    was = open(os.path.join(where, "base-old.raw"), "rb").read()
    got = open(os.path.join(where, "base-now.raw"), "rb").read()
    problems = []
    for (bname, gran, flags, o), (_, _, _, f), (_, _, _, n) in zip(old, final, now):
        if not (o <= n <= f):
            problems.append("bitmap %s: bits %d, not between the old %d and the final %d" % (bname, len(n), len(o),
                                                                                        len(f)))
        if flags & 2:  # enabled: every changed chunk recorded
            missing = [i for i in range(0, len(got), gran) if got[i:i + gran] != was[i:i + gran] and i // gran not in n]
            if missing:
                problems.append("bitmap %s: changed data at %s without its bit" % (bname, missing[:6]))
    return problems


def snapshot_raw(name, where, qimg, out):
    """Chain `name`'s snapshot read into `out` (raw); the fixture's failure message or None."""
    image, snap = SNAPSHOTS[name]
    p = run_fixture([qimg, "convert", "-l", "snapshot.name=" + snap, "-O", "raw"] + image_args(name, image) + [out],
                    cwd=where)
    return None if p.returncode == 0 else (p.stdout + p.stderr).strip()


def image_args(name, image):
    """The arguments naming `image` of chain `name` to qemu-img: its file, or its secrets."""
    if name not in SECRETS:
        return [image]
    return OBJ + ["--image-opts", SECRETS[name][image]]


def build(name, where, qimg, qio):
    os.mkdir(where)
    for c in CHAINS[name][0]:
        c = [qimg if a == "QIMG" else qio if a == "QIO" else a for a in c]
        c = [x for a in c for x in (OBJ if a == "OBJ" else [a])]
        p = run_fixture(c, cwd=where)
        if p.returncode != 0:
            raise RuntimeError("fixture %s failed: %s" % (c, p.stderr))
    # The original content, flat.
    run_fixture([qimg, "convert", "-O", "raw"] + image_args(name, "t.qcow2") + ["orig.raw"], cwd=where, check=True)
    if name in SECRETS:  # the base decrypted before the commit, for base_per_cluster
        run_fixture([qimg, "convert", "-O", "raw"] + image_args(name, "b.qcow2") + ["base-old.raw"], cwd=where,
                    check=True)
    if name in BITMAPS:
        shutil.copy(os.path.join(where, BITMAPS[name]), os.path.join(where, "bitmaps-old.qcow2"))
    if name in BASE_BITMAPS:
        shutil.copy(os.path.join(where, BASE_BITMAPS[name]), os.path.join(where, "base-bitmaps-old.qcow2"))
        run_fixture([qimg, "convert", "-O", "raw", "-f", "qcow2", BASE_BITMAPS[name], "base-old.raw"], cwd=where,
                    check=True)
    if name in SNAPSHOTS:
        why = snapshot_raw(name, where, qimg, "snap-old.raw")
        if why is not None:
            raise RuntimeError("fixture snapshot unreadable: " + why)


# base_per_cluster's unit: the chains' base cluster size.
CLUSTER = 4096


def base_per_cluster(name, where, qimg, new_raw):
    """The encrypted chains' base, decrypted, holds in each cluster its old data or what the commit
    that was not killed left there (`new_raw`): never a mix, never garbage."""
    got_raw = os.path.join(where, "base-now.raw")
    p = run_fixture([qimg, "convert", "-O", "raw"] + image_args(name, "b.qcow2") + [got_raw], cwd=where)
    if p.returncode != 0:
        return ["base does not decrypt: " + (p.stdout + p.stderr).strip()]
    old = open(os.path.join(where, "base-old.raw"), "rb").read()
    new = open(new_raw, "rb").read()
    got = open(got_raw, "rb").read()
    if len(got) != len(new):
        return ["base size %d, not %d" % (len(got), len(new))]
    bad = [o for o in range(0, len(got), CLUSTER)
           if got[o:o + CLUSTER] != new[o:o + CLUSTER] and got[o:o + CLUSTER] != old[o:o + CLUSTER]]
    return ["base clusters neither old nor new at %s" % bad[:8]] if bad else []


def commit(name, instar, where, n):
    env = dict(os.environ, INSTAR_TEST_KILL_AT_WRITE=str(n))
    top = ["t.qcow2"]
    if name in SECRETS:  # the json: spelling of the same options
        opts = dict(kv.split("=", 1) for kv in SECRETS[name]["t.qcow2"].split(","))
        top = OBJ + ["json:" + json.dumps(opts)]
    return subprocess.run([instar, "commit"] + top, cwd=where, env=env,
                          capture_output=True, text=True, timeout=300)


# How a killed run ends: 137 (_exit(137)), or SIGSYS when the kill happens on the seccomp-confined
# vCPU thread, whose filter kills the process at exit_group: either way no cleanup ran.
KILLED = (137, -31)


def verify(name, where, qimg):
    problems = []
    for image in CHAINS[name][2]:
        c = subprocess.run([qimg, "check"] + image_args(name, image), cwd=where, capture_output=True, text=True)
        if c.returncode not in (0, 3):
            problems.append("check %s rc %d: %s" % (image, c.returncode, (c.stdout + c.stderr).strip()))
    if name in SECRETS:
        cmp = [qimg, "compare"] + OBJ + ["--image-opts", SECRETS[name]["t.qcow2"], "driver=raw,file.filename=orig.raw"]
    else:
        cmp = [qimg, "compare", "-F", "raw", "t.qcow2", "orig.raw"]
    p = subprocess.run(cmp, cwd=where, capture_output=True, text=True)
    if p.returncode != 0:
        problems.append("content: " + (p.stdout + p.stderr).strip())
    if name in BITMAPS:
        old, now = (read_bitmaps(os.path.join(where, f)) for f in ("bitmaps-old.qcow2", BITMAPS[name]))
        if not old or now != old:
            problems.append("bitmaps of %s changed: %s, were %s" % (BITMAPS[name], now, old))
    if name in SNAPSHOTS:
        why = snapshot_raw(name, where, qimg, "snap-now.raw")
        if why is not None:
            problems.append("snapshot unreadable: " + why)
        elif open(os.path.join(where, "snap-now.raw"), "rb").read() != \
                open(os.path.join(where, "snap-old.raw"), "rb").read():
            problems.append("snapshot %s of %s changed" % SNAPSHOTS[name][::-1])
    return problems


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    instar, qimg, qio = sys.argv[1:]
    for prog in (qimg, qio):
        if not os.access(prog, os.X_OK):
            print("SKIPPED LOUDLY: %s missing; commit crash test NOT run" % prog)
            return 77
    instar = os.path.abspath(instar)
    work = tempfile.mkdtemp(prefix="instar-commit-crash-")
    passed, failed = 0, 0
    try:
        only = os.environ.get("COMMIT_CRASH_ONLY")  # a comma-separated subset of CHAINS, for debugging
        for name in CHAINS:
            if only and name not in only.split(","):
                continue
            # The total: a run that is never killed counts nothing, so find it by running past the end.
            # The chain is made once; each run (the reference, the probes, every kill point) gets a
            # copy of the directory (the names inside are relative).
            fixture = os.path.join(work, name + "-fixture")
            build(name, fixture, qimg, qio)
            ref = os.path.join(work, name + "-ref")
            shutil.copytree(fixture, ref)
            r = commit(name, instar, ref, 0)
            if r.returncode != 0:
                failed += 1
                print("FAIL %s: commit without a kill: %r" % (name, r))
                continue
            new_raw = os.path.join(work, name + "-base-new.raw")
            if name in SECRETS:
                run_fixture([qimg, "convert", "-O", "raw"] + image_args(name, "b.qcow2") + [new_raw], cwd=ref,
                            check=True)
            total = 0
            lo, hi = 1, 1
            # Exponential then binary search for the first N that is not killed.
            while True:
                d = os.path.join(work, "%s-probe%d" % (name, hi))
                shutil.copytree(fixture, d)
                killed = commit(name, instar, d, hi).returncode in KILLED
                shutil.rmtree(d)
                if not killed:
                    break
                lo, hi = hi, hi * 2
            while lo + 1 < hi:
                mid = (lo + hi) // 2
                d = os.path.join(work, "%s-probe%d" % (name, mid))
                shutil.copytree(fixture, d)
                killed = commit(name, instar, d, mid).returncode in KILLED
                shutil.rmtree(d)
                if killed:
                    lo = mid
                else:
                    hi = mid
            total = lo
            points = list(range(1, total + 1))
            if len(points) > MAX_POINTS:
                step = total / MAX_POINTS
                points = sorted({1, total} | {int(1 + i * step) for i in range(MAX_POINTS)})
            for n in points:
                d = os.path.join(work, "%s-%d" % (name, n))
                shutil.copytree(fixture, d)
                r = commit(name, instar, d, n)
                problems = [] if r.returncode in KILLED else ["not killed: rc %d %s" % (r.returncode, r.stderr)]
                problems += verify(name, d, qimg)
                if name in SECRETS:
                    problems += base_per_cluster(name, d, qimg, new_raw)
                if name in BASE_BITMAPS:
                    problems += base_bitmap_problems(name, d, qimg)
                if problems:
                    failed += 1
                    print("FAIL %s kill at write %d of %d: %s" % (name, n, total, "; ".join(problems)))
                else:
                    passed += 1
                shutil.rmtree(d)
            print("%s: %d writes, %d kill points checked" % (name, total, len(points)))
            shutil.rmtree(ref)
            shutil.rmtree(fixture)
    finally:
        shutil.rmtree(work)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
