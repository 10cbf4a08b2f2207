#!/usr/bin/env bash
# `instar resize` against `qemu-img resize` (7.2 and 10.0), side by side in one hyperfine run per
# workload; each run starts from a fresh copy of the image (--prepare); prints each median and
# instar's ratio to each qemu.
# Usage: resize.sh [BUILD_DIR] [RUNS]     (docs/resize.md has the figures)
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
runs=${2:-5}
instar="$build/tools/instar/instar"
q72=/usr/bin/qemu-img
q10=/opt/qemu-img-10/root/usr/bin/qemu-img
qio=/usr/bin/qemu-io
dir=$(mktemp -d /tmp/instar-bench-resize-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
$q72 create -q -f qcow2 t1t.qcow2 1T
$q72 create -q -f qcow2 t64m.qcow2 64M
$qio -c "write -P 1 0 8M" -c "write -P 2 40M 8M" t64m.qcow2 >/dev/null
$q72 create -q -f qcow2 t2g.qcow2 2G
$qio -c "write -P 1 0 8M" -c "write -P 2 1500M 8M" t2g.qcow2 >/dev/null
# Persistent bitmaps (round 34: carried to the new size, stored anew as qemu's close does).
$q72 create -q -f qcow2 tbm.qcow2 1G
$q72 bitmap --add tbm.qcow2 b0
$q72 bitmap --add -g 4k tbm.qcow2 b4k
$qio -c "write -P 1 0 64M" -c "write -P 2 900M 64M" tbm.qcow2 >/dev/null

median() { python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results']; print(' '.join('%.4f' % x['median'] for x in r))" "$1"; }
bench() { # name, template, then the resize arguments after the image
  local name=$1 tpl=$2; shift 2
  hyperfine -N -i --warmup 1 --runs "$runs" --prepare "cp $tpl img.qcow2" --export-json b.json \
    "$instar resize -q img.qcow2 $*" "$q72 resize -q img.qcow2 $*" "$q10 resize -q img.qcow2 $*" >/dev/null
  read -r mi m7 m10 <<<"$(median b.json)"
  python3 - "$name" "$mi" "$m7" "$m10" <<'PY'
import sys
name, i, a, b = sys.argv[1], *map(float, sys.argv[2:])
print("%-40s instar %7.3f s  7.2 %7.3f s  10.0 %7.3f s  ratio %.2f / %.2f" % (name, i, a, b, i / a, i / b))
PY
}
# The issue's workload: qcow2 1 TiB -> 2 TiB (L1 growth).
bench "qcow2 1T -> 2T" t1t.qcow2 2T
bench "qcow2 64M (16M data) -> +1G" t64m.qcow2 +1G
bench "qcow2 2G (16M data) --shrink 1G" t2g.qcow2 --shrink 1G
bench "qcow2 1T (empty) --shrink 1G" t1t.qcow2 --shrink 1G
bench "qcow2 1G, 2 bitmaps -> 2G" tbm.qcow2 2G
bench "qcow2 1G, 2 bitmaps --shrink 512M" tbm.qcow2 --shrink 512M
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
