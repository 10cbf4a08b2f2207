#!/usr/bin/env python3
"""`instar resize --output=json` (an instar extension, docs/resize.md): the envelope's fields for a
grow, a no-op, a shrink and a vpc grow (whose new size is the format's rounded one, as info reads
it back), a 500-extent vmdk; -q prints nothing; a bad --output value is refused; without --output the output stays
qemu-img's "Image resized.".

Usage: test_resize_json.py INSTAR QEMU_IMG
"""
import json
import os
import subprocess
import sys
import tempfile

INSTAR, QIMG = sys.argv[1], sys.argv[2]
passed = failed = 0


def check(label, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {label} {detail}")


def run(*args):
    return subprocess.run([INSTAR, *args], capture_output=True, text=True)


def info(path, fmt):
    out = subprocess.run([QIMG, "info", "-f", fmt, "--output=json", path], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


with tempfile.TemporaryDirectory() as d:
    img = os.path.join(d, "a.qcow2")
    subprocess.run([QIMG, "create", "-q", "-f", "qcow2", img, "1G"], check=True)
    r = run("resize", "--output=json", img, "+1G")
    check("grow exit", r.returncode == 0, r.stderr)
    j = json.loads(r.stdout) if r.returncode == 0 else {}
    check("grow fields", j == {"filename": img, "format": "qcow2", "action": "grow",
                               "old_virtual_size": 1 << 30, "new_virtual_size": 2 << 30,
                               "new_file_size": os.path.getsize(img)}, str(j))
    check("grow size", info(img, "qcow2")["virtual-size"] == 2 << 30)
    r = run("resize", "--output=json", img, "2G")
    check("noop", r.returncode == 0 and json.loads(r.stdout)["action"] == "noop", r.stdout + r.stderr)
    r = run("resize", "--output=json", "--shrink", img, "512M")
    check("shrink", r.returncode == 0 and json.loads(r.stdout)["action"] == "shrink"
          and json.loads(r.stdout)["new_virtual_size"] == 512 << 20, r.stdout + r.stderr)
    r = run("resize", "-q", "--output=json", img, "1G")
    check("quiet", r.returncode == 0 and r.stdout == "", r.stdout + r.stderr)
    r = run("resize", "--output=xml", img, "2G")
    check("bad value", r.returncode == 1 and "--output must be used with human or json" in r.stderr, r.stderr)
    r = run("resize", img, "2G")
    check("human", r.returncode == 0 and r.stdout == "Image resized.\n", r.stdout)
    vhd = os.path.join(d, "b.vhd")
    subprocess.run([QIMG, "create", "-q", "-f", "vpc", vhd, "100M"], check=True)
    r = run("resize", "-f", "vpc", "--output=json", vhd, "200M")
    j = json.loads(r.stdout) if r.returncode == 0 else {}
    check("vpc rounded size", r.returncode == 0 and j.get("new_virtual_size") == info(vhd, "vpc")["virtual-size"]
          and j.get("new_virtual_size") != 200 << 20, r.stdout + r.stderr)

    # A 500-extent vmdk: the files' lengths outgrow the sandbox's 2 KiB operation argument, so the
    # edit path carries them in a plan device (docs/edit.md).
    big = os.path.join(d, "big.vmdk")
    subprocess.run([QIMG, "create", "-q", "-f", "vmdk", "-o", "subformat=twoGbMaxExtentFlat", big, "1000G"], check=True)
    r = run("resize", "-f", "vmdk", "--output=json", big, "+2G")
    j = json.loads(r.stdout) if r.returncode == 0 else {}
    check("500 extents", r.returncode == 0 and j.get("new_virtual_size") == 1002 << 30
          and info(big, "vmdk")["virtual-size"] == 1002 << 30, r.stdout + r.stderr)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
