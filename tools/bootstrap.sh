#!/usr/bin/env bash
# The README's first command: install dependencies (Debian 12, as root), build into build/, and run
# instar on an image it makes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
# CI treats warnings as errors; a developer's build only shows them.
werror=false
[ "${CI:-}" = true ] && werror=true
if [ -d build ]; then
  meson configure build -Dwerror=$werror >/dev/null
else
  meson setup build -Dwerror=$werror >/dev/null
fi
ninja -C build
bash tools/demo.sh build
