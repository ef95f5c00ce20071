# consult-edge: every set-up step a fresh machine needs lives here (see README).
CARGO ?= cargo
BIN   := target/release/consult-edge

.PHONY: run build test lint unit bench clean

.DEFAULT_GOAL := build
-include mk/*.mk

## make run: build and start the gateway with the spec's defaults (127.0.0.1:8080, ./data).
run: build
	$(BIN) serve

build:
	$(CARGO) build --release --locked

## make test: formatting, lints and every test.
test: lint unit

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	@! grep -rnE '\bstd::' src/wheel/core.rs src/wheel/level.rs || \
	  (echo "src/wheel core must use only core and alloc" >&2; exit 1)

unit:
	$(CARGO) test --locked --all-targets

## make bench: criterion benches (figures go to BENCHMARKS.md).
bench:
	$(CARGO) bench --locked --bench wheel

clean:
	$(CARGO) clean
