#!/usr/bin/env bash
# Builds and runs the peer servers (SPEC subset, /work/shared/peers) for side-by-side runs of
# `consult-edge loadgen`. The shared folder is read-only, so the peers are copied to a build dir
# outside the source tree: target/peers (ignored by git, survives between runs).
#
# Usage:
#   scripts/peers.sh build               # axum-peer with cargo, gin-peer with Go (apt packages)
#   scripts/peers.sh start-axum PORT     # background, raised fd limit; pid in target/peers/axum-PORT.pid
#   scripts/peers.sh start-gin PORT      # same for gin; pid in target/peers/gin-PORT.pid
#   scripts/peers.sh stop                # stops the peers this script started (by their pid files)
#
# Environment: PEERS_SRC (default /work/shared/peers), PEER_SECRET (the HS256 secret, passed
# through to the peers; give the loadgen a 0600 file holding the same bytes), PEER_BACKLOG and
# PEER_WS_READ_BUF (axum tuning knobs, off by default; see the peers' README).
set -euo pipefail
cd "$(dirname "$0")/.."
src=${PEERS_SRC:-/work/shared/peers}
dir=$PWD/target/peers

wait_listening() { # name logfile pid: waits (bounded) for the peer's "listening" line
  local name=$1 log=$2 pid=$3 i
  for i in $(seq 1 100); do
    if grep -q listening "$log" 2>/dev/null; then
      echo "$name: $(grep -m1 listening "$log") (pid $pid)"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { echo "$name exited; log:" >&2; cat "$log" >&2; return 1; }
    sleep 0.1
  done
  echo "$name did not print its listening line within 10 s; log in $log" >&2
  return 1
}

start() { # name binary port
  local name=$1 bin=$2 port=${3:?usage: $0 start-$1 PORT}
  [[ -x $bin ]] || { echo "$bin is missing: run '$0 build' first" >&2; exit 1; }
  [[ -n ${PEER_SECRET:-} ]] || echo "$name: PEER_SECRET unset, the peer uses its default secret" >&2
  # One pid and log file per name and port, so several instances (default and tuned) coexist.
  local log=$dir/$name-$port.log
  # The hard fd limit on these machines is 20,000: raise the soft limit to it for the peer only.
  bash -c 'ulimit -n "$(ulimit -Hn)"; exec "$0" "$1"' "$bin" "127.0.0.1:$port" >"$log" 2>&1 &
  echo $! >"$dir/$name-$port.pid"
  wait_listening "$name" "$log" $!
}

case ${1:-} in
build)
  mkdir -p "$dir"
  # Copy sources only (never a stale target/ or bin/), keeping the build dirs between runs.
  mkdir -p "$dir/axum-peer"
  cp -r "$src/axum-peer/Cargo.toml" "$src/axum-peer/Cargo.lock" "$src/axum-peer/src" "$dir/axum-peer/"
  mkdir -p "$dir/gin-peer" && cp "$src/gin-peer/"*.go "$dir/gin-peer/"
  cargo build --release --manifest-path "$dir/axum-peer/Cargo.toml"
  if ! command -v go >/dev/null || [[ ! -d /usr/share/gocode/src/github.com/gin-gonic ]]; then
    apt-get update && apt-get install -y golang-go golang-github-gin-gonic-gin-dev \
      golang-github-gorilla-websocket-dev golang-github-golang-jwt-jwt-dev
  fi
  # Debian ships the Go libraries as GOPATH sources: build in GOPATH mode against them.
  (cd "$dir/gin-peer" && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$dir/gocache" \
    go build -o bin/gin-peer .)
  echo "built $dir/axum-peer/target/release/axum-peer and $dir/gin-peer/bin/gin-peer"
  ;;
start-axum) start axum "$dir/axum-peer/target/release/axum-peer" "${2:-}" ;;
start-gin) start gin "$dir/gin-peer/bin/gin-peer" "${2:-}" ;;
stop)
  for pidfile in "$dir"/*.pid; do
    [[ -f $pidfile ]] || continue
    name=$(basename "$pidfile" .pid)
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      # Wait (bounded) until it is gone, so its port is free for the next start.
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      echo "stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
  done
  ;;
*)
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
