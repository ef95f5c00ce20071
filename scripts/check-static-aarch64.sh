#!/usr/bin/env bash
# Checks that a binary is a statically linked ARM aarch64 ELF (no interpreter, no shared
# libraries), then prints its size next to the x86_64 release binary when that one exists.
# Usage: scripts/check-static-aarch64.sh PATH
set -euo pipefail
bin=${1:?usage: $0 PATH}
host_bin=target/release/consult-edge

desc=$(file -b "$bin")
echo "file: $bin: $desc"
case $desc in
  *"ARM aarch64"*) ;;
  *) echo "check-static: $bin is not an ARM aarch64 ELF" >&2; exit 1 ;;
esac
case $desc in
  *"statically linked"* | *"static-pie linked"*) ;;
  *) echo "check-static: $bin is not statically linked" >&2; exit 1 ;;
esac

# ldd must find no shared library: it exits non-zero with "not a dynamic executable".
if ldd_out=$(ldd "$bin" 2>&1); then
  echo "check-static: ldd found dynamic dependencies:" >&2
  echo "$ldd_out" >&2
  exit 1
fi
echo "ldd: $ldd_out"
# ldd cannot load a foreign-architecture ELF, so it says "not a dynamic executable" even for a
# dynamic aarch64 binary: the ELF program and dynamic headers are the real proof.
if command -v readelf >/dev/null; then
  if readelf -lW "$bin" | grep -q 'INTERP'; then
    echo "check-static: $bin asks for a program interpreter" >&2; exit 1
  fi
  if readelf -dW "$bin" | grep -q 'NEEDED'; then
    echo "check-static: $bin needs shared libraries:" >&2
    readelf -dW "$bin" | grep 'NEEDED' >&2; exit 1
  fi
  echo "readelf: no INTERP program header, no NEEDED shared library"
fi

size() { stat -c %s "$1"; }
echo "size: aarch64-musl static $(size "$bin") bytes"
if [ -f "$host_bin" ]; then
  echo "size: x86_64 host ($host_bin, may be from an older build) $(size "$host_bin") bytes"
fi
