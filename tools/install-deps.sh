#!/usr/bin/env bash
# Installs everything instar needs to build and test on Debian 12, from Debian's archive only.
# Idempotent; needs root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Debian 12's default Boost (1.74) has no Boost.JSON, hence the 1.81 packages.
apt-get install -y -qq --no-install-recommends \
  build-essential meson ninja-build pkg-config python3 git ca-certificates \
  libboost1.81-dev libboost-json1.81-dev libboost-program-options1.81-dev \
  libboost-filesystem1.81-dev zlib1g-dev libzstd-dev libdeflate-dev libseccomp-dev doctest-dev nettle-dev \
  libargon2-dev cryptsetup-bin openssl \
  hyperfine time \
  clang-14 libclang-rt-14-dev llvm-14 \
  debhelper lintian bash-completion >/dev/null
bash "$here/install-oracles.sh"
