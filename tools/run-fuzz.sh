#!/usr/bin/env bash
# Coverage-guided fuzzing (docs/fuzzing.md), run by tools/run-tests.sh: builds build-fuzz/ with clang,
# libFuzzer, ASan and UBSan (-Dfuzz_engine=libfuzzer) and runs every target of the fuzz suite for its
# share of one fixed budget: FUZZ_BUDGET seconds of wall clock for all targets together (default 120),
# on all cores. A finding fails the run; the input is kept (build-fuzz/.../TARGET.artifacts/) and
# printed in base64 in the test's log. Exit 77 ("SKIPPED LOUDLY") without clang.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${FUZZ_BUDGET:-120}
dir=${FUZZ_BUILD_DIR:-build-fuzz}
cc=${FUZZ_CC:-clang-14}
cxx=${FUZZ_CXX:-clang++-14}
if ! command -v "$cxx" >/dev/null || ! command -v "$cc" >/dev/null; then
  echo "run-fuzz: SKIPPED LOUDLY: no $cxx (tools/install-deps.sh installs clang-14 and libclang-rt-14-dev)"
  exit 77
fi
launcher=
command -v ccache >/dev/null && launcher="ccache "
if [ ! -d "$dir" ]; then
  CC="$launcher$cc" CXX="$launcher$cxx" meson setup "$dir" -Dfuzz_engine=libfuzzer >/dev/null
fi
# No warnings gate here: the gcc build is the gate (tools/build.sh); this build is for findings.
jobs=$(nproc)
# The fuzz suite's executables, as ninja targets (only these are built: not the whole project).
mapfile -t targets < <(meson introspect "$dir" --tests | python3 -c '
import json, os, sys
root = os.path.realpath(sys.argv[1])
for t in json.load(sys.stdin):
    if any(s.split(":")[-1] == "fuzz" for s in t["suite"]):
        print(os.path.relpath(os.path.realpath(t["cmd"][0]), root))
' "$dir")
n=${#targets[@]}
if [ "$n" -eq 0 ]; then
  echo "run-fuzz: no fuzz targets in $dir"
  exit 1
fi
seconds=$(( budget * jobs / n ))
[ "$seconds" -ge 1 ] || seconds=1
meson configure "$dir" -Dfuzz_seconds="$seconds" >/dev/null
echo "run-fuzz: $n targets, $seconds s each on $jobs cores (budget ${budget} s)"
ninja -C "$dir" "${targets[@]}" >/dev/null
symbolizer=$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)
[ -n "$symbolizer" ] && export ASAN_SYMBOLIZER_PATH="$symbolizer"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
rm -f "$dir/meson-logs/testlog.json"
meson test -C "$dir" --no-rebuild --suite fuzz --print-errorlogs --num-processes "$jobs"
