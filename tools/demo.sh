#!/usr/bin/env bash
# A short tour of instar, run by tools/bootstrap.sh. Usage: demo.sh BUILD_DIR
# (instar create is not implemented yet, so the demo image is made with qemu-img.)
set -euo pipefail
instar="$(cd "$1" && pwd)/tools/instar/instar"
demo=$(mktemp -d /tmp/instar-demo-XXXXXX)
trap 'rm -rf "$demo"' EXIT
cd "$demo"
qemu-img create -q -f qcow2 base.qcow2 1G
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2
set -x
"$instar" --version
"$instar" formats --output=json | grep -c '"name"'
"$instar" formats --probe overlay.qcow2
"$instar" info --backing-chain overlay.qcow2
"$instar" info --output=json overlay.qcow2
"$instar" create -f qcow2 -o help
