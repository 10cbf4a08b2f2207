#!/usr/bin/env bash
# `instar check` against `qemu-img check` (7.2 and 10.0), side by side in one hyperfine run per
# workload, page cache warm; prints each median and instar's ratio to each qemu.
# Images: a 1 GiB qcow2 with half its 64 KiB clusters allocated (every other cluster: 8192 data
# clusters, the most L2 entries and refcount changes for that much data), the same converted to
# 512-byte clusters (1 Mi data clusters, 2 Mi refcounts to compare), and a copy of the first with
# LEAKS leaked clusters (every other cluster past its end, refcount 1: one "Leaked cluster" line
# each). `-r leaks` runs on a fresh copy each time (hyperfine --prepare; the copy is not timed).
# Usage: check.sh [BUILD_DIR] [RUNS] [LEAKS]     (docs/check.md has the figures)
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
runs=${2:-5}
leaks=${3:-10000}
instar="$build/tools/instar/instar"
. "$(dirname "$0")/lib.sh"
dir=$(mktemp -d /tmp/instar-bench-check-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
write_half_allocated half.raw
$q72 convert -f raw -O qcow2 half.raw half.qcow2
$q72 convert -f raw -O qcow2 -o cluster_size=512 half.raw half512.qcow2
rm half.raw
cp half.qcow2 leaks.qcow2
python3 - leaks.qcow2 "$leaks" <<'PY'
import os, struct, sys
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    h = f.read(112)
    cs = 1 << struct.unpack(">I", h[20:24])[0]
    rt = struct.unpack(">Q", h[48:56])[0]
    first = (os.path.getsize(path) + cs - 1) // cs
    f.truncate((first + 2 * n) * cs)
    bits = (cs.bit_length() - 1) + 3 - 4  # 16-bit refcounts
    for c in range(first, first + 2 * n, 2):
        f.seek(rt + 8 * (c >> bits))
        rb = struct.unpack(">Q", f.read(8))[0] & ~0x1ff
        assert rb, "leaked cluster %d has no refcount block" % c
        f.seek(rb + 2 * (c & ((1 << bits) - 1)))
        f.write(struct.pack(">H", 1))
PY
cat half.qcow2 half512.qcow2 leaks.qcow2 >/dev/null # warm the page cache

ver() { "$1" --version | sed -n 's/.*version \([0-9]*\.[0-9]*\).*/\1/p'; }
# instar's output must be qemu-img's before its time means anything.
for img in half.qcow2 half512.qcow2 leaks.qcow2; do
  for q in "$q72" "$q10"; do
    if ! cmp -s <($instar --qemu-version "$(ver "$q")" check --output=json "$img" 2>&1) \
                <($q check --output=json "$img" 2>&1); then
      echo "instar's check of $img differs from $q's" >&2
      exit 1
    fi
  done
done

median() { python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results']; print(' '.join('%.4f' % x['median'] for x in r))" "$1"; }
report() { # name, json
  read -r mi m7 m10 <<<"$(median "$2")"
  python3 - "$1" "$mi" "$m7" "$m10" <<'PY'
import sys
name, i, a, b = sys.argv[1], *map(float, sys.argv[2:])
print("%-44s instar %7.3f s  7.2 %7.3f s  10.0 %7.3f s  ratio %.2f / %.2f" % (name, i, a, b, i / a, i / b))
PY
}
bench() { # name, then the arguments after `check`
  local name=$1; shift
  hyperfine -N -i --warmup 1 --runs "$runs" --export-json b.json \
    "$instar check $*" "$q72 check $*" "$q10 check $*" >/dev/null
  report "$name" b.json
}
bench "qcow2 1 GiB half allocated, 64 KiB clusters" half.qcow2
bench "qcow2 1 GiB half allocated, 512 B clusters" half512.qcow2
bench "qcow2 1 GiB half allocated, $leaks leaks" leaks.qcow2
# -r leaks: each run repairs a fresh copy (the prepare step is not timed; hyperfine needs a shell
# for it, the measured commands still run without one).
hyperfine -N -i --runs "$runs" --export-json r.json \
  --prepare "cp leaks.qcow2 work.qcow2" "$instar check -r leaks work.qcow2" \
  --prepare "cp leaks.qcow2 work.qcow2" "$q72 check -r leaks work.qcow2" \
  --prepare "cp leaks.qcow2 work.qcow2" "$q10 check -r leaks work.qcow2" >/dev/null
report "check -r leaks, $leaks leaks" r.json
