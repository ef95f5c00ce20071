#!/usr/bin/env bash
# Side-by-side measurement of consult-edge against the peer servers (axum default, axum tuned,
# gin), one session, same parameters, release builds. Figures go to BENCHMARKS.md by hand.
#
# Usage:
#   scripts/bench-side-by-side.sh all [RUNS]   # every server, every scenario, RUNS times (default 2)
#   SERVERS="consult-edge gin" scripts/bench-side-by-side.sh all 1   # a subset, same scenarios
#   scripts/bench-side-by-side.sh start-time   # consult-edge start to first /healthz, median of 10
#   scripts/bench-side-by-side.sh summary DIR  # re-print the table of a finished session
#
# Per server and run (each server freshly started, so RSS deltas start from an idle process):
#   idle10k  loadgen --connections 10000 --heartbeat 15 --rate 1000 --duration 20 --pid PID
#            (time to connect all, upgrades+joins/s, RSS per idle socket, latency at 1,000/s)
#   relay20k loadgen --connections 1000 --rate 20000 --duration 10, with the server's
#            utime+stime from /proc/PID/stat before and after
#   base1k   (consult-edge only) loadgen --connections 1000 --rate 1 --duration 1: the same
#            connect/close work with no load; CPU per message = (relay20k − base1k) / (sent
#            difference). The peers' figure is the raw one (connect/close of 1,000 included).
#   wrk      wrk -t2 -c100 -d10s http://127.0.0.1:PORT/healthz
# Every record carries /proc/loadavg at its start: the machine is shared.
#
# Needs: target/release/consult-edge (cargo build --release), the peers (scripts/peers.sh
# build), wrk (apt-get install wrk), python3. Output: target/bench/side-by-side-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/target/release/consult-edge
peers=$root/target/peers
axum_bin=$peers/axum-peer/target/release/axum-peer
gin_bin=$peers/gin-peer/bin/gin-peer

# The HS256 secret: 40 ASCII characters, mode 0600, the same bytes as the peers' PEER_SECRET.
secret_value=bench-side-by-side-secret-0123456789abcd
base_port=9300        # server s on run r listens on base_port + 10*r + s (no port reuse)
readiness_tries=200   # readiness poll: 200 × 50 ms = 10 s at most per server start

new_session() {
  out=$root/target/bench/side-by-side-$(date +%Y%m%d-%H%M%S)
  mkdir -p "$out"
  secret_file=$out/jwt-secret
  printf '%s' "$secret_value" >"$secret_file"
  chmod 600 "$secret_file"
  {
    echo "nproc=$(nproc) cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "kernel=$(uname -r) rustc=$(rustc --version) go=$(go version 2>/dev/null | cut -d' ' -f3)"
    echo "wrk=$(wrk --version 2>&1 | head -1) fd_hard=$(ulimit -Hn)"
    echo "git=$(git rev-parse --short HEAD)"
  } >"$out/machine.txt"
  echo "session dir: $out" >&2
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

cpu_ticks() { # pid: utime+stime in clock ticks (fields 14 and 15 after the "(comm)" field)
  sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

wait_healthz() { # port pid
  local i
  for i in $(seq 1 $readiness_tries); do
    curl -fs -o /dev/null "http://127.0.0.1:$1/healthz" && return 0
    kill -0 "$2" 2>/dev/null || { echo "server on $1 exited" >&2; return 1; }
    sleep 0.05
  done
  echo "server on $1 not ready after 10 s" >&2
  return 1
}

start_server() { # name port -> sets server_pid
  local name=$1 port=$2 log=$out/$1-$2.log
  case $name in
  consult-edge)
    local data=$out/data-$port
    rm -rf "$data" && mkdir -p "$data"
    bash -c 'ulimit -n "$(ulimit -Hn)"; exec "$@"' _ "$bin" serve --listen "127.0.0.1:$port" \
      --data-dir "$data" --jwt-secret-file "$secret_file" >"$log" 2>&1 &
    ;;
  axum) PEER_SECRET=$secret_value bash -c 'ulimit -n "$(ulimit -Hn)"; exec "$0" "$1"' \
    "$axum_bin" "127.0.0.1:$port" >"$log" 2>&1 & ;;
  axum-tuned) PEER_SECRET=$secret_value PEER_BACKLOG=4096 PEER_WS_READ_BUF=4096 \
    bash -c 'ulimit -n "$(ulimit -Hn)"; exec "$0" "$1"' "$axum_bin" "127.0.0.1:$port" \
    >"$log" 2>&1 & ;;
  gin) PEER_SECRET=$secret_value bash -c 'ulimit -n "$(ulimit -Hn)"; exec "$0" "$1"' \
    "$gin_bin" "127.0.0.1:$port" >"$log" 2>&1 & ;;
  esac
  server_pid=$!
  wait_healthz "$port" "$server_pid"
}

stop_server() { # pid: SIGTERM, bounded wait, then SIGKILL (our own child only)
  local pid=$1 i
  kill "$pid" 2>/dev/null || return 0
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

loadgen() { # name port scenario run pid -- loadgen args...
  local name=$1 port=$2 scenario=$3 run=$4 pid=$5
  shift 6
  local mode=() la before after report
  [[ $name == consult-edge ]] || mode=(--peer-mode)
  la=$(loadavg)
  before=$(cpu_ticks "$pid")
  report=$("$bin" loadgen --url "ws://127.0.0.1:$port" --jwt-secret-file "$secret_file" \
    --data-dir "$out" --json-only "${mode[@]}" "$@" || true)
  after=$(cpu_ticks "$pid")
  printf '{"server":"%s","run":%d,"scenario":"%s","loadavg":"%s","cpu_ticks":%d,"clk_tck":%d,"cmd":"consult-edge loadgen %s","report":%s}\n' \
    "$name" "$run" "$scenario" "$la" $((after - before)) "$(getconf CLK_TCK)" \
    "--url ws://127.0.0.1:$port ${mode[*]} $*" "${report:-null}" >>"$out/results.jsonl"
  echo "$name run $run $scenario (load $la): $report" >&2
}

wrk_healthz() { # name port run
  local la result
  la=$(loadavg)
  result=$(wrk -t2 -c100 -d10s "http://127.0.0.1:$2/healthz" 2>&1)
  local rps errors
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$result")
  errors=$(grep -c 'Non-2xx\|Socket errors' <<<"$result" || true)
  printf '{"server":"%s","run":%d,"scenario":"wrk","loadavg":"%s","rps":%s,"error_lines":%d,"cmd":"wrk -t2 -c100 -d10s http://127.0.0.1:%s/healthz"}\n' \
    "$1" "$3" "$la" "${rps:-null}" "$errors" "$2" >>"$out/results.jsonl"
  echo "$1 run $3 wrk (load $la): $rps req/s" >&2
  echo "$result" >"$out/wrk-$1-$3.txt"
}

one_server() { # name index run
  local name=$1 port=$((base_port + 10 * $3 + $2)) run=$3
  start_server "$name" "$port"
  local pid=$server_pid
  loadgen "$name" "$port" idle10k "$run" "$pid" -- \
    --connections 10000 --heartbeat 15 --rate 1000 --duration 20 --pid "$pid"
  loadgen "$name" "$port" relay20k "$run" "$pid" -- \
    --connections 1000 --heartbeat 15 --rate 20000 --duration 10
  # Not on the peers: in --peer-mode the ids are c0..c499 again, so the joins replay the 200
  # messages per consultation relay20k left in their memory (axum: open_timeout, gin: 4029).
  [[ $name != consult-edge ]] || loadgen "$name" "$port" base1k "$run" "$pid" -- \
    --connections 1000 --heartbeat 15 --rate 1 --duration 1
  wrk_healthz "$name" "$port" "$run"
  stop_server "$pid"
}

start_time() { # median of 10: spawn consult-edge on an empty data dir, poll /healthz tightly
  python3 - "$bin" "$secret_file" "$out" <<'EOF'
import os, shutil, socket, statistics, subprocess, sys, time
bin_, secret, out = sys.argv[1:4]
port, samples = 9399, []
for i in range(10):
    data = os.path.join(out, f"start-data-{i}")
    shutil.rmtree(data, ignore_errors=True); os.makedirs(data)
    t0 = time.perf_counter()
    p = subprocess.Popen([bin_, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                          "--jwt-secret-file", secret],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = t0 + 5.0
    while time.perf_counter() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    break
        except OSError:
            pass
    samples.append((time.perf_counter() - t0) * 1000)
    p.terminate(); p.wait(timeout=10)
print("start_to_healthz_ms samples=" + " ".join(f"{s:.1f}" for s in samples))
print(f"median_ms={statistics.median(samples):.1f} min_ms={min(samples):.1f} max_ms={max(samples):.1f}")
EOF
}

summary() { # dir: one table row per record
  python3 - "$1/results.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base = {(r["server"], r["run"]): r for r in rows if r["scenario"] == "base1k"}
for r in rows:
    s, k, la = r["server"], r["run"], r["loadavg"]
    if r["scenario"] == "wrk":
        print(f"{s:13} run{k} wrk      load {la}: {r['rps']} req/s"); continue
    rep = r["report"] or {}
    lat, rss = rep.get("latency_us") or {}, rep.get("rss") or {}
    line = (f"{s:13} run{k} {r['scenario']:8} load {la}: held {rep.get('connections_held')} "
            f"errors {rep.get('errors')} closes {rep.get('closes')} sent {rep.get('sent')} "
            f"lost {rep.get('lost')} p50/p99/max {lat.get('p50')}/{lat.get('p99')}/{lat.get('max')} us")
    if r["scenario"] == "idle10k":
        line += (f" connect {rep.get('connect_secs')} s ({rep.get('upgrades_per_sec')}/s)"
                 f" rss {rss.get('before_kib')}->{rss.get('idle_kib')} KiB"
                 f" = {rss.get('kib_per_socket')} KiB/socket")
    if r["scenario"] == "relay20k" and (s, k) in base:
        b = base[(s, k)]
        ticks = r["cpu_ticks"] - b["cpu_ticks"]
        sent = rep.get("sent", 0) - ((b["report"] or {}).get("sent") or 0)
        us = ticks / r["clk_tck"] * 1e6 / sent if sent else float("nan")
        raw = r["cpu_ticks"] / r["clk_tck"] * 1e6 / rep["sent"] if rep.get("sent") else float("nan")
        line += f" cpu {us:.1f} us/msg (raw incl. connect/close {raw:.1f})"
    print(line)
EOF
}

case ${1:-} in
all)
  runs=${2:-2}
  new_session
  first=${FIRST_RUN:-1} # numbering (and ports) continue a session: FIRST_RUN=3 ... all 1
  for run in $(seq "$first" $((first + runs - 1))); do
    i=0
    for name in consult-edge axum axum-tuned gin; do
      i=$((i + 1))
      [[ " ${SERVERS:-consult-edge axum axum-tuned gin} " == *" $name "* ]] || continue
      one_server "$name" "$i" "$run"
    done
  done
  summary "$out" | tee "$out/summary.txt"
  ;;
start-time) new_session && start_time | tee "$out/start-time.txt" ;;
summary) summary "${2:?summary DIR}" ;;
*) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
