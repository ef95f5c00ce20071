#!/usr/bin/env bash
# Checks deploy/consult-edge.service with `systemd-analyze verify` and prints its
# `systemd-analyze security` exposure score. verify insists that ExecStart's program exists, so
# the check runs on a copy whose ExecStart points at the given build of the binary; every other
# line is verified as shipped. Skips (exit 0, with a note) where systemd-analyze is missing.
# Usage: scripts/verify-unit.sh PATH_TO_BINARY
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:?usage: $0 PATH_TO_BINARY}")
unit=deploy/consult-edge.service

if ! command -v systemd-analyze >/dev/null; then
  echo "verify-unit: systemd-analyze not installed: unit not verified"
  exit 0
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s#^ExecStart=/usr/local/bin/consult-edge #ExecStart=$bin #" "$unit" >"$dir/consult-edge.service"
grep -q "^ExecStart=$bin " "$dir/consult-edge.service" ||
  { echo "verify-unit: ExecStart is not /usr/local/bin/consult-edge ..." >&2; exit 1; }

# verify prints problems and exits non-zero on errors; a warning alone is also a failure here.
out=$(systemd-analyze verify "$dir/consult-edge.service" 2>&1) || { echo "$out" >&2; exit 1; }
[ -z "$out" ] || { echo "verify-unit: $out" >&2; exit 1; }
echo "verify-unit: systemd-analyze verify $unit: no problems"
systemd-analyze security --offline=yes "$dir/consult-edge.service" 2>/dev/null | tail -n 1
