#!/usr/bin/env python3
"""Differential test of the qcow2 guest half against qemu-img 7.2 and 10.0.

Generates qcow2 images with qemu-img/qemu-io across options, sizes and written data, then checks
that the hosted tool's decoded report (debug_json) equals the matching fields of
`qemu-img info --output=json` for both qemu versions.

usage: differential_qcow2.py QCOW2_HOSTED_INFO
"""
import json
import os
import shutil
import struct
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests", "formats"))
from oracle_retry import run_fixture  # noqa: E402
from qcow2_header import set_incompat_bits  # noqa: E402

ORACLES = {
    "7.2": "/usr/bin/qemu-img",
    "10.0": "/opt/qemu-img-10/root/usr/bin/qemu-img",
}
QEMU_IO = ["/usr/bin/qemu-io", "/opt/qemu-img-10/root/usr/bin/qemu-io"]
SECRET = ["--object", "secret,id=sec0,data=pw"]


def sh(args, cwd):
    r = run_fixture(args, cwd=cwd)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def hide_extension(path, magic):
    with open(path, "r+b") as f:
        head = bytearray(f.read(65536))
        i = head.find(struct.pack(">I", magic), 72)
        if i < 0:
            raise RuntimeError(f"extension {magic:#x} not found")
        head[i:i + 4] = struct.pack(">I", 0x7E57E57E)
        f.seek(0)
        f.write(head)


def set_first_bitmap_in_use(path):
    with open(path, "r+b") as f:
        head = f.read(65536)
        i = head.find(struct.pack(">I", 0x23852875), 72)
        if i < 0:
            raise RuntimeError("no bitmaps extension")
        dir_offset = struct.unpack(">Q", head[i + 8 + 16:i + 8 + 24])[0]
        f.seek(dir_offset + 12)
        flags = struct.unpack(">I", f.read(4))[0]
        f.seek(dir_offset + 12)
        f.write(struct.pack(">I", flags | 1))


def cases(q7, qio, q10):
    """(name, image file, [steps]); a step is a command list or a callable(dir)."""
    c = []
    create = [q7, "create", "-q", "-f", "qcow2"]
    for size in ["0", "1M", "1G", "1T", "1P"]:
        c.append((f"v3-{size}", "img.qcow2", [create + ["img.qcow2", size]]))
    c.append(("v2", "img.qcow2", [create + ["-o", "compat=0.10", "img.qcow2", "1G"]]))
    c.append(("v2-1P", "img.qcow2", [create + ["-o", "compat=0.10", "img.qcow2", "1P"]]))
    for cs in ["512", "64k", "2M"]:
        c.append((f"cluster-{cs}", "img.qcow2", [create + ["-o", f"cluster_size={cs}", "img.qcow2", "1G"]]))
    for rb in ["1", "16", "64"]:
        c.append((f"refcount-{rb}", "img.qcow2", [create + ["-o", f"refcount_bits={rb}", "img.qcow2", "1G"]]))
    c.append(("lazy", "img.qcow2", [create + ["-o", "lazy_refcounts=on", "img.qcow2", "1G"]]))
    c.append(("extl2", "img.qcow2", [create + ["-o", "extended_l2=on", "img.qcow2", "1G"]]))
    c.append(("extl2-2M", "img.qcow2", [create + ["-o", "extended_l2=on,cluster_size=2M", "img.qcow2", "1G"]]))
    c.append(("zstd", "img.qcow2", [create + ["-o", "compression_type=zstd", "img.qcow2", "1G"],
                                    [qio, "-c", "write -c -P 0x11 0 64k", "img.qcow2"]]))
    c.append(("backing-fmt", "top.qcow2", [create + ["base.qcow2", "1G"],
                                           create + ["-b", "base.qcow2", "-F", "qcow2", "top.qcow2"]]))
    c.append(("backing-raw", "top.qcow2", [[q7, "create", "-q", "-f", "raw", "base.raw", "1M"],
                                           create + ["-b", "base.raw", "-F", "raw", "top.qcow2"]]))
    # qemu-img no longer writes a backing file without a format: write one, then hide the format
    # extension by renaming its type (unknown extensions are ignored).
    c.append(("backing-unsafe-nofmt", "top.qcow2",
              [create + ["-u", "-b", "missing.img", "-F", "raw", "top.qcow2", "1G"],
               lambda d: hide_extension(os.path.join(d, "top.qcow2"), 0xE2792ACA)]))
    c.append(("backing-unsafe-fmt", "top.qcow2",
              [create + ["-u", "-b", "sub/missing.img", "-F", "vmdk", "top.qcow2", "1G"]]))
    c.append(("backing-v2", "top.qcow2", [create + ["base.qcow2", "1G"],
                                          create + ["-o", "compat=0.10", "-b", "base.qcow2", "-F", "qcow2",
                                                    "top.qcow2"]]))
    snaps = [create + ["img.qcow2", "64M"]]
    for i in range(1, 4):
        snaps.append([qio, "-c", f"write -P {i} {i}M 1M", "img.qcow2"])
        snaps.append([q7, "snapshot", "-c", f"snap{i}", "img.qcow2"])
    c.append(("snapshots", "img.qcow2", snaps))
    c.append(("snapshots-v2", "img.qcow2", [create + ["-o", "compat=0.10", "img.qcow2", "64M"],
                                            [q7, "snapshot", "-c", "a", "img.qcow2"],
                                            [q7, "snapshot", "-c", "b b", "img.qcow2"],
                                            [q7, "snapshot", "-d", "a", "img.qcow2"]]))
    c.append(("bitmaps", "img.qcow2", [create + ["img.qcow2", "1G"],
                                       [q7, "bitmap", "--add", "img.qcow2", "b1"],
                                       [q7, "bitmap", "--add", "--granularity", "1M", "img.qcow2", "b2"],
                                       [q7, "bitmap", "--add", "--disable", "img.qcow2", "b3"],
                                       [q7, "bitmap", "--add", "--granularity", "512", "--disable", "img.qcow2",
                                        "b4-" + "x" * 200]]))
    c.append(("bitmaps-snapshots-data", "img.qcow2", [create + ["-o", "cluster_size=4k", "img.qcow2", "16M"],
                                                      [q7, "bitmap", "--add", "img.qcow2", "b1"],
                                                      [qio, "-c", "write -P 7 0 2M", "img.qcow2"],
                                                      [q7, "snapshot", "-c", "s", "img.qcow2"]]))
    luks = [q7, "create", "-q", "-f", "qcow2"] + SECRET
    c.append(("luks", "img.qcow2", [luks + ["-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
                                            "img.qcow2", "1G"]]))
    c.append(("luks-essiv", "img.qcow2",
              [luks + ["-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,"
                       "encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,"
                       "encrypt.ivgen-hash-alg=sha256,encrypt.hash-alg=sha1", "img.qcow2", "16M"]]))
    c.append(("luks-twofish", "img.qcow2",
              [luks + ["-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,"
                       "encrypt.cipher-alg=twofish-256,encrypt.ivgen-alg=plain,encrypt.hash-alg=sha512",
                       "img.qcow2", "16M"]]))
    c.append(("luks-512", "img.qcow2", [luks + ["-o", "encrypt.format=luks,encrypt.key-secret=sec0,"
                                                "encrypt.iter-time=10,cluster_size=512", "img.qcow2", "1M"]]))
    c.append(("aes", "img.qcow2", [luks + ["-o", "encrypt.format=aes,encrypt.key-secret=sec0", "img.qcow2", "1M"]]))
    c.append(("data-file", "img.qcow2", [create + ["-o", "data_file=img.raw", "img.qcow2", "1G"]]))
    c.append(("data-file-raw", "img.qcow2", [create + ["-o", "data_file=img.raw,data_file_raw=on", "img.qcow2", "1G"],
                                             [qio, "-c", "write -P 9 0 1M", "img.qcow2"]]))
    c.append(("dirty", "img.qcow2", [create + ["-o", "lazy_refcounts=on", "img.qcow2", "1G"],
                                     lambda d: set_incompat_bits(os.path.join(d, "img.qcow2"), 1)]))
    c.append(("corrupt", "img.qcow2", [create + ["img.qcow2", "1G"],
                                       lambda d: set_incompat_bits(os.path.join(d, "img.qcow2"), 2)]))
    c.append(("dirty-corrupt", "img.qcow2", [create + ["img.qcow2", "1G"],
                                             lambda d: set_incompat_bits(os.path.join(d, "img.qcow2"), 3)]))
    c.append(("data", "img.qcow2", [create + ["img.qcow2", "1G"],
                                    [qio, "-c", "write -P 0xab 0 3M", "img.qcow2"],
                                    [qio, "-c", "write -z 4M 1M", "img.qcow2"],
                                    [qio, "-c", "write -c -P 0xcd 8M 64k", "img.qcow2"],
                                    [qio, "-c", "discard 0 64k", "img.qcow2"]]))
    c.append(("bitmap-in-use", "img.qcow2", [create + ["img.qcow2", "1G"],
                                             [q7, "bitmap", "--add", "img.qcow2", "b1"],
                                             lambda d: set_first_bitmap_in_use(os.path.join(d, "img.qcow2"))]))
    # Images made by qemu 10.0's tools.
    create10 = [q10, "create", "-q", "-f", "qcow2"]
    c.append(("q10-default", "img.qcow2", [create10 + ["img.qcow2", "10G"]]))
    c.append(("q10-snapshots-bitmaps", "img.qcow2", [create10 + ["img.qcow2", "1G"],
                                                     [q10, "snapshot", "-c", "one", "img.qcow2"],
                                                     [q10, "bitmap", "--add", "--granularity", "128k", "img.qcow2",
                                                      "bm"],
                                                     [q10, "snapshot", "-c", "two", "img.qcow2"]]))
    c.append(("q10-luks", "img.qcow2", [[q10, "create", "-q", "-f", "qcow2"] + SECRET +
                                        ["-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10",
                                         "img.qcow2", "1G"]]))
    c.append(("odd-size", "img.qcow2", [create + ["img.qcow2", "1000001"]]))
    return c


def ours_view(ours, version):
    """Our report in qemu's field names."""
    v = {"virtual-size": ours.get("virtual-size"), "cluster-size": ours.get("cluster-size"),
         "encrypted": ours.get("encrypted", False), "dirty-flag": ours.get("dirty-flag", False),
         "backing-filename-format": ours.get("backing-filename-format")}
    backing = [f["name"] for f in ours.get("files", []) if f["role"] == "backing"]
    v["backing-filename"] = backing[0] if backing else None
    v["snapshots"] = ours.get("snapshots", [])
    spec = ours.get("format-specific")
    if spec and version == "7.2":
        spec = json.loads(json.dumps(spec))
        enc = spec["data"].get("encrypt")
        if enc is not None:
            enc.pop("detached-header", None)  # QCryptoBlockInfoLUKS gained it in qemu 9.0
    v["format-specific"] = spec
    return v


def qemu_view(q):
    return {"virtual-size": q.get("virtual-size"), "cluster-size": q.get("cluster-size"),
            "encrypted": q.get("encrypted", False), "dirty-flag": q.get("dirty-flag", False),
            "backing-filename-format": q.get("backing-filename-format"),
            "backing-filename": q.get("backing-filename"), "snapshots": q.get("snapshots", []),
            "format-specific": q.get("format-specific")}


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    tool = os.path.abspath(sys.argv[1])
    missing = [p for p in list(ORACLES.values()) + QEMU_IO[:1] if not os.access(p, os.X_OK)]
    if missing:
        print(f"SKIP: qemu oracle(s) missing: {', '.join(missing)} -- differential qcow2 test NOT RUN")
        return 77
    q7, qio = ORACLES["7.2"], QEMU_IO[0]
    passed = failed = 0
    for name, image, steps in cases(q7, qio, ORACLES["10.0"]):
        d = tempfile.mkdtemp(prefix=f"instar-qcow2-{name}-")
        try:
            for step in steps:
                if callable(step):
                    step(d)
                else:
                    sh(step, d)
            out = json.loads(sh([tool, image], d))
            if out.get("status") != 0 or "info" not in out:
                print(f"FAIL {name}: hosted tool status {out.get('status')} {out.get('decode-error', '')}")
                failed += 1
                continue
            if not out.get("probe"):
                print(f"FAIL {name}: probe did not match")
                failed += 1
                continue
            data_files = [f["name"] for f in out["info"].get("files", []) if f["role"] == "data-file"]
            for version, qimg in ORACLES.items():
                q = json.loads(sh([qimg, "info", "--output=json", "-U", image], d))
                mine, theirs = ours_view(out["info"], version), qemu_view(q)
                spec = (theirs["format-specific"] or {}).get("data", {})
                problems = [f"{k}: ours={mine[k]!r} qemu={theirs[k]!r}" for k in theirs if mine[k] != theirs[k]]
                if spec.get("data-file-raw") is not None and data_files != [spec.get("data-file")]:
                    problems.append(f"data-file reference {data_files} vs {spec.get('data-file')!r}")
                if problems:
                    print(f"FAIL {name} (qemu {version}):\n  " + "\n  ".join(problems))
                    failed += 1
                else:
                    print(f"PASS {name} (qemu {version})")
                    passed += 1
        except (RuntimeError, json.JSONDecodeError) as e:
            print(f"FAIL {name}: {e}")
            failed += 1
        finally:
            shutil.rmtree(d, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
