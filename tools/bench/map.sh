#!/usr/bin/env bash
# `instar map --output=json` against `qemu-img map` (7.2 and 10.0) on a 1 GiB qcow2 with half its
# clusters allocated (every other 64 KiB cluster: the most runs for that much data), side by side in
# one hyperfine run, page cache warm; prints each median and instar's ratio to each qemu.
# Usage: map.sh [BUILD_DIR] [RUNS]     (docs/map.md has the figures)
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
runs=${2:-10}
instar="$build/tools/instar/instar"
. "$(dirname "$0")/lib.sh"
dir=$(mktemp -d /tmp/instar-bench-map-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
write_half_allocated half.raw
$q72 convert -f raw -O qcow2 half.raw half.qcow2
rm half.raw
cat half.qcow2 >/dev/null # warm the page cache
for q in "$q72" "$q10"; do
  if ! cmp -s <($instar --qemu-version "$($q --version | sed -n 's/.*version \([0-9.]*\).*/\1/p' | cut -d. -f1,2)" \
                 map --output=json half.qcow2) <($q map --output=json half.qcow2); then
    echo "instar's output differs from $q's" >&2
    exit 1
  fi
done
hyperfine -N --warmup 1 --runs "$runs" --export-json map.json \
  "$instar --qemu-version 10.0 map --output=json half.qcow2" "$q72 map --output=json half.qcow2" \
  "$q10 map --output=json half.qcow2" >/dev/null
python3 - map.json <<'PY'
import json, sys
r = [x["median"] for x in json.load(open(sys.argv[1]))["results"]]
print("%-40s instar %7.3f s  7.2 %7.3f s  10.0 %7.3f s  ratio %.2f / %.2f" %
      ("map --output=json (1 GiB qcow2, half)", r[0], r[1], r[2], r[0] / r[1], r[0] / r[2]))
PY
