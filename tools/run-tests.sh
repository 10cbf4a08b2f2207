#!/usr/bin/env bash
# The README's second command: runs the whole test suite (builds first if needed) and ends with one
# "N passed, N failed, N skipped" line.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d build ] || meson setup build >/dev/null
[ "${CI:-}" = true ] && meson configure build -Dwerror=true >/dev/null
ninja -C build >/dev/null
status=0
meson test -C build --print-errorlogs --num-processes "$(nproc)" || status=$?
python3 - build/meson-logs/testlog.json <<'PY'
import json, sys
counts = {"OK": 0, "FAIL": 0, "SKIP": 0}
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    key = "OK" if r in ("OK", "EXPECTEDFAIL") else "SKIP" if r == "SKIP" else "FAIL"
    counts[key] += 1
if counts["SKIP"]:
    print("WARNING: %d test(s) skipped; see the log for why" % counts["SKIP"])
print("%d passed, %d failed, %d skipped" % (counts["OK"], counts["FAIL"], counts["SKIP"]))
PY
exit $status
