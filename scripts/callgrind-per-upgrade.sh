#!/usr/bin/env bash
# User-space instructions the gateway spends per authenticated socket (upgrade + auth + join),
# counted by callgrind: stable on a shared machine where upgrades/s move by ±15% between runs.
# Used to judge changes to the upgrade path (docs/perf.md "Upgrades: instructions per
# upgrade"); the figures of record for upgrades/s stay the side-by-side runs.
#
# Usage: scripts/callgrind-per-upgrade.sh BIN [CONNECTIONS] [SMALL]
#   (defaults 2,000 and 100 sockets)
#   TOP=N     also print the N functions of the executor thread whose inclusive cost grows most
#             per socket (needs a BIN with symbols: the target/prof build, see docs/perf.md)
#   KEEP=DIR  keep every thread's callgrind output and the gateway logs in DIR
#
# Runs BIN twice under `valgrind --tool=callgrind --separate-threads=yes` (user space only)
# against `BIN loadgen --rate 1 --duration 1` on 127.0.0.1, once with CONNECTIONS sockets and
# once with SMALL, and prints (Ir(CONNECTIONS) − Ir(SMALL)) / (CONNECTIONS − SMALL), for all
# threads and for the executor thread alone (the one that limits upgrades/s).
#
# What one socket of loadgen costs the gateway (src/loadgen/): half a `POST /v1/consultations`
# (one per pair, over 4 keep-alive HTTP connections, a redb commit each on the store writer
# thread), then a TCP connect, the upgrade with `Authorization: Bearer` (JWT verify), `ready`,
# `join` (the pair's second join also sends `presence`), `joined`, and at the end a 1000 close.
# The one message of the run (rate 1 for 1 s) is in both runs and cancels out. The create
# handler's share of the executor thread is printed apart, so "upgrade + auth + join + close"
# is the executor's figure without it.
#
# The gateway runs with RUST_LOG unset, as `scripts/bench-side-by-side.sh` runs it: level
# `info` (DEFAULT_LOG_FILTER), stderr to a file. Data dir on /dev/shm, so the disk does not pace
# the run. Needs valgrind (apt-get install valgrind) and curl.
set -euo pipefail
bin=$(realpath "$1")
conns=${2:-2000}
small=${3:-100}
top=${TOP:-0}
keep=${KEEP:-}
[[ -z $keep ]] || mkdir -p "$keep"
unset RUST_LOG

# The consultation part inside the executor thread: the create handler's inclusive cost (its
# HTTP head parse and response write are not in it, so the estimate is a little low).
create_fn='consult_edge::gateway::api::create_consultation::{{closure}}'

total() { # callgrind out -> Ir
  callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !seen {gsub(",", "", $1); print $1; seen = 1}'
}

inclusive() { # callgrind out -> "FUNCTION<TAB>IR", inclusive, one line per function (the
  # largest of its file:function entries: an inlined function is listed once per file)
  callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$1" 2>/dev/null |
    awk '/^ *[0-9,]+ .*:/ {ir = $1; gsub(",", "", ir); ir += 0; sub(/^ *[0-9,]+ +(\([^)]*\) +)?/, "");
         sub(/ \[[^]]*\]$/, ""); sub(/^[^:]*:/, ""); if (ir > best[$0]) best[$0] = ir}
         END {for (f in best) print f "\t" best[f]}' | sort -t $'\t' -k1,1
}

run() { # connections -> prints "IR_ALL IR_EXECUTOR HELD UPGRADES EXECUTOR_PROFILE"
  local d port pid held upgrades all=0 f prof
  d=$(mktemp -d /dev/shm/ce-callgrind-up-XXXX)
  printf 'callgrind-per-upgrade-secret-0123456789ab' >"$d/secret"
  chmod 600 "$d/secret"
  port=$((19100 + RANDOM % 400))
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$d/out" "$bin" serve \
    --listen "127.0.0.1:$port" --data-dir "$d/data" --jwt-secret-file "$d/secret" >"$d/log" 2>&1 &
  pid=$!
  for _ in $(seq 300); do curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  "$bin" loadgen --url "ws://127.0.0.1:$port" --connections "$1" --heartbeat 15 --rate 1 \
    --duration 1 --jwt-secret-file "$d/secret" --data-dir "$d/lg" --json-only >"$d/report.json" || true
  held=$(sed -n 's/.*"connections_held":\([0-9]*\).*/\1/p' "$d/report.json")
  upgrades=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^consult_edge_upgrades_total/ {print $2}')
  kill -INT "$pid"
  wait "$pid" 2>/dev/null || true
  for f in "$d"/out-*; do all=$((all + $(total "$f"))); done
  # Thread 1 is the executor (main) thread; the others are the store writer and async-io's.
  prof=/dev/shm/ce-callgrind-up.$1.$$
  cp "$d/out-01" "$prof"
  if [[ -n $keep ]]; then
    for f in "$d"/out-*; do cp "$f" "$keep/callgrind.$1.${f##*/}"; done
    cp "$d/log" "$keep/gateway.$1.log"
  fi
  rm -rf "$d"
  echo "$all $(total "$prof") ${held:-0} ${upgrades%.*} $prof"
}

read -r big big_ex big_held big_up big_prof < <(run "$conns")
read -r low low_ex low_held low_up low_prof < <(run "$small")
# `head` below may end the listing early (SIGPIPE, then pipefail): remove the copies on any exit.
trap 'rm -f "$big_prof" "$low_prof"' EXIT
echo "$conns sockets: Ir=$big (executor $big_ex) held=$big_held upgrades=$big_up"
echo "$small sockets: Ir=$low (executor $low_ex) held=$low_held upgrades=$low_up"
if [[ $big_held != "$conns" || $low_held != "$small" ]]; then
  echo "warning: not every socket was held; the figures below are not per socket" >&2
fi
n=$((conns - small))
per_fn() { # function name -> its inclusive Ir per socket on the executor thread
  local a b
  a=$(inclusive "$big_prof" | awk -F '\t' -v f="$1" '$1 == f {print $2}')
  b=$(inclusive "$low_prof" | awk -F '\t' -v f="$1" '$1 == f {print $2}')
  echo $(((${a:-0} - ${b:-0}) / n))
}
create=$(per_fn "$create_fn")
echo "Ir per socket, all threads (½ consultation create + upgrade + auth + join + close): $(((big - low) / n))"
echo "Ir per socket, executor thread: $(((big_ex - low_ex) / n))"
echo "  of which ½ consultation create (handler only): $create"
echo "  upgrade + auth + join + close: $(((big_ex - low_ex) / n - create))"
if [[ $top -gt 0 ]]; then
  echo "executor thread, top $top functions by inclusive Ir per socket:"
  join -t $'\t' -a 1 -e 0 -o 0,1.2,2.2 <(inclusive "$big_prof") <(inclusive "$low_prof") |
    awk -F '\t' -v n="$n" '{printf "%10d  %s\n", ($2 - $3) / n, $1}' | sort -rn | head -n "$top" || true
fi
