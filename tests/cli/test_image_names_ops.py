#!/usr/bin/env python3
"""Image names in check, map, compare and measure (cli/image_name.h): `file:`, `json:{...}` and `--image-opts`
name local files as qemu-img 7.2 and 10.0 take them; instar's stdout, stderr (program name
normalised) and exit code must equal each oracle's.

Usage: test_image_names_ops.py INSTAR QEMU72 QEMU10 QEMU_IO
"""
import os
import subprocess
import sys
import tempfile

INSTAR, Q72, Q10, QIO = [os.path.abspath(a) if os.path.exists(a) else a for a in sys.argv[1:5]]
JSON = '{"driver":"qcow2","file":{"driver":"file","filename":"a.qcow2"}}'
OVJSON = '{"driver":"qcow2","backing":null,"file":{"driver":"file","filename":"ov.qcow2"}}'
CASES = [
    ["map", "--image-opts", "driver=qcow2,file.filename=a.qcow2"],
    ["map", "--output=json", "--image-opts", "driver=qcow2,file.filename=a.qcow2"],
    ["map", "json:" + JSON],
    ["map", "file:a.qcow2"],
    ["map", "--image-opts", "driver=qcow2,file.filename=nope.qcow2"],
    ["check", "--image-opts", "driver=qcow2,file.filename=a.qcow2"],
    ["check", "--output=json", "--image-opts", "driver=qcow2,file.filename=a.qcow2"],
    ["check", "--output=json", "json:" + JSON],
    ["check", "--output=json", "file:a.qcow2"],
    ["check", "--image-opts", "driver=qcow2,file.filename=nope.qcow2"],
    ["check", "--image-opts", "-f", "qcow2", "a.qcow2"],
    ["check", "--image-opts", "driver=qcow2,file.filename=a.qcow2,foo=bar"],
    ["map", "--image-opts", "driver=qcow2,file.filename=a.qcow2,foo=bar"],
    # short-form flags: KEY=on, noKEY=off, each with qemu's deprecation warning
    ["map", "--image-opts", "driver=qcow2,file.filename=a.qcow2,force-share"],
    ["check", "--image-opts", "driver=qcow2,file.filename=a.qcow2,noforce-share"],
    ["compare", "--image-opts", "driver=qcow2,file.filename=a.qcow2", "driver=qcow2,file.filename=b.qcow2"],
    ["compare", "--image-opts", "driver=qcow2,file.filename=a.qcow2", "driver=qcow2,file.filename=c.qcow2"],
    ["compare", "--image-opts", "file.filename=a.qcow2", "file.filename=b.qcow2"],
    ["compare", "--image-opts", "-f", "qcow2", "driver=qcow2,file.filename=a.qcow2", "b.qcow2"],
    ["compare", "--image-opts", "driver=qcow2,file.filename=a.qcow2", "driver=qcow2,file.filename=nope"],
    ["compare", "json:" + JSON, "file:b.qcow2"],
    ["measure", "--image-opts", "-O", "qcow2", "driver=qcow2,file.filename=a.qcow2"],
    ["measure", "-O", "qcow2", "--image-opts", "driver=qcow2,file.filename=nope"],
    ["measure", "--image-opts", "-f", "qcow2", "-O", "qcow2", "driver=qcow2,file.filename=a.qcow2"],
    ["measure", "-O", "raw", "file:a.qcow2"],
    ["measure", "--output=json", "-O", "qcow2", "json:" + JSON],
    # An unknown option without driver=: qemu opens and probes first, then names the format.
    ["check", "--image-opts", "file.filename=a.qcow2,foo=bar"],
    ["check", "-r", "all", "--image-opts", "file.filename=a.qcow2,foo=bar"],
    ["check", "--image-opts", "file.filename=nope.qcow2,foo=bar"],
    ["check", "json:{\"file\":{\"filename\":\"a.qcow2\"},\"foo\":1}"],
    ["map", "--image-opts", "file.filename=a.qcow2,foo=bar"],
    ["map", "--image-opts", "file.filename=r.vhd,foo=bar"],
    ["compare", "--image-opts", "file.filename=a.qcow2,foo=bar", "file.filename=b.qcow2"],
    ["compare", "--image-opts", "file.filename=a.qcow2", "file.filename=r.vhd,foo=bar"],
    ["measure", "-O", "qcow2", "--image-opts", "file.filename=a.qcow2,foo=bar"],
    ["measure", "-O", "qcow2", "--image-opts", "file.filename=nope,foo=bar"],
    # "backing": null: the overlay alone, its unallocated ranges unallocated at depth 0 (read as zeros).
    ["map", "json:" + OVJSON],
    ["map", "--output=json", "json:" + OVJSON],
    ["map", "--output=json", "json:" + OVJSON.replace("null", '""')],
    ["compare", "json:" + OVJSON, "ov.qcow2"],
    ["compare", "-s", "ov.qcow2", "json:" + OVJSON],
    ["compare", "json:" + OVJSON, "json:" + OVJSON],
]


def run(argv, cwd, prog):
    r = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    return r.returncode, r.stdout, r.stderr.replace(prog, "PROG").replace(os.path.basename(prog) + ":", "PROG:")


passed = failed = 0
with tempfile.TemporaryDirectory() as d:
    subprocess.run([Q72, "create", "-q", "-f", "qcow2", "a.qcow2", "8M"], cwd=d, check=True)
    subprocess.run([QIO, "-c", "write -P 1 0 1M", "a.qcow2"], cwd=d, check=True, capture_output=True)
    subprocess.run(["cp", "a.qcow2", "b.qcow2"], cwd=d, check=True)
    subprocess.run(["cp", "a.qcow2", "c.qcow2"], cwd=d, check=True)
    subprocess.run([Q72, "create", "-q", "-f", "vpc", "r.vhd", "8M"], cwd=d, check=True)
    subprocess.run([QIO, "-c", "write -P 2 64k 4k", "c.qcow2"], cwd=d, check=True, capture_output=True)
    subprocess.run([Q72, "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "ov.qcow2"], cwd=d,
                   check=True)
    subprocess.run([QIO, "-c", "write -P 3 2M 64k", "-c", "write -z 512k 64k", "ov.qcow2"], cwd=d, check=True,
                   capture_output=True)
    for oracle, version in ((Q72, "7.2.0"), (Q10, "10.0.0")):
        if not os.path.exists(oracle):
            print(f"SKIPPED LOUDLY: {oracle} is missing")
            sys.exit(77)
        for case in CASES:
            want = run([oracle, *case], d, oracle)
            got = run([INSTAR, "--qemu-version", version, *case], d, INSTAR)
            if want == got:
                passed += 1
            else:
                failed += 1
                print(f"FAIL {version} {' '.join(case)}\n  want {want}\n  got  {got}")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
