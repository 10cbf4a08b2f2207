#!/usr/bin/env bash
# `instar create` against `qemu-img create` (7.2 and 10.0), side by side in one hyperfine run per
# case: qcow2 1T, and qcow2 10G preallocation=metadata. Each program writes its own file (replaced on
# every run, as qemu-img replaces it). Usage: create.sh [BUILD_DIR]
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
dir=$(mktemp -d /tmp/instar-bench-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
instar="$build/tools/instar/instar"
q72=/usr/bin/qemu-img
q10=/opt/qemu-img-10/root/usr/bin/qemu-img
for case in "|1T" "-o preallocation=metadata|10G"; do
  opts=${case%%|*}
  size=${case##*|}
  echo "== qcow2 $opts $size"
  hyperfine -N --warmup 3 --runs 30 \
    "$instar create -q -f qcow2 $opts a.qcow2 $size" \
    "$q72 create -q -f qcow2 $opts b.qcow2 $size" \
    "$q10 create -q -f qcow2 $opts c.qcow2 $size"
done
