#!/usr/bin/env bash
# `instar snapshot -c` against `qemu-img snapshot -c` (7.2 and 10.0) on a 1 GiB qcow2 whose every
# cluster holds data (16384 refcounts to raise, two L2 tables to rewrite), side by side in one
# hyperfine run; each run starts from a fresh copy (--prepare, not timed), page cache warm. Prints
# each median and instar's ratio to each qemu.
# Usage: snapshot.sh [BUILD_DIR] [RUNS]     (docs/snapshot.md has the figures)
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
runs=${2:-10}
instar="$build/tools/instar/instar"
q72=/usr/bin/qemu-img
q10=/opt/qemu-img-10/root/usr/bin/qemu-img
qio=/usr/bin/qemu-io
dir=$(mktemp -d /tmp/instar-bench-snapshot-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
$q72 create -q -f qcow2 base.qcow2 1G
$qio -c "write -P 0x5a 0 1G" base.qcow2 >/dev/null
# Same result as qemu-img's (dates aside) before timing anything.
cp base.qcow2 a.qcow2 && cp base.qcow2 b.qcow2
$instar snapshot -c bench a.qcow2 && $q10 snapshot -c bench b.qcow2
if ! cmp -s <(python3 -c 'import sys; b=bytearray(open(sys.argv[1],"rb").read()); import struct; o=struct.unpack(">Q",b[64:72])[0]; b[o+16:o+24]=bytes(8); sys.stdout.buffer.write(b)' a.qcow2) \
            <(python3 -c 'import sys; b=bytearray(open(sys.argv[1],"rb").read()); import struct; o=struct.unpack(">Q",b[64:72])[0]; b[o+16:o+24]=bytes(8); sys.stdout.buffer.write(b)' b.qcow2); then
  echo "instar's image differs from qemu-img's" >&2
  exit 1
fi
rm a.qcow2 b.qcow2
cat base.qcow2 >/dev/null # warm the page cache
hyperfine -N --warmup 1 --runs "$runs" --export-json snapshot.json \
  --prepare "cp --reflink=auto base.qcow2 w.qcow2" \
  "$instar --qemu-version 10.0 snapshot -c bench w.qcow2" "$q72 snapshot -c bench w.qcow2" \
  "$q10 snapshot -c bench w.qcow2" >/dev/null
python3 - snapshot.json <<'PY'
import json, sys
r = [x["median"] for x in json.load(open(sys.argv[1]))["results"]]
print("%-40s instar %7.3f s  7.2 %7.3f s  10.0 %7.3f s  ratio %.2f / %.2f" %
      ("snapshot -c (1 GiB qcow2, all data)", r[0], r[1], r[2], r[0] / r[1], r[0] / r[2]))
PY
# The same image with two persistent bitmaps (round 34: stored anew after the snapshot, as qemu's
# close stores them).
cp base.qcow2 bm.qcow2
$q72 bitmap --add bm.qcow2 b0
$q72 bitmap --add -g 4k bm.qcow2 b4k
$qio -c "write -P 0x5b 0 64M" bm.qcow2 >/dev/null
hyperfine -N --warmup 1 --runs "$runs" --export-json snapshot-bm.json \
  --prepare "cp --reflink=auto bm.qcow2 w.qcow2" \
  "$instar --qemu-version 10.0 snapshot -c bench w.qcow2" "$q72 snapshot -c bench w.qcow2" \
  "$q10 snapshot -c bench w.qcow2" >/dev/null
python3 - snapshot-bm.json <<'PY'
import json, sys
r = [x["median"] for x in json.load(open(sys.argv[1]))["results"]]
print("%-40s instar %7.3f s  7.2 %7.3f s  10.0 %7.3f s  ratio %.2f / %.2f" %
      ("snapshot -c (1 GiB, 2 bitmaps)", r[0], r[1], r[2], r[0] / r[1], r[0] / r[2]))
PY
