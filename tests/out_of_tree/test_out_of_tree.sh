#!/usr/bin/env bash
# Installs instar to a staging prefix, builds tests/out_of_tree/plugin against that install's
# instar-plugin.pc and instar-guest-module.pc (as a third party would), and checks that instar finds
# it via INSTAR_PLUGIN_PATH and uses both halves (info, convert, measure's hooks); then does the same with one of the
# tree's own formats (bochs) built from its plugin directory alone, loaded by the installed instar.
# Also checks per-plugin install tags and that -D<fmt>=disabled removes a plugin.
# Usage: test_out_of_tree.sh BUILD_ROOT SOURCE_ROOT INSTAR
set -euo pipefail
build=$1 src=$2 instar=$3
tmp=$(mktemp -d /tmp/instar-oot-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { # description, command...
  local what=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $what"; fail=$((fail + 1)); fi
}

meson install -C "$build" --no-rebuild --quiet --destdir "$tmp/stage" >/dev/null
pc=$(find "$tmp/stage" -name instar-plugin.pc | head -1)
check "instar-plugin.pc installed" test -n "$pc"
check "plugin.h installed" test -n "$(find "$tmp/stage" -path '*/include/instar/plugin.h')"

PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR="$tmp/stage" \
  meson setup "$tmp/ext" "$src/tests/out_of_tree/plugin" >"$tmp/ext-setup.log" 2>&1 \
  || { cat "$tmp/ext-setup.log"; exit 1; }
ninja -C "$tmp/ext" >"$tmp/ext-build.log" 2>&1 || { cat "$tmp/ext-build.log"; exit 1; }
so=$(find "$tmp/ext" -maxdepth 1 -name 'libinstar-example.so')
check "third-party plugin built" test -n "$so"
check "plugindir variable points into the plugin directory" \
  bash -c "PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --variable=plugindir instar-plugin | grep -q '/instar/plugins$'"

out=$(INSTAR_PLUGIN_PATH="$tmp/ext" "$instar" formats --output=json)
check "formats --output=json lists the third-party plugin" grep -q '"name": "example"' <<<"$out"
check "its source file is reported" grep -q "\"file\": \"$so\"" <<<"$out"
check "its options are listed" grep -q '"key": "flavour"' <<<"$out"
check "the five in-tree plugins are still there" \
  test "$(grep -cE '"name": "(qcow2|vmdk|vpc|vhdx|raw)"' <<<"$out")" -eq 5
# The guest half, built against the installed guest SDK alone, and used: probe, info, convert.
check "instar-guest-module.pc installed" test -n "$(find "$tmp/stage" -name instar-guest-module.pc)"
check "guest SDK headers installed" test -n "$(find "$tmp/stage" -path '*/include/instar_guest/format_module.h')"
check "third-party guest half built" test -f "$tmp/ext/example.gmod"
{ printf 'EXAMPLE!'; printf '\x00\x00\x10\x00\x00\x00\x00\x00'; head -c 496 /dev/zero
  head -c 300000 /dev/urandom; } >"$tmp/disk.example"
info=$(INSTAR_PLUGIN_PATH="$tmp/ext" "$instar" info "$tmp/disk.example" 2>&1 || true)
check "info probes the third-party format" grep -q '^file format: example$' <<<"$info"
check "info reads its virtual size" grep -q '^virtual size: 1 MiB (1048576 bytes)$' <<<"$info"
INSTAR_PLUGIN_PATH="$tmp/ext" "$instar" convert -O raw "$tmp/disk.example" "$tmp/disk.raw" >/dev/null 2>&1 || true
{ tail -c +513 "$tmp/disk.example"; head -c $((1048576 - 300000)) /dev/zero; } >"$tmp/expected.raw"
check "convert reads its data through the third-party reader" cmp -s "$tmp/disk.raw" "$tmp/expected.raw"

measure=$(INSTAR_PLUGIN_PATH="$tmp/ext" "$instar" measure -O example --size 1000 2>&1 || true)
check "measure asks the third-party plugin's hooks (--size)" \
  test "$measure" = $'required size: 1536\nfully allocated size: 1536'
measure=$(INSTAR_PLUGIN_PATH="$tmp/ext" "$instar" measure -O example --output=json "$tmp/disk.example" 2>&1 || true)
check "measure asks the third-party plugin's hooks (a source)" grep -q '"required": 1049088' <<<"$measure"
measure=$(INSTAR_PLUGIN_PATH="$tmp/ext" "$instar" measure -O example -o flavour=sour --size 1M 2>&1 || true)
check "measure reports the third-party plugin's refusal" test "$measure" = "instar: example: unknown flavour"

help=$(INSTAR_PLUGIN_PATH="$tmp/ext" "$instar" create -f example -o help)
check "create -o help uses the third-party table" grep -q '^  flavour=<str>          - Which flavour of example image$' <<<"$help"

# One of the formats this tree ships, built out of tree the same way: the bochs plugin's own sources
# (host and guest half, nothing else from the tree) against the installed SDK, then loaded by the
# installed instar from a plugin set without the tree's bochs, and used (formats, info, convert).
mkdir -p "$tmp/bochs-src/guest"
cp "$src"/plugins/bochs/*.cpp "$src"/plugins/bochs/*.h "$tmp/bochs-src/"
cp "$src"/plugins/bochs/guest/*.cpp "$src"/plugins/bochs/guest/*.h "$tmp/bochs-src/guest/"
cat >"$tmp/bochs-src/meson.build" <<'MESON'
project('instar-bochs-out-of-tree', 'cpp', default_options: ['cpp_std=c++20', 'warning_level=2', 'werror=true'])
sdk = dependency('instar-plugin')
guest_sdk = dependency('instar-guest-module')
boost = dependency('boost', version: '>=1.81')
shared_module('instar-bochs', 'bochs_plugin.cpp', 'bochs_probe.cpp', dependencies: [sdk, boost],
  gnu_symbol_visibility: 'hidden')
shared_module('bochs', 'guest/bochs_module.cpp', 'guest/bochs_format.cpp', 'guest/bochs_read.cpp',
  name_prefix: '', name_suffix: guest_sdk.get_variable(pkgconfig: 'module_suffix'), dependencies: guest_sdk,
  cpp_args: guest_sdk.get_variable(pkgconfig: 'guest_cflags').split())
MESON
PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR="$tmp/stage" \
  meson setup "$tmp/bochs-build" "$tmp/bochs-src" >"$tmp/bochs-setup.log" 2>&1 \
  || { cat "$tmp/bochs-setup.log"; exit 1; }
ninja -C "$tmp/bochs-build" >"$tmp/bochs-build.log" 2>&1 || { cat "$tmp/bochs-build.log"; exit 1; }
check "bochs built out of tree (host half)" test -f "$tmp/bochs-build/libinstar-bochs.so"
check "bochs built out of tree (guest half)" test -f "$tmp/bochs-build/bochs.gmod"
# The installed instar (staged), its plugin set copied without bochs; its compiled-in plugin
# directory does not exist here, so it loads exactly INSTAR_PLUGIN_PATH's.
staged_plugins=$(dirname "$(find "$tmp/stage" -name libinstar-raw.so | head -1)")
mkdir "$tmp/nobochs"
cp -a "$staged_plugins"/. "$tmp/nobochs"/
rm -f "$tmp/nobochs"/*bochs*
staged_instar=$(find "$tmp/stage" -path '*/bin/instar' -type f | head -1)
staged_lib=$(dirname "$(find "$tmp/stage" -name 'libinstar-core.so*' | head -1)")
staged_runtime=$(find "$tmp/stage" -name 'instar-guest-runtime.elf' | head -1)
staged_loader=$(find "$tmp/stage" -name 'instar-process-loader' -type f | head -1)
staged() {
  LD_LIBRARY_PATH="$staged_lib" INSTAR_GUEST_RUNTIME="$staged_runtime" INSTAR_PROCESS_LOADER="$staged_loader" \
    INSTAR_PLUGIN_PATH="$tmp/nobochs:$tmp/bochs-build" "$staged_instar" "$@"
}
out=$(staged formats --output=json 2>&1 || true)
check "the installed instar loads the out-of-tree bochs" \
  grep -q "\"file\": \"$tmp/bochs-build/libinstar-bochs.so\"" <<<"$out"
python3 - "$src" "$tmp/disk.bochs" <<'PY'
import sys
sys.path[:0] = [sys.argv[1] + '/plugins/bochs/tests', sys.argv[1] + '/tests/formats']
from bochs_differential import make_bochs
make_bochs(sys.argv[2], 3 << 20)
PY
info=$(staged info "$tmp/disk.bochs" 2>&1 || true)
check "info reads a bochs image through the out-of-tree plugin" grep -q '^file format: bochs$' <<<"$info"
staged convert -O raw "$tmp/disk.bochs" "$tmp/oot.raw" >/dev/null 2>&1 || true
"$instar" convert -O raw "$tmp/disk.bochs" "$tmp/tree.raw" >/dev/null 2>&1 || true
check "convert through the out-of-tree bochs reads what the tree's reads" \
  bash -c "test -s '$tmp/tree.raw' && cmp -s '$tmp/oot.raw' '$tmp/tree.raw'"

# Install tags: one per plugin, so packagers can split them.
meson install -C "$build" --no-rebuild --quiet --destdir "$tmp/vmdk-only" --tags plugin-vmdk >/dev/null
files=$(cd "$tmp/vmdk-only" && find . -type f | sort)
check "--tags plugin-vmdk installs the vmdk plugin" grep -q '/instar/plugins/libinstar-vmdk.so$' <<<"$files"
check "--tags plugin-vmdk installs nothing else" test "$(grep -vc '/instar/plugins/.*vmdk' <<<"$files" || true)" -eq 0

# Feature options: -Dvmdk=disabled removes the plugin (configure only; nothing is compiled).
meson setup "$tmp/novmdk" "$src" -Dvmdk=disabled -Dtests=false >"$tmp/novmdk.log" 2>&1 \
  || { cat "$tmp/novmdk.log"; exit 1; }
targets=$(meson introspect "$tmp/novmdk" --targets)
check "-Dvmdk=disabled drops the vmdk plugin" bash -c "! grep -q 'instar-vmdk' <<<'$targets'"
check "-Dvmdk=disabled keeps the others" grep -q 'instar-qcow2' <<<"$targets"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
