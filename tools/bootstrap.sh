#!/usr/bin/env bash
# The README's first command: install dependencies (Debian 12, as root), build into build/, and run
# instar on an image it makes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install-deps.sh
# CI treats warnings as errors (tools/build.sh reads them off the build); a developer's build only
# shows them.
bash tools/build.sh
bash tools/demo.sh build
