#!/usr/bin/env bash
# A short tour of instar, run by tools/bootstrap.sh. Usage: demo.sh BUILD_DIR
set -euo pipefail
instar="$1/tools/instar/instar"
demo=$(mktemp -d /tmp/instar-demo-XXXXXX)
trap 'rm -rf "$demo"' EXIT
set -x
"$instar" --version
"$instar" formats
"$instar" create -f qcow2 -o help
