#!/usr/bin/env bash
# User-space instructions the gateway spends per relayed message, counted by callgrind: stable
# on a shared machine where CPU-time figures move by ±15% between runs. Used to compare builds
# (docs/perf.md "Instructions per message"); the figures of record for CPU time stay the
# side-by-side runs.
#
# Usage: scripts/callgrind-per-message.sh BIN [CONNECTIONS] [RATE] [SECONDS]
#   (defaults 100 sockets, 500 msgs/s, 4 s: 2,000 messages)
# Runs BIN twice under `valgrind --tool=callgrind` against `BIN loadgen` on 127.0.0.1, once with
# the load and once with one message (connect, join and close only), and prints
# (Ir with load − Ir without) / messages stored. Data dir on /dev/shm, so the disk does not
# pace the run. Needs valgrind (apt-get install valgrind) and curl.
set -euo pipefail
bin=$(realpath "$1")
conns=${2:-100}
rate=${3:-500}
secs=${4:-4}

run() { # rate seconds -> prints "IR STORED"
  local d port pid stored ir
  d=$(mktemp -d /dev/shm/ce-callgrind-XXXX)
  printf 'callgrind-per-message-secret-0123456789ab' >"$d/secret"
  chmod 600 "$d/secret"
  port=$((19500 + RANDOM % 400))
  valgrind --tool=callgrind --callgrind-out-file="$d/out" "$bin" serve --listen "127.0.0.1:$port" \
    --data-dir "$d/data" --jwt-secret-file "$d/secret" >"$d/log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  "$bin" loadgen --url "ws://127.0.0.1:$port" --connections "$conns" --heartbeat 15 --rate "$1" \
    --duration "$2" --jwt-secret-file "$d/secret" --data-dir "$d/lg" --json-only >"$d/report.json"
  stored=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^consult_edge_messages_stored_total/ {print $2}')
  kill -INT "$pid"
  wait "$pid" 2>/dev/null || true
  ir=$(callgrind_annotate "$d/out" 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen {gsub(",", "", $1); print $1; seen = 1}')
  rm -rf "$d"
  echo "$ir ${stored%.*}"
}

read -r loaded stored < <(run "$rate" "$secs")
read -r idle idle_stored < <(run 1 1)
echo "loaded: Ir=$loaded stored=$stored; connect/close only: Ir=$idle stored=$idle_stored"
echo "Ir per message: $(((loaded - idle) / (stored - idle_stored)))"
