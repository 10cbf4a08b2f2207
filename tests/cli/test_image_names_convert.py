#!/usr/bin/env python3
"""Image names in convert, dd and amend (cli/image_name.h): `file:`, `json:{...}`, `--image-opts`
and `--target-image-opts` name local files as qemu-img 7.2 and 10.0 take them. Each case runs in a
fresh copy of the fixtures, once under the oracle and once under instar: stdout, stderr (program
name normalised) and exit code must be equal, the same files must exist afterwards, raw files must
be byte-identical and other images must be byte-identical too or else hold the same data (`qemu-img
compare`) under the same header (`qemu-img info`).

Usage: test_image_names_convert.py INSTAR QEMU72 QEMU10 QEMU_IO
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

INSTAR, Q72, Q10, QIO = [os.path.abspath(a) if os.path.exists(a) else a for a in sys.argv[1:5]]
SJSON = 'json:{"file":{"filename":"s.qcow2"}}'
TJSON = 'json:{"driver":"raw","file":{"filename":"t.raw"}}'
OVJSON = 'json:{"driver":"qcow2","backing":null,"file":{"driver":"file","filename":"ov.qcow2"}}'
CASES = [
    # convert: sources
    ["convert", "--image-opts", "driver=qcow2,file.filename=s.qcow2", "o.raw"],
    ["convert", "--image-opts", "file.filename=s.qcow2", "o.raw"],
    ["convert", "--image-opts", "file.filename=s.qcow2,foo=bar", "o.raw"],
    ["convert", "--image-opts", "driver=qcow2,file.filename=s.qcow2,foo=bar", "o.raw"],
    ["convert", "--image-opts", "driver=qcow2,file.filename=nope", "o.raw"],
    ["convert", "--image-opts", "file.filename=nope,foo=bar", "o.raw"],
    ["convert", "--image-opts", "-f", "qcow2", "driver=qcow2,file.filename=s.qcow2", "o.raw"],
    ["convert", "--image-opts", "s.qcow2", "o.raw"],
    ["convert", "-O", "qcow2", "--image-opts", "driver=qcow2,file.filename=s.qcow2",
     "driver=vpc,file.filename=v.vhd", "o.qcow2"],
    ["convert", SJSON, "o.raw"],
    ["convert", "-O", "vpc", "json:{\"driver\":\"qcow2\",\"file\":{\"filename\":\"s.qcow2\"}}", "o.vhd"],
    ["convert", "json:{\"file\":{\"filename\":\"s.qcow2\"},\"foo\":1}", "o.raw"],
    ["convert", "json:{\"file\":", "o.raw"],
    ["convert", "file:s.qcow2", "o.raw"],
    # "backing": null: the overlay alone (its unallocated ranges read as zeros), into raw and qcow2.
    ["convert", OVJSON, "o.raw"],
    ["convert", "-O", "qcow2", OVJSON, "o.qcow2"],
    ["convert", "-O", "raw", OVJSON.replace("null", '""'), "o.raw"],
    # convert: targets
    ["convert", "s.qcow2", "file:o.raw"],
    ["convert", "-O", "qcow2", "s.qcow2", "file:o.qcow2"],
    ["convert", "s.qcow2", 'json:{"file":{"filename":"o.raw"}}'],
    ["convert", "--target-image-opts", "s.qcow2", "driver=raw,file.filename=t.raw"],
    ["convert", "-n", "--target-image-opts", "s.qcow2", "driver=raw,file.filename=t.raw"],
    ["convert", "-n", "--target-image-opts", "s.qcow2", "driver=qcow2,file.filename=t.qcow2"],
    ["convert", "-n", "--target-image-opts", "s.qcow2", "file.filename=t.qcow2"],
    ["convert", "-n", "--target-image-opts", "-O", "raw", "s.qcow2", "driver=raw,file.filename=t.raw"],
    ["convert", "-n", "--target-image-opts", "-O", "raw", "nope", "driver=raw,file.filename=t.raw"],
    ["convert", "-n", "--target-image-opts", "s.qcow2", "t.raw"],
    ["convert", "-n", "--target-image-opts", "s.qcow2", "driver=raw,file.filename=t.raw,foo=bar"],
    ["convert", "-n", "--target-image-opts", "s.qcow2", "driver=raw,file.filename=nope"],
    ["convert", "-n", "s.qcow2", TJSON],
    ["convert", "-n", "s.qcow2", "file:t.raw"],
    ["convert", "-n", "-O", "qcow2", "s.qcow2", "file:t.qcow2"],
    ["convert", "-n", "s.qcow2", 'json:{"file":{"filename":"t.raw"},"foo":1}'],
    ["convert", "-n", "--image-opts", "--target-image-opts", "driver=qcow2,file.filename=s.qcow2",
     "driver=raw,file.filename=t.raw"],
    # dd: if= takes every name img_open takes; of= what bdrv_create takes (file:, not json:)
    ["dd", "--image-opts", "if=driver=qcow2,file.filename=s.qcow2", "of=o.raw"],
    ["dd", "--image-opts", "if=file.filename=s.qcow2", "of=o.raw", "bs=64k", "count=3"],
    ["dd", "--image-opts", "if=file.filename=s.qcow2,foo=bar", "of=o.raw"],
    ["dd", "--image-opts", "if=driver=qcow2,file.filename=nope", "of=o.raw"],
    ["dd", "--image-opts", "-f", "qcow2", "if=driver=qcow2,file.filename=s.qcow2", "of=o.raw"],
    ["dd", "if=" + SJSON, "of=o.raw"],
    ["dd", "if=file:s.qcow2", "of=file:o.raw"],
    ["dd", "if=" + OVJSON, "of=o.raw"],
    ["dd", "-O", "qcow2", "if=s.qcow2", "of=file:o.qcow2"],
    ["dd", "if=s.qcow2", 'of=json:{"file":{"filename":"o.raw"}}'],
    ["dd", "-O", "nope", "if=s.qcow2", 'of=json:{"file":{"filename":"o.raw"}}'],
    ["dd", "if=nope", 'of=json:{"file":{"filename":"o.raw"}}'],
    # a symbolic link as the new file: written through, the link stays
    ["create", "-q", "-f", "raw", "L", "1M"],
    ["create", "-q", "-f", "qcow2", "LQ", "1M"],
    ["create", "-q", "-f", "raw", "D", "1M"],
    ["create", "-q", "-f", "raw", "LOOP", "1M"],
    ["convert", "s.qcow2", "L"],
    ["convert", "s.qcow2", "LL"],
    ["convert", "-O", "qcow2", "s.qcow2", "LQ"],
    ["convert", "s.qcow2", "D"],
    ["convert", "s.qcow2", "LOOP"],
    ["dd", "if=s.qcow2", "of=L"],
    ["dd", "if=s.qcow2", "of=LL", "bs=1M", "count=2"],
    ["dd", "-O", "qcow2", "if=s.qcow2", "of=LQ"],
    ["dd", "if=s.qcow2", "of=D"],
    ["dd", "if=s.qcow2", "of=LOOP"],
    ["dd", "if=s.qcow2", "of=file:L"],
    # amend: the name of the image changed in place
    ["amend", "-o", "lazy_refcounts=on", "--image-opts", "driver=qcow2,file.filename=s.qcow2"],
    ["amend", "-o", "compat=0.10", "--image-opts", "file.filename=s.qcow2"],
    ["amend", "-o", "lazy_refcounts=on", "--image-opts", "file.filename=s.qcow2,foo=bar"],
    ["amend", "-o", "lazy_refcounts=on", "--image-opts", "-f", "qcow2", "driver=qcow2,file.filename=s.qcow2"],
    ["amend", "-o", "lazy_refcounts=on", "--image-opts", "driver=qcow2,file.filename=nope"],
    ["amend", "-o", "lazy_refcounts=on", SJSON],
    ["amend", "-o", "lazy_refcounts=on", "file:s.qcow2"],
    ["amend", "-o", "lazy_refcounts=on", "--image-opts", "driver=vpc,file.filename=v.vhd"],
]


def run(argv, cwd, prog):
    r = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    return r.returncode, r.stdout, r.stderr.replace(prog, "PROG").replace(os.path.basename(prog) + ":", "PROG:")


def same_files(a, b):
    """Why the two directories differ, or None."""
    fa, fb = sorted(os.listdir(a)), sorted(os.listdir(b))
    if fa != fb:
        return f"files {fa} != {fb}"
    for f in fa:
        pa, pb = os.path.join(a, f), os.path.join(b, f)
        if os.path.islink(pa) or os.path.islink(pb):
            if not (os.path.islink(pa) and os.path.islink(pb)) or os.readlink(pa) != os.readlink(pb):
                return f"{f}: symlink differs ({os.path.islink(pa)}, {os.path.islink(pb)})"
            continue
        same_bytes = open(pa, "rb").read() == open(pb, "rb").read()
        if f.endswith(".raw") or f.endswith(".img"):
            if not same_bytes:
                return f"{f}: bytes differ"
        elif not same_bytes:
            # (Byte-identical images need neither: compare and info would read the same bytes. A
            # backing file they name is itself one of the files checked here.)
            r = subprocess.run([Q72, "compare", "-q", pa, pb], capture_output=True)
            if r.returncode != 0:
                return f"{f}: data differ ({r.returncode})"
            # amend changes only the header: qemu's own view of each, by the same relative name
            ia, ib = (subprocess.run([Q72, "info", "-U", "--output=json", f], cwd=x, capture_output=True,
                                     text=True).stdout for x in (a, b))
            ia, ib = (json.loads(x) if x else {} for x in (ia, ib))
            for i in (ia, ib):
                i.pop("actual-size", None)
                i.pop("dirty-flag", None)
            if ia != ib:
                return f"{f}: qemu-img info differs:\n  {ia}\n  {ib}"
    return None


def fixtures(d):
    def q(*a):
        subprocess.run(list(a), cwd=d, check=True, capture_output=True)
    q(Q72, "create", "-q", "-f", "qcow2", "s.qcow2", "4M")
    q(QIO, "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 3M 64k", "s.qcow2")
    q(Q72, "create", "-q", "-f", "qcow2", "-b", "s.qcow2", "-F", "qcow2", "ov.qcow2")
    q(QIO, "-c", "write -P 0x44 2M 64k", "-c", "write -z 0 64k", "ov.qcow2")
    q(Q72, "create", "-q", "-f", "vpc", "v.vhd", "2M")
    q(QIO, "-f", "vpc", "-c", "write -P 0x33 0 64k", "v.vhd")
    q(Q72, "create", "-q", "-f", "raw", "t.raw", "4M")
    q(Q72, "create", "-q", "-f", "qcow2", "t.qcow2", "4M")
    # Targets that are symbolic links: qemu writes through them (open(O_CREAT) follows the link).
    for name, text in (("lt.img", "old raw\n"), ("lq.qcow2", "old text\n")):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    os.symlink("lt.img", os.path.join(d, "L"))
    os.symlink("lq.qcow2", os.path.join(d, "LQ"))
    os.symlink("L", os.path.join(d, "LL"))
    os.symlink("dangling.img", os.path.join(d, "D"))
    os.symlink("LOOP2", os.path.join(d, "LOOP"))
    os.symlink("LOOP", os.path.join(d, "LOOP2"))


passed = failed = 0
with tempfile.TemporaryDirectory() as top:
    base = os.path.join(top, "base")
    os.mkdir(base)
    fixtures(base)
    for oracle, version in ((Q72, "7.2.0"), (Q10, "10.0.0")):
        if not os.path.exists(oracle):
            print(f"SKIPPED LOUDLY: {oracle} is missing")
            sys.exit(77)
        for i, case in enumerate(CASES):
            dw, dg = os.path.join(top, f"w{i}"), os.path.join(top, f"g{i}")
            for dst in (dw, dg):
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(base, dst, symlinks=True)
            want = run([oracle, *case], dw, oracle)
            got = run([INSTAR, "--qemu-version", version, *case], dg, INSTAR)
            why = None if want == got else f"want {want}\n  got  {got}"
            why = why or same_files(dw, dg)
            if why is None:
                passed += 1
            else:
                failed += 1
                print(f"FAIL {version} {' '.join(case)}\n  {why}")
    # --salvage over a truncated qcow2 whose data clusters lie past the end of the file. qemu's
    # file protocol reads zeros there, so neither qemu-img sees an error, with or without
    # --salvage. instar's reader refuses such clusters (qcow2-read-past-eof, docs/quirks.md): without
    # --salvage the conversion fails naming the image and leaves no target; with it the output is
    # qemu's byte for byte and the exit status 0, with qemu's salvage warnings for each sector.
    trunc = os.path.join(top, "trunc")
    os.mkdir(trunc)
    subprocess.run([Q72, "create", "-q", "-f", "qcow2", "b.qcow2", "4M"], cwd=trunc, check=True)
    subprocess.run([QIO, "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 1M 64k", "-c", "write -P 0x33 2M 64k",
                    "b.qcow2"], cwd=trunc, check=True, capture_output=True)
    os.truncate(os.path.join(trunc, "b.qcow2"), 0x60000)  # the clusters at 1M and 2M are past the end
    for oracle, version in ((Q72, "7.2.0"), (Q10, "10.0.0")):
        for salvage in ([], ["--salvage"], ["-q", "--salvage"]):
            for f in ("want.raw", "got.raw"):
                if os.path.exists(os.path.join(trunc, f)):
                    os.unlink(os.path.join(trunc, f))
            want = run([oracle, "convert", *salvage, "b.qcow2", "want.raw"], trunc, oracle)
            got = run([INSTAR, "--qemu-version", version, "convert", *salvage, "b.qcow2", "got.raw"], trunc, INSTAR)
            lines = got[2].splitlines()
            if not salvage:
                ok = (want[0] == 0 and got[0] == 1 and not os.path.exists(os.path.join(trunc, "got.raw"))
                      and "error while converting 'b.qcow2': Data cluster offset 0x60000 is past the end" in got[2])
            else:
                same = open(os.path.join(trunc, "want.raw"), "rb").read() == open(os.path.join(trunc, "got.raw"),
                                                                                    "rb").read()
                corrupt = [l for l in lines if l.startswith("qcow2: Image is corrupt: Data cluster offset 0x60000")]
                warned = [l for l in lines if l.startswith("PROG: warning: error while reading ")]
                ok = (want == (0, "", "") and got[0] == 0 and got[1] == "" and same and len(corrupt) == 1
                      and len(warned) == (0 if "-q" in salvage else len(lines) - 1))
                ok = ok and ("-q" in salvage or "PROG: warning: error while reading offset 2097152: "
                             "Input/output error" in lines)
            if ok:
                passed += 1
            else:
                failed += 1
                print(f"FAIL {version} salvage {salvage}\n  want {want}\n  got  {got[0]} {got[1]!r} {lines[:3]}")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
