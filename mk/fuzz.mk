# Fuzzing (issue 9 item 1); included by the Makefile. The fuzz crate is fuzz/ (its own
# workspace, nightly + cargo-fuzz); the stable replay and proptests are tests/fuzz_regressions.rs.
#
# make fuzz-deps          install cargo-fuzz and the nightly toolchain if missing
# make fuzz               run every target for FUZZ_SECONDS (default 60), one after another
# make fuzz-one T=name    run one target
# make fuzz-regressions   the stable replay of every saved input + proptests (part of `make unit`)
#
# Limits: libFuzzer's -rss_limit_mb / -malloc_limit_mb make unbounded allocation a crash.
# Runs are sequential on purpose: the dev machines have 2 cores shared with other builds.

FUZZ_SECONDS  ?= 60
FUZZ_RSS_MB   ?= 512
FUZZ_MALLOC_MB ?= 64
FUZZ_TARGETS  := http_head chunked traceparent config jwt ws_frame
FUZZ_FLAGS     = -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=$(FUZZ_RSS_MB) \
                 -malloc_limit_mb=$(FUZZ_MALLOC_MB) -print_final_stats=1

.PHONY: fuzz fuzz-deps fuzz-one fuzz-regressions

## make fuzz-deps: cargo-fuzz and nightly, installed once.
fuzz-deps:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked

## make fuzz: every target for FUZZ_SECONDS each (corpus in fuzz/corpus, seeds from fuzz/seeds).
fuzz: fuzz-deps
	cd fuzz && cargo +nightly fuzz build
	@for t in $(FUZZ_TARGETS); do $(MAKE) --no-print-directory fuzz-one T=$$t || exit 1; done

## make fuzz-one T=<target>: one target; a crash leaves its input in fuzz/artifacts/<target>/.
fuzz-one: fuzz-deps
	mkdir -p fuzz/corpus/$(T)
	cd fuzz && cargo +nightly fuzz run $(T) corpus/$(T) seeds/$(T) -- \
	  -dict=dicts/$(T).dict $(FUZZ_FLAGS)

## make fuzz-regressions: saved crash inputs and seeds replayed on stable, plus proptests.
fuzz-regressions:
	$(CARGO) test --locked --test fuzz_regressions
