#!/usr/bin/env bash
# Fails when the dependency tree for a target (normal and build edges: what `cargo build` for
# that target compiles) contains a crate that builds or links C: such a crate needs a C cross
# toolchain for the target, which the static aarch64 build deliberately does without.
# Usage: scripts/check-no-c-deps.sh TARGET_TRIPLE
set -euo pipefail
target=${1:?usage: $0 TARGET_TRIPLE}
cargo=${CARGO:-cargo}

# Crates that compile C/C++/asm or bind to a system C library.
c_crates='^(cc|cmake|bindgen|pkg-config|vcpkg|ring|openssl-sys|boring-sys|aws-lc-sys|aws-lc-fips-sys|libsqlite3-sys|zstd-sys|libz-sys|lzma-sys|bzip2-sys|libmimalloc-sys|tikv-jemalloc-sys)$'

names=$("$cargo" tree --locked --target "$target" -e normal,build --prefix none --format '{p}' |
  awk '{print $1}' | sort -u)
count=$(printf '%s\n' "$names" | grep -c .)
if bad=$(printf '%s\n' "$names" | grep -E "$c_crates"); then
  echo "check-no-c-deps: $target tree builds C through: $bad" >&2
  for crate in $bad; do
    "$cargo" tree --locked --target "$target" -e normal,build -i "$crate" >&2
  done
  exit 1
fi
echo "check-no-c-deps: $target: $count crates, none builds C (no cc, cmake, ring, *-sys C libs)"
