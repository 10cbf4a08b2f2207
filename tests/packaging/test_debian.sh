#!/usr/bin/env bash
# Builds instar's Debian packages from this source tree (dpkg-buildpackage -b), checks them with
# lintian, then installs them with dpkg into a throw-away root: a private mount namespace in which
# /usr, /etc and /var are overlays over the real ones, so dpkg installs for real and nothing
# outlives the test. There it checks the split: instar with only instar-plugin-qcow2 lists qcow2
# alone and refuses a vmdk naming the package to install; adding instar-plugin-vmdk makes it work.
# Usage: test_debian.sh SOURCE_ROOT INSTAR (the build tree's, to make fixtures)
set -euo pipefail
src=$1 instar_built=$2
for tool in dpkg-buildpackage dh lintian unshare; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIPPED LOUDLY: $tool is missing (tools/install-deps.sh installs it)"; exit 77
  fi
done
if [ "$(id -u)" -ne 0 ]; then echo "SKIPPED LOUDLY: installing packages needs root"; exit 77; fi

tmp=$(mktemp -d /tmp/instar-deb-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { # description, command...
  local what=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $what"; fail=$((fail + 1)); fi
}

# The tree as it is (tracked and new files, not build output), so uncommitted work is tested too.
mkdir -p "$tmp/src/instar"
(cd "$src" && git ls-files -co --exclude-standard -z | xargs -0 cp -a --parents -t "$tmp/src/instar")
# noopt: this test checks the packaging (the split, lintian, dpkg's triggers, what an installed instar
# finds), not the code generation, which the rest of the suite tests in build/; -O0 halves this test's
# compile time; -g0 (dpkg-buildflags' *_APPEND) a fifth of what is left (263 s -> 212 s alone on 2
# cores). noautodbgsym: the -dbgsym packages are not checked here.
(cd "$tmp/src/instar" && DEB_BUILD_OPTIONS="noopt noautodbgsym ${DEB_BUILD_OPTIONS:-}" \
   DEB_CFLAGS_APPEND=-g0 DEB_CXXFLAGS_APPEND=-g0 \
   dpkg-buildpackage -b -uc -us -j"$(nproc)" >"$tmp/build.log" 2>&1) \
  || { tail -40 "$tmp/build.log"; exit 1; }
debs=$(cd "$tmp/src" && ls ./*.deb)
for p in instar instar-plugin-qcow2 instar-plugin-vmdk instar-plugin-vhd instar-plugin-vhdx instar-plugin-vdi instar-plugin-qed instar-plugin-luks instar-plugin-dmg instar-plugin-qcow instar-plugin-parallels instar-plugin-bochs instar-plugin-cloop instar-plugin-raw libinstar-dev; do
  check "package $p built" test -f "$(ls "$tmp/src/${p}_"*.deb 2>/dev/null | head -1)"
done
check "each plugin package holds its plugin, guest half and manifest only" \
  test "$(dpkg-deb -c "$tmp/src"/instar-plugin-qcow2_*.deb | grep -c '/plugins/\(libinstar-qcow2.so\|libinstar-qcow2.so.manifest\|qcow2.gmod\)$')" -eq 3

nettle_src=$(dpkg-query -f '${source:Package} (= ${source:Version})' -W nettle-dev)
argon2_src=$(dpkg-query -f '${source:Package} (= ${source:Version})' -W libargon2-dev)
# Both link the static libnettle.a; luks also libargon2.a (LUKS2's argon2 key slots).
check "instar-plugin-qcow2 says Built-Using: $nettle_src" \
  test "$(dpkg-deb -f "$tmp/src/instar-plugin-qcow2_"*.deb Built-Using)" = "$nettle_src"
# dpkg-gencontrol sorts a union field such as Built-Using by package name.
luks_built_using=$(printf '%s\n' "$nettle_src" "$argon2_src" | sort | paste -sd, | sed 's/,/, /g')
check "instar-plugin-luks says Built-Using: $luks_built_using" \
  test "$(dpkg-deb -f "$tmp/src/instar-plugin-luks_"*.deb Built-Using)" = "$luks_built_using"

lintian_out=$(cd "$tmp/src" && lintian --fail-on error,warning ./*.changes 2>&1) && lint=0 || lint=$?
check "lintian reports no errors or warnings" test "$lint" -eq 0
[ "$lint" -eq 0 ] || echo "$lintian_out"

"$instar_built" create -q -f vmdk "$tmp/disk.vmdk" 1M
"$instar_built" create -q -f qcow2 "$tmp/disk.qcow2" 1M

# Everything below runs in a private mount namespace over overlays: dpkg writes only to $tmp.
cat >"$tmp/inside.sh" <<'INSIDE'
set -uo pipefail
tmp=$1
for d in usr etc var; do
  mkdir -p "$tmp/ov/$d.up" "$tmp/ov/$d.work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$tmp/ov/$d.up,workdir=$tmp/ov/$d.work" "/$d" || exit 2
done
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
# Only what an installed instar sees: no build-tree libraries (meson test sets LD_LIBRARY_PATH, which
# would override the binary's RUNPATH) and no INSTAR_* overrides.
unset LD_LIBRARY_PATH
for v in $(env | sed -n 's/^\(INSTAR_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done
# The plugins instar's postinst indexed (its file trigger on the plugin directory), and whether the
# index still describes the directory (the modification time it records is the directory's now).
plugins=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/instar/plugins
index_state() {
  [ -f "$plugins.index" ] || { echo missing; return; }
  local now
  now=$(stat -c %.9Y "$plugins" | awk -F. '{ printf "dir %d %d", $1, $2 }')
  echo "$(sed -n 's/^plugin libinstar-\([a-z0-9]*\)\.so .*/\1/p' "$plugins.index" | tr '\n' ' ')$(
    [ "$(sed -n 2p "$plugins.index")" = "$now" ] && echo current || echo stale)"
}
dpkg -i "$tmp"/src/instar_*.deb "$tmp"/src/instar-plugin-qcow2_*.deb >"$tmp/dpkg1.log" 2>&1 || { cat "$tmp/dpkg1.log"; exit 3; }
echo "index1: $(index_state)"
echo "formats: $(instar formats | sed -n 's/^\([a-z0-9]*\) [^ ]*: .*/\1/p' | tr '\n' ' ')"
echo "qcow2: $(instar info "$tmp/disk.qcow2" 2>&1 | sed -n 2p)"
echo "vmdk-before: $(instar info -f vmdk "$tmp/disk.vmdk" 2>&1 | head -1)"
dpkg -i "$tmp"/src/instar-plugin-vmdk_*.deb >"$tmp/dpkg2.log" 2>&1 || { cat "$tmp/dpkg2.log"; exit 3; }
echo "index2: $(index_state)"
echo "vmdk-after: $(instar info "$tmp/disk.vmdk" 2>&1 | sed -n 2p)"
instar convert -O qcow2 "$tmp/disk.vmdk" "$tmp/out.qcow2" && echo "convert: ok"
echo "man: $(ls /usr/share/man/man1/instar.1* 2>/dev/null)"
echo "completion: $(bash -c 'source /usr/share/bash-completion/bash_completion 2>/dev/null; source /usr/share/bash-completion/completions/instar; COMP_LINE="instar con"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(instar con); COMP_CWORD=1; _instar; echo ${COMPREPLY[*]}')"
dpkg -r instar-plugin-vmdk >"$tmp/dpkg3.log" 2>&1 || { cat "$tmp/dpkg3.log"; exit 3; }
echo "index3: $(index_state)"
dpkg -P instar-plugin-qcow2 instar >"$tmp/dpkg4.log" 2>&1 || { cat "$tmp/dpkg4.log"; exit 3; }
echo "index4: $(index_state)"
INSIDE
out=$(unshare --mount --propagation private bash "$tmp/inside.sh" "$tmp" 2>&1) || { echo "$out"; exit 1; }
echo "$out"
check "with only instar-plugin-qcow2, instar formats lists qcow2 alone" grep -qx 'formats: qcow2 ' <<<"$out"
check "the installed instar reads a qcow2" grep -qx 'qcow2: file format: qcow2' <<<"$out"
check "a vmdk is refused, naming the package to install" \
  grep -q "^vmdk-before: .*install the package instar-plugin-vmdk" <<<"$out"
check "after installing instar-plugin-vmdk the vmdk works" grep -qx 'vmdk-after: file format: vmdk' <<<"$out"
check "instar's postinst indexed the plugin directory" grep -qx 'index1: qcow2 current' <<<"$out"
check "installing a plugin package re-indexed it (file trigger)" grep -qx 'index2: qcow2 vmdk current' <<<"$out"
check "removing a plugin package re-indexed it" grep -qx 'index3: qcow2 current' <<<"$out"
check "purging instar removed the index" grep -qx 'index4: missing' <<<"$out"
check "convert works from the installed packages" grep -qx 'convert: ok' <<<"$out"
check "the man page is installed" grep -q '^man: /usr/share/man/man1/instar.1' <<<"$out"
check "bash completion offers subcommands" grep -qx 'completion: convert' <<<"$out"
check "nothing was installed outside the namespace" test ! -e /usr/bin/instar

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
