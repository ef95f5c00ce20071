#!/usr/bin/env bash
# Syscalls and CPU per relayed message, per gateway thread, in a load generator's steady state.
#
# usage: scripts/syscalls-per-message.sh BIN [RATE] [CONNECTIONS] [DURATION_S]
#   LOADGEN=BIN2  run the load generator from another build (to compare gateways under the
#                 same client); default: BIN itself
#
# Starts `BIN serve` on a random loopback port with a fresh data dir under target/bench, runs
# `loadgen --rate RATE --connections CONNECTIONS --duration DURATION_S` against it, and from
# 3 s in counts, for 4 s, each thread's syscalls by name and its task-clock with `perf stat`
# (needs root or perf_event_paranoid <= 1). Prints one line per thread and syscall with the
# count per message (messages = RATE x 4), then the load generator's latency line.
# Only 127.0.0.1; bounded by DURATION_S (default 10, at least 8).
set -euo pipefail

bin=${1:?usage: $0 BIN [RATE] [CONNECTIONS] [DURATION_S]}
rate=${2:-20000}
conns=${3:-1000}
dur=${4:-10}
loadgen_bin=${LOADGEN:-$bin}
window_s=4
((dur >= 8)) || { echo "DURATION_S must be at least 8 (3 s warm-up + 4 s window)" >&2; exit 2; }
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d "$root/target/bench/syscalls.XXXXXX")
port=$((20000 + RANDOM % 20000))
server_pid=
cleanup() {
  [[ -z $server_pid ]] || kill "$server_pid" 2>/dev/null || true
  [[ -n ${KEEP:-} ]] || rm -rf "$out"
}
trap cleanup EXIT

head -c 32 /dev/urandom | base64 >"$out/secret"
chmod 600 "$out/secret"
# `exec` keeps the pid: $! is the server itself, not a shell around it.
raise_fd_limit='ulimit -n "$(ulimit -Hn)"; exec "$@"'

bash -c "$raise_fd_limit" _ "$bin" serve --listen "127.0.0.1:$port" --data-dir "$out/data" \
  --jwt-secret-file "$out/secret" >"$out/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 200); do
  curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && break
  kill -0 "$server_pid" || { cat "$out/server.log" >&2; exit 1; }
  sleep 0.05
done

bash -c "$raise_fd_limit" _ "$loadgen_bin" loadgen --url "ws://127.0.0.1:$port" --jwt-secret-file "$out/secret" \
  --data-dir "$out" --json-only --connections "$conns" --heartbeat 15 --rate "$rate" \
  --duration "$dur" >"$out/report" &
loadgen_pid=$!

sleep 3
events=task-clock
for s in recvfrom sendto writev epoll_ctl epoll_pwait timerfd_settime read write futex \
  pwrite64 fdatasync; do
  events+=",syscalls:sys_enter_$s"
done
perf stat -e "$events" --per-thread -p "$server_pid" -o "$out/perf.txt" -- sleep "$window_s" \
  >/dev/null 2>&1
wait "$loadgen_pid"

messages=$((rate * window_s))
echo "# $bin, loadgen $loadgen_bin: rate=$rate connections=$conns, ${window_s} s window = $messages messages"
awk -v m="$messages" '
  $3 ~ /^syscalls:sys_enter_/ && $2 > 0 { sub("syscalls:sys_enter_", "", $3); printf "%-24s %-16s %10d  %6.2f per message\n", $1, $3, $2, $2 / m }
  $4 == "task-clock" { printf "%-24s %-16s %10.1f ms %6.2f us per message\n", $1, "task-clock", $2, $2 * 1000 / m }
' "$out/perf.txt" | sort
python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print("loadgen: sent", r["sent"], "received", r["received"], "lost", r["lost"], "latency_us", r["latency_us"])' "$out/report"
