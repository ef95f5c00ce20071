# Static ARM64 build and its emulated test run (SPEC.md section 10); included by the Makefile.
#
# make aarch64        static aarch64-unknown-linux-musl release binary, linked by rust-lld (no C
#                     toolchain for the target), then checked: no C in the dependency tree, `file`
#                     says ARM aarch64 + statically linked, `ldd` finds nothing.
# make test-aarch64   the same binary under qemu-aarch64-static: a smoke run, then the black-box
#                     tests (built for the host) with CONSULT_EDGE_BIN / CONSULT_EDGE_RUNNER set.
# make deploy-verify  `systemd-analyze verify` of deploy/consult-edge.service (skipped without it).
#
# They install what they need on a fresh machine: the rustup target, qemu-user-static and file.

AARCH64_TARGET := aarch64-unknown-linux-musl
AARCH64_BIN    := target/$(AARCH64_TARGET)/release/consult-edge
# User-mode emulator; binfmt_misc is not assumed, so it is always named explicitly.
QEMU_AARCH64   ?= qemu-aarch64-static
# apt-get needs root; CI and the dev machines run as root, elsewhere `make APT_SUDO=sudo ...`.
APT_SUDO       ?=
APT_GET        := $(APT_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: aarch64 aarch64-target aarch64-deps-check test-aarch64 qemu-aarch64 file-tool deploy-verify

## make aarch64: static aarch64-musl release binary (see mk/aarch64.mk).
aarch64: aarch64-target aarch64-deps-check file-tool
	$(CARGO) build --release --locked --target $(AARCH64_TARGET)
	scripts/check-static-aarch64.sh $(AARCH64_BIN)

# The musl target's std, crt objects, libc.a and libunwind.a come from rustup's rust-std.
aarch64-target:
	@rustup target list --installed | grep -qx '$(AARCH64_TARGET)' || \
	  rustup target add $(AARCH64_TARGET)

# A C build (cc, cmake, ring, BoringSSL, aws-lc...) in the target's tree would need an aarch64 C
# cross toolchain, which this build deliberately does without.
aarch64-deps-check:
	scripts/check-no-c-deps.sh $(AARCH64_TARGET)

## make test-aarch64: black-box tests against the aarch64 binary under qemu-aarch64-static.
test-aarch64: aarch64 qemu-aarch64
	CARGO="$(CARGO)" QEMU_AARCH64="$(QEMU_AARCH64)" scripts/test-aarch64.sh $(AARCH64_BIN)

qemu-aarch64:
	@command -v $(QEMU_AARCH64) >/dev/null || \
	  { $(APT_GET) update -qq && $(APT_GET) install -y -qq qemu-user-static; }

file-tool:
	@command -v file >/dev/null || \
	  { $(APT_GET) update -qq && $(APT_GET) install -y -qq file; }

## make deploy-verify: systemd-analyze verify + security score of deploy/consult-edge.service.
deploy-verify: aarch64
	scripts/verify-unit.sh $(AARCH64_BIN)
