#!/usr/bin/env bash
# Start-up latency of the short commands against qemu-img 7.2 and 10.0 (issue 12, part 1): `info`
# (human and JSON) on a small qcow2, a vmdk and a vhdx, and `create -f qcow2 X 1T`. For each case one
# hyperfine run measures instar and both qemu-imgs side by side (hyperfine runs them one after the
# other, with warm-up); the summary gives per case the medians, the spreads (max - min) and the
# ratios instar / qemu-img. Goal: every median ratio <= 1.0, every spread ratio <= 2.0.
#
# Usage: tools/bench/startup.sh [BUILD_DIR] [RUNS]      (default: build, 30 runs)
# Environment:
#   CASES="info-qcow2 create-qcow2-1T"   a subset of the cases
#   REPEAT=N                             repeat every hyperfine run N times (default 1); the summary
#                                        then shows each repeat and the range of the ratios
#   BASELINE=/path/to/other/instar       also time another instar build in the same hyperfine runs
#                                        (e.g. a worktree of main) and print its ratios as "before"
#   INSTAR=/path/to/instar               the instar to measure (default BUILD_DIR/tools/instar/instar)
#   INTERLEAVE=1                         instead of hyperfine (which runs all of one command's runs
#                                        before the next command's), run the commands round-robin
#                                        (A B C A B C ...) from a small Python timer: on a host whose
#                                        load changes by the second this compares like with like
#   INSTAR_SANDBOX=kvm|process           measure only that sandbox (default: both, each instar run
#                                        with --sandbox=...; only process without /dev/kvm)
# The host is often shared: compare only numbers from one run, check the load (printed), repeat.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
runs=${2:-30}
repeat=${REPEAT:-1}
instar=${INSTAR:-$build/tools/instar/instar}
baseline=${BASELINE:-}
q72=/usr/bin/qemu-img
q10=/opt/qemu-img-10/root/usr/bin/qemu-img
for q in "$q72" "$q10" "$(dirname "$q72")/qemu-io"; do
  [ -x "$q" ] || { echo "SKIPPED LOUDLY: $q missing" >&2; exit 77; }
done
command -v hyperfine >/dev/null || { echo "SKIPPED LOUDLY: hyperfine missing" >&2; exit 77; }
# Sandboxes measured: INSTAR_SANDBOX=kvm|process measures only that one; otherwise both (only the
# process sandbox without a usable /dev/kvm). Each instar command names its own (--sandbox=).
if [ -n "${INSTAR_SANDBOX:-}" ] && [ "${INSTAR_SANDBOX}" != auto ]; then sandboxes=$INSTAR_SANDBOX
elif [ -r /dev/kvm ] && [ -w /dev/kvm ]; then sandboxes="kvm process"; else sandboxes=process; fi
unset INSTAR_SANDBOX
dir=$(mktemp -d /tmp/instar-bench-XXXXXX)
trap 'rm -rf "$dir"' EXIT
cd "$dir"

# The images: a small qcow2 (10G virtual, 8M written, one snapshot), a monolithic sparse vmdk and a
# vhdx (1G each, 1M written).
$q72 create -q -f qcow2 small.qcow2 10G
qemu-io -c 'write 0 8M' small.qcow2 >/dev/null
$q72 snapshot -c s1 small.qcow2
$q72 create -q -f vmdk small.vmdk 1G
qemu-io -f vmdk -c 'write 0 1M' small.vmdk >/dev/null
$q72 create -q -f vhdx small.vhdx 1G
qemu-io -f vhdx -c 'write 0 1M' small.vhdx >/dev/null

all="info-qcow2 info-qcow2-json info-vmdk info-vmdk-json info-vhdx info-vhdx-json create-qcow2-1T"
cases=${CASES:-$all}
echo "load before: $(uptime)"
echo "online CPUs: $(nproc); $runs runs per command, $repeat repeat(s)"
for r in $(seq 1 "$repeat"); do
  for c in $cases; do
    case $c in
      info-qcow2)      args="info small.qcow2" ;;
      info-qcow2-json) args="info --output json small.qcow2" ;;
      info-vmdk)       args="info small.vmdk" ;;
      info-vmdk-json)  args="info --output json small.vmdk" ;;
      info-vhdx)       args="info small.vhdx" ;;
      info-vhdx-json)  args="info --output json small.vhdx" ;;
      create-qcow2-1T) args="" ;;
      *) echo "unknown case $c" >&2; exit 2 ;;
    esac
    if [ "$c" = create-qcow2-1T ]; then
      # Each program replaces its own file on every run, as qemu-img does.
      cmds=(); for s in $sandboxes; do cmds+=("$instar --sandbox=$s create -q -f qcow2 a-$s.qcow2 1T"); done
      cmds+=("$q72 create -q -f qcow2 b.qcow2 1T"
            "$q10 create -q -f qcow2 c.qcow2 1T")
      [ -n "$baseline" ] && cmds+=("$baseline create -q -f qcow2 d.qcow2 1T")
    else
      cmds=(); for s in $sandboxes; do cmds+=("$instar --sandbox=$s $args"); done
      cmds+=("$q72 $args" "$q10 $args")
      [ -n "$baseline" ] && cmds+=("$baseline $args")
    fi
    for cmd in "${cmds[@]}"; do $cmd >/dev/null; done # each must succeed before timing means anything
    if [ -n "${INTERLEAVE:-}" ]; then
      python3 - "$runs" "$c.$r.json" "${cmds[@]}" <<'PY'
import json, os, shlex, sys, time
runs, out, cmds = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
null = os.open(os.devnull, os.O_RDWR)
times = [[] for _ in cmds]
for i in range(runs + 5):  # the first 5 rounds are warm-up
    for j, c in enumerate(cmds):
        argv = shlex.split(c)
        t0 = time.perf_counter()
        pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, null, 1)])
        _, status = os.waitpid(pid, 0)
        t = time.perf_counter() - t0
        if status != 0:
            sys.exit(f"{c} failed")
        if i >= 5:
            times[j].append(t)
json.dump({"results": [{"command": c, "times": t} for c, t in zip(cmds, times)]}, open(out, "w"))
PY
    else
      hyperfine -N --style none --warmup 5 --runs "$runs" --export-json "$c.$r.json" "${cmds[@]}" >/dev/null 2>&1
    fi
  done
done
echo "load after:  $(uptime)"

python3 - "$dir" "$repeat" "$sandboxes" $cases <<'PY'
import json, statistics, sys
d, repeat, sbs, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4:]
k = len(sbs)  # the instar commands (one per sandbox) come first, then 7.2, 10.0 and the baseline
ms = lambda s: s * 1000
rows, ratios = [], {}
for c in cases:
    for r in range(1, repeat + 1):
        res = json.load(open(f"{d}/{c}.{r}.json"))["results"]
        allmed = [statistics.median(x["times"]) for x in res]
        allspr = [max(x["times"]) - min(x["times"]) for x in res]
        for i, sb in enumerate(sbs):
            med = [allmed[i]] + allmed[k:]
            spr = [allspr[i]] + allspr[k:]
            rows.append((c, sb, r, med, spr))
            ratios.setdefault((c, sb), []).append(([med[0] / med[1], med[0] / med[2]], [spr[0] / spr[1], spr[0] / spr[2]]))
base = len(rows[0][3]) > 3
print()
print(f"{'case':17} {'sandbox':7} {'#':>2} {'instar':>7} {'q7.2':>7} {'q10':>7} | {'r7.2':>5} {'r10':>5} | {'spr':>6} {'spr7.2':>6} {'spr10':>6} |"
      f" {'sr7.2':>5} {'sr10':>5}" + (f" | {'before':>7} {'br7.2':>5} {'br10':>5}" if base else ""))
for c, sb, r, med, spr in rows:
    line = (f"{c:17} {sb:7} {r:2} {ms(med[0]):7.2f} {ms(med[1]):7.2f} {ms(med[2]):7.2f} | {med[0]/med[1]:5.2f} {med[0]/med[2]:5.2f} |"
            f" {ms(spr[0]):6.2f} {ms(spr[1]):6.2f} {ms(spr[2]):6.2f} | {spr[0]/spr[1]:5.2f} {spr[0]/spr[2]:5.2f}")
    if base:
        line += f" | {ms(med[3]):7.2f} {med[3]/med[1]:5.2f} {med[3]/med[2]:5.2f}"
    print(line)
print("(ms; columns: medians, r = instar/qemu-img medians, spr = spreads max-min, sr = spread ratios"
      + ("; before = BASELINE median and its ratios" if base else "") + ")")
if repeat > 1:
    print("ranges over repeats:")
    for (c, sb), v in ratios.items():
        r72 = [x[0][0] for x in v]; r10 = [x[0][1] for x in v]
        s72 = [x[1][0] for x in v]; s10 = [x[1][1] for x in v]
        print(f"  {c:17} {sb:7} r7.2 {min(r72):.2f}-{max(r72):.2f}  r10 {min(r10):.2f}-{max(r10):.2f}  "
              f"sr7.2 {min(s72):.2f}-{max(s72):.2f}  sr10 {min(s10):.2f}-{max(s10):.2f}")
for sb in sbs:
    worst_r = max(max(x[0]) for (c, s), v in ratios.items() if s == sb for x in v)
    worst_s = max(max(x[1]) for (c, s), v in ratios.items() if s == sb for x in v)
    print(f"{sb}: worst median ratio {worst_r:.2f} (goal <= 1.0), worst spread ratio {worst_s:.2f} (goal <= 2.0)")
PY
