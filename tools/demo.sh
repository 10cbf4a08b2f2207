#!/usr/bin/env bash
# A short tour of instar, run by tools/bootstrap.sh: it makes images with instar itself, then
# inspects them. Usage: demo.sh BUILD_DIR
set -euo pipefail
instar="$(cd "$1" && pwd)/tools/instar/instar"
demo=$(mktemp -d /tmp/instar-demo-XXXXXX)
trap 'rm -rf "$demo"' EXIT
cd "$demo"
set -x
"$instar" --version
"$instar" formats --output=json | grep -c '"name"'
"$instar" create -f qcow2 base.qcow2 1G
"$instar" create -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2
"$instar" create -f vhdx --output=json disk.vhdx 10G
"$instar" formats --probe overlay.qcow2
"$instar" info --backing-chain overlay.qcow2
"$instar" info --output=json overlay.qcow2
"$instar" create -f qcow2 -o help
