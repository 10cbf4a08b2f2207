#!/usr/bin/env bash
# `instar convert` against `qemu-img convert` (7.2 and 10.0), side by side in one hyperfine run per
# workload, page cache warm, both CPUs online; prints each median and instar's ratio to each qemu,
# and the peak RSS of each (instar's includes the guest RAM it touched: it is a mapping in the
# host process). Usage: convert.sh [BUILD_DIR] [RUNS]     (docs/convert.md has the figures)
# INSTAR_SANDBOX=kvm|process: only that sandbox (default: both; docs/sandbox.md).
# INTERLEAVE=1: instead of hyperfine (all of one command's runs, then the next command's), run the
# commands round-robin (A B C A B C ...), one warm-up round first: each tool's writes then find the
# page cache as the others left it, not as its own previous run did (on a cloud VM whose freed
# memory is handed back to the host, a run that reuses its own just-freed pages is up to 5x faster
# than one that gets pages back from the host; docs/convert.md, round 22).
# FRESH=1: remove the targets before every run (untimed), so each run writes a new file, as a
# pipeline writing a new image does; without it each run replaces the one before (qemu-img
# truncates the old target first, instar keeps it until the new one is complete).
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
runs=${2:-10}
instar="$build/tools/instar/instar"
q72=/usr/bin/qemu-img
q10=/opt/qemu-img-10/root/usr/bin/qemu-img
# Sandboxes measured: INSTAR_SANDBOX=kvm|process measures only that one; otherwise both (only the
# process sandbox without a usable /dev/kvm). Each instar command names its own (--sandbox=).
if [ -n "${INSTAR_SANDBOX:-}" ] && [ "${INSTAR_SANDBOX}" != auto ]; then sandboxes=$INSTAR_SANDBOX
elif [ -r /dev/kvm ] && [ -w /dev/kvm ]; then sandboxes="kvm process"; else sandboxes=process; fi
unset INSTAR_SANDBOX
dir=$(mktemp -d /tmp/instar-bench-convert-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
# Raw sources are named with -f raw (instar never guesses raw).
# 1 GiB, half random, half zeros (written, not holes), in alternating 1 MiB runs.
python3 - <<'PY'
import os
with open("mixed.raw", "wb") as f:
    for i in range(512):
        f.write(os.urandom(1 << 20))
        f.write(bytes(1 << 20))
# 256 MiB of compressible data: text-like runs with some entropy.
import random
random.seed(1)
words = [os.urandom(4).hex().encode() for _ in range(4096)]
block = b" ".join(random.choice(words) for _ in range(200000))[: 1 << 20]
with open("text.raw", "wb") as f:
    for i in range(256):  # each MiB a rotation of the same text: compressible, not trivially so
        k = (i * 7919) % len(block)
        f.write(block[k:] + block[:k])
PY
$q72 convert -O qcow2 mixed.raw mixed.qcow2
cat mixed.raw text.raw mixed.qcow2 >/dev/null # warm the page cache

report() { # name json: one line per sandbox (the instar commands come first, then 7.2 and 10.0)
  python3 - "$1" "$2" $sandboxes <<'PY'
import json, sys
name, f, sbs = sys.argv[1], sys.argv[2], sys.argv[3:]
m = [x["median"] for x in json.load(open(f))["results"]]
a, b = m[len(sbs)], m[len(sbs) + 1]
for i, s in enumerate(sbs):
    print("%-34s %-7s instar %7.3f s  7.2 %7.3f s  10.0 %7.3f s  ratio %.2f / %.2f" % (name, s, m[i], a, b, m[i] / a, m[i] / b))
PY
}
instar_cmds() { # the instar command line once per sandbox
  cmds=(); for s in $sandboxes; do cmds+=("$instar --sandbox=$s $*"); done
}
measure() { # json, then the commands: hyperfine, or round-robin with INTERLEAVE=1
  local json=$1; shift
  local prepare=${FRESH:+rm -f out.qcow2 out.raw c.qcow2 z.qcow2 s.vmdk}
  if [ -n "${INTERLEAVE:-}" ]; then
    python3 - "$runs" "$json" "$prepare" "$@" <<'PY'
import json, os, shlex, statistics, sys, time
runs, out, prepare, cmds = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
null = os.open(os.devnull, os.O_RDWR)
times = [[] for _ in cmds]
for i in range(runs + 1):  # the first round is warm-up
    for j, c in enumerate(cmds):
        argv = shlex.split(c)
        if prepare:
            os.system(prepare)
        t0 = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, null, 1)])
        _, status = os.waitpid(pid, 0)
        if status != 0:
            sys.exit(f"{c} failed")
        if i >= 1:
            times[j].append(time.perf_counter() - t0)
json.dump({"results": [{"command": c, "median": statistics.median(t)} for c, t in zip(cmds, times)]}, open(out, "w"))
PY
  else
    hyperfine -N --warmup 1 --runs "$runs" ${prepare:+--prepare "$prepare"} --export-json "$json" "$@" >/dev/null
  fi
}
bench() { # name, then the three commands' common tail (source target-args)
  local name=$1; shift
  instar_cmds convert "$@"
  measure "$name.json" "${cmds[@]}" "$q72 convert $*" "$q10 convert $*"
  report "$name" "$name.json"
}
rss() { # peak RSS in MiB of one run
  /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1 | awk '{printf "%.0f", $1/1024}'
}
bench "raw->qcow2 (1 GiB mixed)" -f raw -O qcow2 mixed.raw out.qcow2
bench "qcow2->raw (1 GiB mixed)" -O raw mixed.qcow2 out.raw
instar_cmds convert -c -f raw -O qcow2 text.raw c.qcow2
measure c.json "${cmds[@]}" "$q72 convert -c -W -f raw -O qcow2 text.raw c.qcow2" \
  "$q10 convert -c -W -f raw -O qcow2 text.raw c.qcow2"
report "-c qcow2 (256 MiB text) vs -c -W" c.json
instar_cmds convert -c -f raw -O qcow2 -o compression_type=zstd text.raw z.qcow2
measure z.json "${cmds[@]}" \
  "$q72 convert -c -W -f raw -O qcow2 -o compression_type=zstd text.raw z.qcow2" \
  "$q10 convert -c -W -f raw -O qcow2 -o compression_type=zstd text.raw z.qcow2"
report "-c zstd qcow2 (256 MiB) vs -c -W" z.json
bench "vmdk streamOptimized (256 MiB text)" -f raw -O vmdk -o subformat=streamOptimized text.raw s.vmdk
echo "peak RSS (MiB), -c qcow2 256 MiB:" \
     $(for s in $sandboxes; do echo "instar/$s $(rss "$instar" --sandbox=$s convert -c -f raw -O qcow2 text.raw r.qcow2),"; done) \
     "7.2 $(rss $q72 convert -c -W -f raw -O qcow2 text.raw r.qcow2), 10.0 $(rss $q10 convert -c -W -f raw -O qcow2 text.raw r.qcow2)"
echo "peak RSS (MiB), raw->qcow2 1 GiB:" \
     $(for s in $sandboxes; do echo "instar/$s $(rss "$instar" --sandbox=$s convert -f raw -O qcow2 mixed.raw r.qcow2),"; done) \
     "7.2 $(rss $q72 convert -f raw -O qcow2 mixed.raw r.qcow2), 10.0 $(rss $q10 convert -f raw -O qcow2 mixed.raw r.qcow2)"
