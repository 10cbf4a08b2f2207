#!/usr/bin/env bash
# With /dev/kvm unusable (a mount namespace with /dev/null over it), the default sandbox (auto) must
# be the process sandbox for info, create and convert; --sandbox=kvm must fail with KVM's message.
# Needs unshare -m (root or unprivileged user namespaces); otherwise SKIPPED LOUDLY (exit 77).
set -u
instar=$1
if ! unshare -m --map-root-user true 2>/dev/null && ! unshare -m true 2>/dev/null; then
  echo "SKIPPED LOUDLY: cannot make a mount namespace to hide /dev/kvm" >&2; exit 77
fi
flags=-m; unshare -m true 2>/dev/null || flags="-m --map-root-user"
dir=$(mktemp -d /tmp/instar-hidden-kvm-XXXXXX)
trap 'rm -rf "$dir"' EXIT
unset INSTAR_SANDBOX
# shellcheck disable=SC2086
unshare $flags bash -s "$instar" "$dir" <<'INNER'
instar=$1; cd "$2"
passed=0; failed=0
check() { if eval "$2"; then passed=$((passed+1)); else failed=$((failed+1)); echo "FAIL: $1"; fi; }
if [ -e /dev/kvm ]; then mount --bind /dev/null /dev/kvm || { echo "SKIPPED LOUDLY: cannot cover /dev/kvm" >&2; exit 77; }; fi
head -c 1048576 /dev/zero > disk.img
check "probe runs in the process sandbox" '"$instar" formats --probe disk.img | grep -q "\"sandbox\": \"process\""'
check "create" '"$instar" create -q -f qcow2 a.qcow2 64M'
check "info" '"$instar" info a.qcow2 | grep -q "virtual size: 64 MiB"'
check "convert" '"$instar" convert -O raw a.qcow2 a.raw && [ "$(stat -c %s a.raw)" = 67108864 ]'
check "--sandbox=kvm refuses" '! "$instar" --sandbox=kvm info a.qcow2 2>err && grep -q "/dev/kvm" err'
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
INNER
