#!/usr/bin/env bash
# Startup cost: `instar --version` against `qemu-img --version`, side by side in one hyperfine run.
# Usage: startup.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
hyperfine -N --warmup 20 --runs 300 \
  "$build/tools/instar/instar --version" \
  "/usr/bin/qemu-img --version" \
  "/opt/qemu-img-10/root/usr/bin/qemu-img --version"
