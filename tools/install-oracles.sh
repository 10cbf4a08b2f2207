#!/usr/bin/env bash
# Installs the qemu-img versions instar's output is compared against, from Debian's archive:
#   qemu-img 7.2  (bookworm's qemu-utils, system-wide: /usr/bin/qemu-img)
#   qemu-img 10.0 (bookworm-backports' qemu-utils, unpacked, not installed: $DEST/root/usr/bin/qemu-img)
# plus qemu-io and the libyal readers (qcowinfo, vhdiinfo, vmdkinfo) used as independent validators.
# The backports source uses the archive address the machine's own apt sources name, so it works
# behind a mirror. Usage: install-oracles.sh [DEST]   (default /opt/qemu-img-10). Idempotent; root.
set -euo pipefail
DEST=${1:-/opt/qemu-img-10}
export DEBIAN_FRONTEND=noninteractive
# The archive address this machine already uses (its mirror), from its own apt sources.
# Either file may be missing (a machine with only deb822 .sources files has no sources.list): under
# pipefail a missing file or an empty grep must not end the script, so each step tolerates it.
archive_uri() {  # $1: "main" or "security"; prints nothing when the machine names no such archive
  { awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
    awk '$1 == "deb" {print ($2 ~ /^\[/ ? $3 : $2)}' /etc/apt/sources.list 2>/dev/null || true; } |
    { if [ "$1" = main ]; then grep -v security; else grep security; fi || true; } | head -n1
}
bpo=/etc/apt/sources.list.d/bookworm-backports.sources
if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  uri=$(archive_uri main)
  cat >"$bpo" <<SRC
Types: deb
URIs: ${uri:-http://deb.debian.org/debian}
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
apt-get update -qq
# qemu-utils from bookworm itself (7.2); -t keeps backports from winning.
apt-get install -y -qq -t bookworm qemu-utils libqcow-utils libvhdi-utils libvmdk-utils >/dev/null
if [ ! -x "$DEST/root/usr/bin/qemu-img" ]; then
  ver=$(apt-cache madison qemu-utils | awk '/bookworm-backports/ {print $3; exit}')
  [ -n "$ver" ] || { echo "no qemu-utils in bookworm-backports" >&2; exit 1; }
  mkdir -p "$DEST"
  (cd "$DEST" && apt-get download -qq "qemu-utils=$ver" 2>/dev/null && dpkg -x qemu-utils_*.deb root && rm -f qemu-utils_*.deb)
fi
/usr/bin/qemu-img --version | head -1
"$DEST/root/usr/bin/qemu-img" --version | head -1
