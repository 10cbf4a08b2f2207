#!/usr/bin/env python3
"""Differential test of `instar create` against qemu-img 7.2 and 10.0.

For every case (formats x options x sizes, backing files, per-target flags, error paths) the same
command line runs through qemu-img and through instar (under the matching profile), each in its own
directory. Then:
  - stdout, stderr and the exit status must be equal (instar runs through a symlink named qemu-img);
  - the files each created must have the same names and sizes;
  - `qemu-img info --output=json` of instar's image must equal it on qemu-img's, under both
    oracles, except for fields random or allocation-dependent by nature (filename, actual-size,
    vmdk CIDs);
  - `qemu-img check` (where the format has it) must be clean and the libyal reader must open the
    image (these and the info above run only where some file's bytes differ from qemu-img's: files
    byte-identical to qemu-img's read alike in every reader);
  - `instar info --output=json` must equal qemu-img's on it;
  - a failed create must leave the target untouched and no temporary file behind.

Usage: test_create_oracle.py INSTAR QEMU72 QEMU10 [FORMAT...]
(with FORMATs, only the cases creating those formats run; errors of qemu-img's own argument
parsing always run.)
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats"))
from differential_support import data_segments, start_with_oracles  # noqa: E402

CHECKABLE = {"qcow2", "vmdk", "vhdx"}
READERS = {"qcow2": "qcowinfo", "vmdk": "vmdkinfo", "vpc": "vhdiinfo", "vhdx": "vhdiinfo"}
# Formats whose files must be allocated block for block as qemu-img's (its file layer allocates the
# first block of a file it grows from empty): `du` and `qemu-img map` then agree.
SAME_ALLOCATION = {"raw", "vpc"}
# Fields that differ by nature between two creations (random ids, allocation of the host file).
RANDOM_SPECIFIC = {"vmdk": ("cid", "parent-cid")}

CASES = []  # (label, args, setup commands run in both directories first, flags)


# Cases whose files must be byte-identical to qemu-img's, and the data file allocated as qemu's.
SAME_BYTES = set()


def case(label, *args, setup=(), expect_error=False, instar_args=None, same_bytes=False):
    CASES.append((label, list(args), list(setup), expect_error, instar_args))
    if same_bytes:
        SAME_BYTES.add(label)


# raw: created on the host
for size in ["0", "1M", "64M", "1G", "1T", "1.5k", "2b"]:
    case(f"raw {size}", "create", "-f", "raw", "img.raw", size)
for mode in ["off", "falloc", "full"]:
    case(f"raw preallocation={mode}", "create", "-f", "raw", "-o", f"preallocation={mode}", "img.raw", "8M")
case("raw default format", "create", "img.raw", "1M")
# qemu documents extent_size_hint=0 as "don't set a hint": nothing to warn about.
case("raw extent_size_hint=0", "create", "-f", "raw", "-o", "extent_size_hint=0", "img.raw", "1M")
case("qcow2 data_file_raw=off", "create", "-f", "qcow2", "-o", "data_file_raw=off", "img.qcow2", "1M")
case("qcow2 extent_size_hint=0", "create", "-f", "qcow2", "-o", "extent_size_hint=0", "img.qcow2", "1M")
case("raw -q", "create", "-q", "-f", "raw", "img.raw", "1M")

# qcow2 external data files: both files byte-identical to qemu-img's (and the data file allocated
# alike), the name stored as given (relative to the working directory, file: taken off).
for opts, size in [("data_file=img.raw", "1M"), ("data_file=img.raw", "1000000"), ("data_file=img.raw", "0"),
                   ("data_file=img.raw,data_file_raw=on", "1M"), ("data_file=img.raw,data_file_raw=on", "3145733"),
                   ("data_file=img.raw,preallocation=metadata", "1000000"),
                   ("data_file=img.raw,preallocation=falloc", "1M"), ("data_file=img.raw,preallocation=full", "1M"),
                   ("data_file=img.raw,preallocation=full", "1000000"),
                   ("data_file=img.raw,extended_l2=on,preallocation=metadata", "1000000"),
                   ("data_file=img.raw,cluster_size=512,data_file_raw=on", "3000000"),
                   ("data_file=img.raw,lazy_refcounts=on,compression_type=zstd,refcount_bits=64", "1G"),
                   ("data_file=file:img.raw", "1M"), ("data_file=d/img.raw,data_file_raw=on", "1M")]:
    case(f"qcow2 {opts} {size}", "create", "-f", "qcow2", "-o", opts, "img.qcow2", size, setup=[["mkdir", "d"]],
         same_bytes=True)
case("qcow2 data_file with backing", "create", "-f", "qcow2", "-o", "data_file=img.raw", "-b", "base.qcow2", "-F",
     "qcow2", "img.qcow2", setup=[["QIMG", "create", "-q", "-f", "qcow2", "base.qcow2", "32M"]], same_bytes=True)
case("file: prefix", "create", "-f", "qcow2", "file:img.qcow2", "1M", same_bytes=True)

# qcow2
for size in ["0", "1M", "64M", "1G", "1T", "1536"]:
    case(f"qcow2 {size}", "create", "-f", "qcow2", "img.qcow2", size)
for opts in ["cluster_size=512", "cluster_size=4k", "cluster_size=2M", "refcount_bits=1", "refcount_bits=8",
             "refcount_bits=64", "compat=0.10", "compat=v2", "compat=v3", "compat=1.1", "extended_l2=on",
             "lazy_refcounts=on", "compression_type=zstd", "cluster_size=16k,extended_l2=on,refcount_bits=32",
             "preallocation=metadata", "preallocation=falloc", "preallocation=full", "preallocation=off",
             "compat=0.10,refcount_bits=16"]:
    case(f"qcow2 {opts}", "create", "-f", "qcow2", "-o", opts, "img.qcow2", "64M")
case("qcow2 metadata 1G", "create", "-f", "qcow2", "-o", "preallocation=metadata", "img.qcow2", "1G")
case("qcow2 metadata 512-byte clusters", "create", "-f", "qcow2", "-o", "preallocation=metadata,cluster_size=512",
     "img.qcow2", "16M")
case("qcow2 backing qcow2", "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "img.qcow2",
     setup=[["QIMG", "create", "-q", "-f", "qcow2", "base.qcow2", "32M"]])
case("qcow2 backing raw, own size", "create", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "img.qcow2", "1G",
     setup=[["QIMG", "create", "-q", "-f", "raw", "base.raw", "8M"]])
case("qcow2 -o backing_file", "create", "-f", "qcow2", "-o", "backing_file=base.qcow2,backing_fmt=qcow2",
     "img.qcow2", setup=[["QIMG", "create", "-q", "-f", "qcow2", "base.qcow2", "32M"]])
case("qcow2 -u backing", "create", "-f", "qcow2", "-u", "-b", "missing.qcow2", "-F", "qcow2", "img.qcow2", "4M")
case("qcow2 backing vmdk", "create", "-f", "qcow2", "-b", "base.vmdk", "-F", "vmdk", "img.qcow2",
     setup=[["QIMG", "create", "-q", "-f", "vmdk", "base.vmdk", "16M"]])
case("qcow2 --cluster-size flag", "create", "-f", "qcow2", "-o", "cluster_size=4k", "img.qcow2", "64M",
     instar_args=["create", "-f", "qcow2", "--cluster-size", "4k", "img.qcow2", "64M"])
case("qcow2 flags lose to -o", "create", "-f", "qcow2", "-o", "cluster_size=8k,refcount_bits=8,compat=v3",
     "img.qcow2", "64M",
     instar_args=["create", "-f", "qcow2", "--cluster-size", "4k", "--refcount-bits", "8", "--compat", "v3",
                  "-o", "cluster_size=8k", "img.qcow2", "64M"])
case("qcow2 --lazy-refcounts --extended-l2", "create", "-f", "qcow2", "-o", "lazy_refcounts=on,extended_l2=on",
     "img.qcow2", "64M",
     instar_args=["create", "-f", "qcow2", "--lazy-refcounts", "--extended-l2", "img.qcow2", "64M"])
case("qcow2 --preallocation", "create", "-f", "qcow2", "-o", "preallocation=metadata", "img.qcow2", "64M",
     instar_args=["create", "-f", "qcow2", "--preallocation", "metadata", "img.qcow2", "64M"])

# vmdk
for sub in ["monolithicSparse", "streamOptimized", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"]:
    for size in ["64M", "5G"]:
        case(f"vmdk {sub} {size}", "create", "-f", "vmdk", "-o", f"subformat={sub}", "img.vmdk", size)
for opts in ["compat6=on", "adapter_type=lsilogic", "adapter_type=buslogic", "adapter_type=legacyESX",
             "hwversion=6", "toolsversion=1234", "zeroed_grain=on"]:
    case(f"vmdk {opts}", "create", "-f", "vmdk", "-o", opts, "img.vmdk", "1G")
for size in ["0", "1M", "1T"]:
    case(f"vmdk {size}", "create", "-f", "vmdk", "img.vmdk", size)
case("vmdk backing", "create", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", "img.vmdk",
     setup=[["QIMG", "create", "-q", "-f", "vmdk", "base.vmdk", "16M"]])
case("vmdk -u backing", "create", "-f", "vmdk", "-u", "-b", "base.vmdk", "-F", "vmdk", "img.vmdk", "16M",
     setup=[["QIMG", "create", "-q", "-f", "vmdk", "base.vmdk", "16M"]])
case("vmdk --subformat flag", "create", "-f", "vmdk", "-o", "subformat=streamOptimized", "img.vmdk", "64M",
     instar_args=["create", "-f", "vmdk", "--subformat", "streamOptimized", "img.vmdk", "64M"])

# vpc
for sub in ["dynamic", "fixed"]:
    for size in ["0", "1M", "64M", "1G", "127G"]:
        if sub == "fixed" and size == "0":
            continue  # qemu writes a lone footer nothing can open (docs/formats/vpc.md)
        case(f"vpc {sub} {size}", "create", "-f", "vpc", "-o", f"subformat={sub}", "img.vpc", size)
    case(f"vpc {sub} force_size", "create", "-f", "vpc", "-o", f"subformat={sub},force_size=on", "img.vpc", "100M")
case("vpc 2T dynamic", "create", "-f", "vpc", "img.vpc", "2000G")

# vhdx
for sub in ["dynamic", "fixed"]:
    for size in ["0", "1M", "64M", "1G"]:
        case(f"vhdx {sub} {size}", "create", "-f", "vhdx", "-o", f"subformat={sub}", "img.vhdx", size)
case("vhdx 1T", "create", "-f", "vhdx", "img.vhdx", "1T")
for opts in ["block_size=1M", "block_size=32M", "block_size=256M", "log_size=4M", "log_size=1536k",
             "block_state_zero=off"]:
    case(f"vhdx {opts}", "create", "-f", "vhdx", "-o", opts, "img.vhdx", "1G")
case("vhdx --block-size flag", "create", "-f", "vhdx", "-o", "block_size=8M", "img.vhdx", "1G",
     instar_args=["create", "-f", "vhdx", "--block-size", "8M", "img.vhdx", "1G"])

# errors: same message, same exit status, nothing left behind
for args in [
    ["create", "-f", "qcow2", "img.qcow2"],
    ["create", "-f", "qcow2", "img.qcow2", "1X"],
    ["create", "-f", "qcow2", "img.qcow2", "--", "-1"],
    ["create", "-f", "qcow2", "img.qcow2", "9E"],
    ["create", "-f", "qcow2", "img.qcow2", "1M", "extra"],
    ["create", "-f", "qcow2", "-o", "size=1M", "img.qcow2", "1M"],
    ["create", "-f", "qcow2", "-o", "cluster_size=1000", "img.qcow2", "1G"],
    ["create", "-f", "qcow2", "-o", "cluster_size=4M", "img.qcow2", "1G"],
    ["create", "-f", "qcow2", "-o", "refcount_bits=3", "img.qcow2", "1G"],
    ["create", "-f", "qcow2", "-o", "refcount_bits=128", "img.qcow2", "1G"],
    ["create", "-f", "qcow2", "-o", "compat=0.10,lazy_refcounts=on", "img.qcow2", "1G"],
    ["create", "-f", "qcow2", "-o", "compat=0.10,compression_type=zstd", "img.qcow2", "1G"],
    ["create", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=4k", "img.qcow2", "1G"],
    ["create", "-f", "qcow2", "-o", "compat=2", "img.qcow2", "1G"],
    ["create", "-f", "qcow2", "-o", "preallocation=bogus", "img.qcow2", "1G"],
    ["create", "-f", "qcow2", "-o", "cluster_size=512", "img.qcow2", "1P"],
    ["create", "-f", "qcow2", "-b", "base.qcow2", "img.qcow2"],
    ["create", "-f", "qcow2", "-u", "-b", "base.qcow2", "img.qcow2"],
    ["create", "-f", "qcow2", "-u", "-b", "base.qcow2", "-F", "qcow2", "img.qcow2"],
    ["create", "-f", "qcow2", "-b", "nonexistent.qcow2", "-F", "qcow2", "img.qcow2"],
    ["create", "-f", "qcow2", "-b", "img.qcow2", "-F", "qcow2", "img.qcow2", "1M"],
    ["create", "-f", "raw", "-b", "base.qcow2", "-F", "qcow2", "img.raw", "1M"],
    ["create", "-f", "raw", "-o", "preallocation=metadata", "img.raw", "1M"],
    ["create", "-f", "raw", "img.raw", "7E"],
    ["create", "-f", "vmdk", "-o", "subformat=bogus", "img.vmdk", "1G"],
    ["create", "-f", "vmdk", "-o", "adapter_type=scsi", "img.vmdk", "1G"],
    ["create", "-f", "vmdk", "-o", "compat6=on,hwversion=4", "img.vmdk", "1G"],
    ["create", "-f", "vpc", "-o", "subformat=bogus", "img.vpc", "1G"],
    ["create", "-f", "vpc", "img.vpc", "3T"],
    ["create", "-f", "vhdx", "-o", "block_size=3M", "img.vhdx", "1G"],
    ["create", "-f", "vhdx", "img.vhdx", "65T"],
    ["create", "-f", "qcow2", "missing-dir/img.qcow2", "1M"],
    ["create", "-f", "qcow2", "-o", "data_file_raw=on", "img.qcow2", "1M"],
    ["create", "-f", "qcow2", "-o", "data_file_raw=on,compat=0.10", "img.qcow2", "1M"],
    ["create", "-f", "qcow2", "-o", "data_file=img.raw,compat=0.10", "img.qcow2", "1M"],
    ["create", "-f", "qcow2", "-o", "data_file=img.raw,data_file_raw=on", "-b", "base.qcow2", "-F", "qcow2",
     "img.qcow2"],
    ["create", "-f", "qcow2", "-o", "data_file=missing-dir/x.raw", "img.qcow2", "1M"],
    ["create", "-f", "qcow2", "-o", "data_file=", "img.qcow2", "1M"],
    ["create", "-f", "qcow2", "-o", "data_file=a:b", "img.qcow2", "1M"],
    ["create", "-f", "qcow2", "-o", "data_file=img.raw,cluster_size=1000", "img.qcow2", "1M"],
    ["create", "-f", "raw", "a:b", "1M"],
    ["create", "-f", "qcow2", "json:{}", "1M"],
]:
    case("error: " + " ".join(args[1:]), *args, expect_error=True,
         setup=[["QIMG", "create", "-q", "-f", "qcow2", "base.qcow2", "32M"]])


def run(cmd, cwd, env=None, timeout=600):
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    # Usage hints echo the program's path: compare them without the directory.
    d = os.path.dirname(cmd[0])
    if not d:
        return p.returncode, p.stdout, p.stderr
    return p.returncode, p.stdout.replace(d, "ARGV0DIR"), p.stderr.replace(d, "ARGV0DIR")


def listing(d):
    """Every file under d (relative names) with its size."""
    out = []
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            out.append((os.path.relpath(p, d), os.stat(p).st_size))
    return sorted(out)


def same_bytes(a, b, limit=64 << 20):
    """Whether files a and b hold the same bytes, holes alike; False too when more than limit bytes
    of data would have to be read (sparse files of any size are cheap)."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        size = os.fstat(fa.fileno()).st_size
        if os.fstat(fb.fileno()).st_size != size:
            return False
        segs = data_segments(a)
        if segs != data_segments(b) or sum(end - start for start, end in segs) > limit:
            return False
        for start, end in segs:
            fa.seek(start)
            fb.seek(start)
            if fa.read(end - start) != fb.read(end - start):
                return False
    return True


def normalise_info(info, fmt):
    info = dict(info)
    for k in ("filename", "actual-size"):
        info.pop(k, None)
    info.pop("children", None)  # file-child details: host allocation and names
    spec = info.get("format-specific")
    if spec and fmt in RANDOM_SPECIFIC:
        spec = json.loads(json.dumps(spec))
        for k in RANDOM_SPECIFIC[fmt]:
            spec.get("data", {}).pop(k, None)
        info["format-specific"] = spec
    return info


def image_name(args):
    positional = [a for a in args if not a.startswith("-")]
    for a in args:
        if a.startswith("img."):
            return a
    return positional[-1]


def main():
    args, status = start_with_oracles(__doc__, 3)
    if args is None:
        return status
    instar, q72, q10 = args[:3]
    only = set(args[3:])
    failures = []
    passed = 0
    work = tempfile.mkdtemp(prefix="instar-create-")
    link_dir = os.path.join(work, "bin")
    os.mkdir(link_dir)
    os.symlink(os.path.abspath(instar), os.path.join(link_dir, "qemu-img"))
    ours = os.path.join(link_dir, "qemu-img")
    try:
        for profile, qimg in (("7.2", q72), ("10.0", q10)):
            env = dict(os.environ, INSTAR_QEMU_VERSION=profile)
            for label, args, setup, expect_error, instar_args in CASES:
                fmt = args[args.index("-f") + 1] if "-f" in args else "raw"
                if only and fmt not in only:
                    continue
                # CREATE_CASES=TEXT: only the cases whose label contains TEXT (while developing).
                if os.environ.get("CREATE_CASES", "") not in label:
                    continue
                name = f"[{profile}] {label}"
                problems = []
                dq = tempfile.mkdtemp(dir=work)
                di = tempfile.mkdtemp(dir=work)
                for d in (dq, di):
                    for cmd in setup:
                        run([qimg if c == "QIMG" else c for c in cmd], d)
                before_i = listing(di)
                rq = run([qimg] + args, dq)
                ri = run([ours] + (instar_args or args), di, env)
                if rq != ri:
                    problems.append(f"output differs:\n  qemu-img: {rq!r}\n  instar:   {ri!r}")
                if expect_error:
                    if ri[0] == 0:
                        problems.append("instar succeeded where an error was expected")
                    if listing(di) != before_i:
                        problems.append(f"a failed create changed the directory: {before_i} -> {listing(di)}")
                elif ri[0] == 0 and rq[0] == 0:
                    lq, li = listing(dq), listing(di)
                    img = image_name(args)
                    # A vmdk descriptor file prints the random CID in hex (%x): its length varies.
                    same = [n for n, _ in lq] == [n for n, _ in li] and all(
                        a == b or (fmt == "vmdk" and na == img and abs(a - b) < 8)
                        for (na, a), (_, b) in zip(lq, li))
                    if not same:
                        problems.append(f"files differ: qemu-img {lq} instar {li}")
                    if label in SAME_BYTES:
                        for n, _ in lq:
                            with open(os.path.join(dq, n), "rb") as a, open(os.path.join(di, n), "rb") as b:
                                if a.read() != b.read():
                                    problems.append(f"{n}: bytes differ from qemu-img's")
                            if n.endswith(".raw"):
                                bq = os.stat(os.path.join(dq, n)).st_blocks
                                bi = os.stat(os.path.join(di, n)).st_blocks
                                if bq != bi:
                                    problems.append(f"{n}: allocated blocks differ: qemu-img {bq} instar {bi}")
                    if fmt in SAME_ALLOCATION:
                        bq = [os.stat(os.path.join(dq, n)).st_blocks for n, _ in lq]
                        bi = [os.stat(os.path.join(di, n)).st_blocks for n, _ in li]
                        if bq != bi:
                            problems.append(f"allocated blocks differ: qemu-img {bq} instar {bi}")
                    # Files byte-identical to qemu-img's read alike in any reader: the oracles' info,
                    # check and the libyal reader run only where some byte differs (random ids).
                    identical = [n for n, _ in lq] == [n for n, _ in li] and all(
                        same_bytes(os.path.join(dq, n), os.path.join(di, n)) for n, _ in lq)
                    for oracle in (() if identical else (q72, q10)):
                        iq = run([oracle, "info", "-U", "--output=json", img], dq)
                        ii = run([oracle, "info", "-U", "--output=json", img], di)
                        if iq[0] != 0 or ii[0] != 0:
                            # (qemu-img cannot open its own 0-byte vmdk: then it must fail alike)
                            if iq != ii:
                                problems.append(f"{oracle} info failed: {iq[2]} {ii[2]}")
                            continue
                        if normalise_info(json.loads(iq[1]), fmt) != normalise_info(json.loads(ii[1]), fmt):
                            problems.append(f"{oracle} info differs:\n  qemu-img: {iq[1]}\n  instar:   {ii[1]}")
                    if fmt in CHECKABLE and not identical:
                        rc = run([q10, "check", "-U", img], di)
                        # (qemu-img cannot check its own image when the backing file is missing)
                        if rc[0] != 0 and run([q10, "check", "-U", img], dq)[0] == 0:
                            problems.append(f"qemu-img check: {rc[1]}{rc[2]}")
                    reader = READERS.get(fmt)
                    if reader and shutil.which(reader) and not identical:
                        rr = run([reader, img], di)
                        # libvhdi cannot open qemu-img's own 0-byte VHD/VHDX either: hold instar
                        # to what the reader accepts from qemu-img.
                        if rr[0] != 0 and run([reader, img], dq)[0] == 0:
                            problems.append(f"{reader} failed: {rr[1][-300:]}{rr[2][-300:]}")
                    own = run([ours, "info", "--output=json", "-f", fmt, img], di, env)
                    ref = run([qimg, "info", "--output=json", "-f", fmt, img], di)
                    if own != ref:
                        problems.append(f"instar info differs:\n  qemu-img: {ref!r}\n  instar:   {own!r}")
                leftovers = [n for n in os.listdir(di) if ".instar-" in n]
                if leftovers:
                    problems.append(f"temporary files left: {leftovers}")
                shutil.rmtree(dq)
                shutil.rmtree(di)
                if problems:
                    failures.append(name)
                    print(f"FAIL {name}")
                    for p in problems:
                        print("   ", p)
                else:
                    passed += 1
        # Differencing VHD and VHDX (instar's extension): vhdiinfo opens them and instar info
        # reports the parent as the backing file.
        for fmt, ext in (("vpc", "vhd"), ("vhdx", "vhdx")):
            if only and fmt not in only:
                continue
            d = tempfile.mkdtemp(dir=work)
            run([q10, "create", "-q", "-f", fmt, f"parent.{ext}", "64M"], d)
            r = run([ours, "create", "-f", fmt, "-b", f"parent.{ext}", "-F", fmt, f"child.{ext}"], d)
            info = run([ours, "info", "--output=json", f"child.{ext}"], d)
            reader = run(["vhdiinfo", f"child.{ext}"], d)
            ok = r[0] == 0 and info[0] == 0 and reader[0] == 0
            if ok:
                j = json.loads(info[1])
                parent = json.loads(run([q10, "info", "--output=json", f"parent.{ext}"], d)[1])
                ok = j.get("backing-filename") == f"parent.{ext}" and j.get("virtual-size") == parent["virtual-size"]
            if ok:
                passed += 1
            else:
                failures.append(f"differencing {fmt}")
                print(f"FAIL differencing {fmt}: create={r} info={info} vhdiinfo={reader[0]}")
        # Backing names go through the path policy (instar refuses where qemu-img would open).
        hostile = [("/etc/passwd", "outside the allowed directories"),
                   ('json:{"file.filename":"/etc/passwd"}', "json: pseudo-protocol"),
                   ("nbd://localhost/x", "protocol names"),
                   ("../escape.qcow2", "outside the allowed directories")]
        if not only or "qcow2" in only:
            for name, why in hostile:
                d = tempfile.mkdtemp(dir=work)
                sub = os.path.join(d, "sub")
                os.mkdir(sub)
                run([q10, "create", "-q", "-f", "qcow2", "escape.qcow2", "1M"], d)
                r = run([ours, "create", "-f", "qcow2", "-b", name, "-F", "qcow2", "img.qcow2"], sub)
                if r[0] != 1 or why not in r[2] or os.listdir(sub):
                    failures.append(f"hostile backing {name}")
                    print(f"FAIL hostile backing {name}: {r} files={os.listdir(sub)}")
                else:
                    passed += 1
        # --output=json (an instar extension): the summary describes the file that was made.
        if not only or "qcow2" in only:
            d = tempfile.mkdtemp(dir=work)
            r = run([ours, "create", "-f", "qcow2", "--output=json", "-o", "cluster_size=4k", "j.qcow2", "64M"], d)
            try:
                j = json.loads(r[1])
                ok = (r[0] == 0 and list(j) == ["format", "filename", "virtual_size", "resolved_unit_size",
                                                 "metadata_bytes_written", "file_size_after"]
                      and j["format"] == "qcow2" and j["filename"] == "j.qcow2" and j["virtual_size"] == 64 << 20
                      and j["resolved_unit_size"] == 4096 and j["metadata_bytes_written"] > 0
                      and j["file_size_after"] == os.path.getsize(os.path.join(d, "j.qcow2")))
            except ValueError:
                ok = False
            if ok:
                passed += 1
            else:
                failures.append("json output")
                print(f"FAIL json output: {r}")
        # Atomicity: a failed create leaves an existing target as it was.
        d = tempfile.mkdtemp(dir=work)
        target = os.path.join(d, "keep.img")
        with open(target, "wb") as f:
            f.write(b"precious")
        r = run([ours, "create", "-f", "raw", "-o", "preallocation=bogus", "keep.img", "1G"], d)
        with open(target, "rb") as f:
            kept = f.read()
        if r[0] == 0 or kept != b"precious" or sorted(os.listdir(d)) != ["keep.img"]:
            failures.append("atomic overwrite")
            print(f"FAIL atomic: rc={r[0]} content={kept!r} files={os.listdir(d)}")
        else:
            passed += 1
        # A multi-file create whose renames fail part-way (here the second extent's name is a
        # directory) leaves no half-renamed set: the first extent is renamed back, and the file it
        # had replaced is restored.
        if not only or "vmdk" in only:
            d2 = tempfile.mkdtemp(dir=work)
            with open(os.path.join(d2, "x-f001.vmdk"), "wb") as f:
                f.write(b"old extent")
            os.mkdir(os.path.join(d2, "x-f002.vmdk"))
            r = run([ours, "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentFlat", "x.vmdk", "5G"], d2)
            with open(os.path.join(d2, "x-f001.vmdk"), "rb") as f:
                kept = f.read()
            if (r[0] != 1 or "Could not create 'x-f002.vmdk': Is a directory" not in r[2] or kept != b"old extent"
                    or sorted(os.listdir(d2)) != ["x-f001.vmdk", "x-f002.vmdk"]):
                failures.append("rename rollback")
                print(f"FAIL rename rollback: {r} content={kept!r} files={sorted(os.listdir(d2))}")
            else:
                passed += 1
        # Overwriting an existing target works, as in qemu-img.
        r = run([ours, "create", "-q", "-f", "raw", "keep.img", "1M"], d)
        if r[0] != 0 or os.path.getsize(target) == len(b"precious"):
            failures.append("overwrite")
            print(f"FAIL overwrite: {r}")
        else:
            passed += 1
    finally:
        shutil.rmtree(work)
    print(f"{passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
