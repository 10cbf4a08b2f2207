#!/usr/bin/env bash
# Safe `instar rebase` against `qemu-img rebase` (7.2 and 10.0), side by side in one hyperfine run:
# a 256 MiB overlay (every 4th MiB of a 1 GiB disk written) over a 1 GiB base whose every MiB holds
# data, rebased onto another 1 GiB base that differs from the first in every other MiB (so about
# 384 MiB are copied into the overlay). Each run starts from a fresh copy of the overlay (hyperfine
# --prepare, not timed); page cache warm. Prints each median and instar's ratio to each qemu.
# Usage: rebase.sh [BUILD_DIR] [RUNS]     (docs/rebase.md has the figures)
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
runs=${2:-3}
instar="$build/tools/instar/instar"
q72=/usr/bin/qemu-img
q10=/opt/qemu-img-10/root/usr/bin/qemu-img
qio=/usr/bin/qemu-io
dir=$(mktemp -d /tmp/instar-bench-rebase-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
$q72 create -q -f qcow2 base1.qcow2 1G
$q72 create -q -f qcow2 base2.qcow2 1G
python3 - > base1.cmds <<'PY'
for i in range(1024):
    print("write -P %d %dM 1M" % (i % 251 + 1, i))
PY
python3 - > base2.cmds <<'PY'
for i in range(1024):
    print("write -P %d %dM 1M" % ((i % 251 + 1) if i % 2 == 0 else 0x5a, i))
PY
$qio -f qcow2 base1.qcow2 < base1.cmds >/dev/null
$qio -f qcow2 base2.qcow2 < base2.cmds >/dev/null
$q72 create -q -f qcow2 -b base1.qcow2 -F qcow2 ov.orig
python3 - > ov.cmds <<'PY'
for i in range(0, 1024, 4):
    print("write -P 0x77 %dM 1M" % i)
PY
$qio -f qcow2 ov.orig < ov.cmds >/dev/null
cat base1.qcow2 base2.qcow2 ov.orig >/dev/null # warm the page cache

hyperfine -N -i --warmup 1 --runs "$runs" --prepare "cp ov.orig ov.qcow2" --export-json b.json \
  "$instar rebase -b base2.qcow2 -F qcow2 ov.qcow2" \
  "$q72 rebase -b base2.qcow2 -F qcow2 ov.qcow2" \
  "$q10 rebase -b base2.qcow2 -F qcow2 ov.qcow2" >/dev/null
read -r mi m7 m10 <<<"$(python3 -c "import json; r=json.load(open('b.json'))['results']; print(' '.join('%.4f' % x['median'] for x in r))")"
python3 - "$mi" "$m7" "$m10" <<'PY'
import sys
i, a, b = map(float, sys.argv[1:])
print("safe rebase, 256 MiB overlay, 1 GiB bases   instar %7.3f s  7.2 %7.3f s  10.0 %7.3f s  ratio %.2f / %.2f"
      % (i, a, b, i / a, i / b))
PY
cp ov.orig ov.qcow2 && "$instar" rebase -b base2.qcow2 -F qcow2 ov.qcow2 && cp ov.qcow2 ov.instar
cp ov.orig ov.qcow2 && $q72 rebase -b base2.qcow2 -F qcow2 ov.qcow2
$q72 compare ov.instar ov.qcow2 >/dev/null && echo "content: identical to qemu-img 7.2's result"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
