#!/usr/bin/env bash
# `instar info` against `qemu-img info` (7.2 and 10.0) on the same qcow2, side by side in one
# hyperfine run; the image (10G, 8M written, one snapshot) is made fresh. Usage: info.sh [BUILD_DIR]
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
dir=$(mktemp -d /tmp/instar-bench-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
qemu-img create -q -f qcow2 bench.qcow2 10G
qemu-io -c 'write 0 8M' bench.qcow2 >/dev/null
qemu-img snapshot -c s1 bench.qcow2
hyperfine -N --warmup 10 --runs 100 \
  "$build/tools/instar/instar info bench.qcow2" \
  "/usr/bin/qemu-img info bench.qcow2" \
  "/opt/qemu-img-10/root/usr/bin/qemu-img info bench.qcow2"
