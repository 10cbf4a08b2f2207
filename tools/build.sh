#!/usr/bin/env bash
# Builds build/ (set up on first use) with ninja; arguments are passed to ninja. With CI=true any
# compiler, linker or ninja warning fails the build. The gate reads the build's output instead of
# configuring -Dwerror=true: the compile flags then stay those of a developer's build, so one ccache
# serves developers, helpers' worktrees and CI alike (ccache replays a cached compile's warnings, and
# a CI build starts from a clean clone, so every object's warnings are printed).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d build ]; then
  meson setup build >/dev/null
elif [ "$(meson introspect build --buildoptions | python3 -c '
import json, sys
print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "werror"))')" = True ]; then
  meson configure build -Dwerror=false >/dev/null  # a tree set up by the older -Dwerror gate
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
ninja -C build "$@" 2>&1 | tee "$log" || status=$?
[ "$status" = 0 ] || exit "$status"
if [ "${CI:-}" = true ]; then
  # Colour codes off, then gcc's/ld's "FILE:LINE:COL: warning:" and ninja's "ninja: warning:".
  if sed 's/\x1b\[[0-9;]*[mK]//g' "$log" | grep -E '(^|: )warning: ' >&2; then
    echo "build: warnings are errors in CI (above)" >&2
    exit 1
  fi
fi
