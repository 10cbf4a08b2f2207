#!/usr/bin/env bash
# `instar commit` against `qemu-img commit` (7.2 and 10.0), side by side in one hyperfine run: a
# 256 MiB overlay (random data in 1 MiB runs over the whole disk) committed into a fully allocated
# 1 GiB qcow2 base (and into an empty one, a compressed one, one with extended L2 entries), both restored from pristine copies before every run (not timed); page cache warm.
# Prints each median and instar's ratio to each qemu.
# Usage: commit.sh [BUILD_DIR] [RUNS]     (docs/commit.md has the figures)
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
runs=${2:-3}
instar="$build/tools/instar/instar"
q72=/usr/bin/qemu-img
q10=/opt/qemu-img-10/root/usr/bin/qemu-img
qio=/usr/bin/qemu-io
dir=$(mktemp -d /tmp/instar-bench-commit-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
$q72 create -q -f qcow2 base0.qcow2 1G
$qio -f qcow2 -c "write -P 0x11 0 1G" base0.qcow2 >/dev/null
cp base0.qcow2 base.qcow2
$q72 create -q -f qcow2 -b base.qcow2 -F qcow2 top0.qcow2
python3 - > top.cmds <<'PY'
import random
random.seed(11)
for i in sorted(random.sample(range(1024), 256)):
    print("write -P %d %dM 1M" % (i % 251 + 1, i))
PY
$qio -f qcow2 top0.qcow2 < top.cmds >/dev/null
$q72 create -q -f qcow2 empty0.qcow2 1G
# A compressed base, as cloud images come (convert -c of the full base: every cluster compressed),
# so that every cluster the overlay writes is copied on write out of a compressed one.
$q72 convert -c -O qcow2 base0.qcow2 comp0.qcow2
# A full base with extended L2 entries (round 35: the existing-image writer's subcluster paths).
$q72 convert -O qcow2 -o extended_l2=on base0.qcow2 l2base0.qcow2
prep="cp base0.qcow2 base.qcow2 && cp top0.qcow2 top.qcow2"
eval "$prep"
cat base0.qcow2 top0.qcow2 >/dev/null # warm the page cache

median() { python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results']; print(' '.join('%.4f' % x['median'] for x in r))" "$1"; }
bench() { # name, then the arguments after `commit`
  local name=$1; shift
  hyperfine -N --warmup 1 --runs "$runs" --prepare "sh -c '$prep'" --export-json b.json \
    "$instar commit -q $*" "$q72 commit -q $*" "$q10 commit -q $*" >/dev/null
  read -r mi m7 m10 <<<"$(median b.json)"
  python3 - "$name" "$mi" "$m7" "$m10" <<'PY'
import sys
name, i, a, b = sys.argv[1], *map(float, sys.argv[2:])
print("%-44s instar %7.3f s  7.2 %7.3f s  10.0 %7.3f s  ratio %.2f / %.2f" % (name, i, a, b, i / a, i / b))
PY
}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
bench "256 MiB overlay into 1 GiB base (emptied)" top.qcow2
bench "256 MiB overlay into 1 GiB base, -d" -d top.qcow2
prep="cp empty0.qcow2 base.qcow2 && cp top0.qcow2 top.qcow2"
bench "256 MiB overlay into empty 1 GiB base" top.qcow2
prep="cp comp0.qcow2 base.qcow2 && cp top0.qcow2 top.qcow2"
bench "256 MiB overlay into compressed 1 GiB base" top.qcow2
prep="cp l2base0.qcow2 base.qcow2 && cp top0.qcow2 top.qcow2"
bench "256 MiB overlay into extended-L2 1 GiB base" top.qcow2
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
