#!/usr/bin/env bash
# Installs the qemu-img versions instar's output is compared against, from Debian's archive:
#   qemu-img 7.2  (bookworm's qemu-utils, system-wide: /usr/bin/qemu-img)
#   qemu-img 10.0 (bookworm-backports' qemu-utils, unpacked, not installed: $DEST/root/usr/bin/qemu-img)
# plus qemu-io and the libyal readers (qcowinfo, vhdiinfo, vmdkinfo) used as independent validators.
# Usage: install-oracles.sh [DEST]   (default /opt/qemu-img-10). Idempotent; needs root.
set -euo pipefail
DEST=${1:-/opt/qemu-img-10}
export DEBIAN_FRONTEND=noninteractive
if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  cat >/etc/apt/sources.list.d/bookworm-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt-get update -qq
fi
# -t bookworm keeps backports from replacing the system qemu-img 7.2.
apt-get install -y -qq -t bookworm qemu-utils libqcow-utils libvhdi-utils libvmdk-utils >/dev/null
if [ ! -x "$DEST/root/usr/bin/qemu-img" ]; then
  ver=$(apt-cache madison qemu-utils | awk '/bookworm-backports/ {print $3; exit}')
  [ -n "$ver" ] || { echo "no qemu-utils in bookworm-backports" >&2; exit 1; }
  mkdir -p "$DEST"
  (cd "$DEST" && apt-get download -qq "qemu-utils=$ver" && dpkg -x qemu-utils_*.deb root && rm -f qemu-utils_*.deb)
fi
/usr/bin/qemu-img --version | head -1
"$DEST/root/usr/bin/qemu-img" --version | head -1
