# make soak: the 20,000-socket leak soak (release build; raises its own fd limit).
# The overload bench figure is separate: see BENCHMARKS.md "## Reliability".
.PHONY: soak
soak:
	$(CARGO) test --release --locked --test soak -- --ignored --nocapture
