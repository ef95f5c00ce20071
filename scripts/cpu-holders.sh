#!/usr/bin/env bash
# Which threads held a CPU, and for how long at a stretch, over the next SECONDS on this whole
# machine: for tail latency that no profile of the gateway explains (a kernel thread that holds
# one of the two cores for milliseconds stalls whatever waits for that core).
#
# usage: scripts/cpu-holders.sh [SECONDS] [TOP]   (defaults 10 s, 12 threads)
# Run it while a load runs (e.g. `consult-edge loadgen`). Needs perf with the sched tracepoints
# (root, or perf_event_paranoid <= 1). Prints the threads with the longest stretches first: their
# on-CPU time in all, the number of stretches over 0.5 ms, and the five longest in ms.
set -euo pipefail
secs=${1:-10}
top=${2:-12}
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
perf record -q -o "$out/perf.data" -e sched:sched_switch -a -- sleep "$secs" >/dev/null 2>&1
perf script -i "$out/perf.data" -F cpu,time,trace >"$out/switches.txt" 2>/dev/null
python3 - "$out/switches.txt" "$top" <<'PY'
import collections, re, sys
switch = re.compile(r'\[(\d+)\]\s+([\d.]+):\s+prev_comm=(.*?) prev_pid=(\d+) .*?==> next_comm=(.*?) next_pid=(\d+)')
running = {}  # cpu -> (tid, since)
on_cpu, stretches, names = collections.Counter(), collections.defaultdict(list), {}
for line in open(sys.argv[1]):
    m = switch.search(line)
    if not m:
        continue
    cpu, t, prev_comm, prev, next_comm, nxt = m.groups()
    t = float(t)
    names[prev], names[nxt] = prev_comm, next_comm
    if cpu in running and running[cpu][0] == prev and prev != "0":
        held = t - running[cpu][1]
        on_cpu[prev] += held
        stretches[prev].append(held)
    running[cpu] = (nxt, t)
print("%-24s %8s %10s  %s" % ("thread (tid)", "on-CPU", ">0.5 ms", "longest stretches, ms"))
by_longest = sorted(stretches, key=lambda tid: max(stretches[tid]), reverse=True)
for tid in by_longest[:int(sys.argv[2])]:
    total, longest = on_cpu[tid], sorted(stretches[tid], reverse=True)
    print("%-24s %7.3fs %10d  %s" % ("%s (%s)" % (names[tid], tid), total,
          sum(1 for s in longest if s > 0.0005), " ".join("%.2f" % (s * 1e3) for s in longest[:5])))
PY
