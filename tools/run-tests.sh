#!/usr/bin/env bash
# The README's second command: runs the whole test suite (builds first if needed) and ends with one
# "N passed, N failed, N skipped" line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh >/dev/null
status=0
meson test -C build --print-errorlogs --num-processes "$(nproc)" || status=$?
# Coverage-guided fuzzing: clang + libFuzzer + ASan/UBSan in build-fuzz/, a fixed budget for all
# targets together (FUZZ_BUDGET seconds, default 120; FUZZ_BUDGET=0 leaves it out). docs/fuzzing.md.
fuzz_log=
fuzz_skipped=0
if [ "${FUZZ_BUDGET:-120}" != 0 ]; then
  fuzz_status=0
  bash tools/run-fuzz.sh || fuzz_status=$?
  if [ "$fuzz_status" = 77 ]; then
    fuzz_skipped=1
  else
    [ "$fuzz_status" = 0 ] || status=1
    fuzz_log=${FUZZ_BUILD_DIR:-build-fuzz}/meson-logs/testlog.json
    # A build or set-up failure leaves no test log: count it as one failure.
    [ -f "$fuzz_log" ] || { fuzz_log=; [ "$fuzz_status" = 0 ] || fuzz_skipped=-1; }
  fi
fi
python3 - "$fuzz_skipped" build/meson-logs/testlog.json $fuzz_log <<'PY'
import json, sys
counts = {"OK": 0, "FAIL": 0, "SKIP": 0}
if sys.argv[1] == "1":
    counts["SKIP"] += 1  # run-fuzz.sh: no clang
elif sys.argv[1] == "-1":
    counts["FAIL"] += 1  # run-fuzz.sh failed before running its tests
for log in sys.argv[2:]:
    for line in open(log):
        r = json.loads(line)["result"]
        key = "OK" if r in ("OK", "EXPECTEDFAIL") else "SKIP" if r == "SKIP" else "FAIL"
        counts[key] += 1
if counts["SKIP"]:
    print("WARNING: %d test(s) skipped; see the log for why" % counts["SKIP"])
print("%d passed, %d failed, %d skipped" % (counts["OK"], counts["FAIL"], counts["SKIP"]))
PY
exit $status
