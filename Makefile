# consult-edge: every set-up step a fresh machine needs lives here (see README).
CARGO ?= cargo
BIN   := target/release/consult-edge
DEBUG_BIN := target/debug/consult-edge

.PHONY: run build test lint unit conformance bench soak clean

.DEFAULT_GOAL := build
-include mk/*.mk

## make run: build and start the gateway with the spec's defaults (127.0.0.1:8080, ./data).
run: build
	$(BIN) serve

build:
	$(CARGO) build --release --locked

## make test: formatting, lints, every test (unit, black-box, browser), WebSocket conformance
## (Autobahn) and the static ARM64 binary under emulation. Installs what it needs.
test: lint unit conformance test-aarch64

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	@! grep -nE '\bstd::' src/wheel/core.rs src/wheel/level.rs || \
	  (echo "src/wheel core must use only core and alloc" >&2; exit 1)

unit: browser-deps
	$(CARGO) test --locked

# Autobahn against the debug binary `make unit` built: conformance does not need -O.
conformance: unit
	$(MAKE) autobahn GATEWAY_BIN=$(DEBUG_BIN)

## make bench: criterion benches (figures go to BENCHMARKS.md).
bench:
	$(CARGO) bench --locked

clean:
	$(CARGO) clean
