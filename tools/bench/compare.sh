#!/usr/bin/env bash
# `instar compare` against `qemu-img compare` (7.2 and 10.0), side by side in one hyperfine run per
# workload, page cache warm; prints each median and instar's ratio to each qemu.
# Usage: compare.sh [BUILD_DIR] [RUNS]     (docs/compare.md has the figures)
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
runs=${2:-5}
instar="$build/tools/instar/instar"
q72=/usr/bin/qemu-img
q10=/opt/qemu-img-10/root/usr/bin/qemu-img
qio=/usr/bin/qemu-io
dir=$(mktemp -d /tmp/instar-bench-compare-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
# 1 GiB of random data (every byte must be compared), a copy, and a copy whose last cluster differs.
python3 - <<'PY'
import os
with open("full.raw", "wb") as f:
    for i in range(1024):
        f.write(os.urandom(1 << 20))
PY
cp full.raw full2.raw
cp full.raw last.raw
$qio -f raw -c "write -P 0x5a 1073676288 64k" last.raw >/dev/null
# 1 GiB qcow2 with half of its 64 KiB clusters allocated (alternating 1 MiB runs), its copy, and a
# copy whose last cluster differs.
$q72 create -q -f qcow2 half.qcow2 1G
python3 - > half.cmds <<'PY'
for i in range(0, 1024, 2):
    print("write -P %d %dM 1M" % (i % 251 + 1, i))
PY
$qio -f qcow2 half.qcow2 < half.cmds >/dev/null
$q72 convert -O qcow2 half.qcow2 half2.qcow2
cp half2.qcow2 halflast.qcow2
$qio -f qcow2 -c "write -P 0x5a 1073676288 64k" halflast.qcow2 >/dev/null
cat full.raw full2.raw last.raw half.qcow2 half2.qcow2 halflast.qcow2 >/dev/null # warm the page cache

median() { python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results']; print(' '.join('%.4f' % x['median'] for x in r))" "$1"; }
bench() { # name, then the common tail of the three command lines
  local name=$1; shift
  hyperfine -N -i --warmup 1 --runs "$runs" --export-json b.json \
    "$instar compare $*" "$q72 compare $*" "$q10 compare $*" >/dev/null
  read -r mi m7 m10 <<<"$(median b.json)"
  python3 - "$name" "$mi" "$m7" "$m10" <<'PY'
import sys
name, i, a, b = sys.argv[1], *map(float, sys.argv[2:])
print("%-40s instar %7.3f s  7.2 %7.3f s  10.0 %7.3f s  ratio %.2f / %.2f" % (name, i, a, b, i / a, i / b))
PY
}
bench "raw 1 GiB random, identical" -f raw -F raw full.raw full2.raw
bench "raw 1 GiB random, last cluster differs" -f raw -F raw full.raw last.raw
bench "qcow2 1 GiB half allocated, identical" half.qcow2 half2.qcow2
bench "qcow2 1 GiB half allocated, last differs" half.qcow2 halflast.qcow2
bench "qcow2 1 GiB half allocated, identical, -s" -s half.qcow2 half2.qcow2
