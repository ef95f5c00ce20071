# WebSocket conformance: Autobahn|Testsuite's fuzzingclient against GET /debug/echo (see
# docs/autobahn.md). The suite is Python 2 code: it is installed from PyPI with pyenv's CPython
# 2.7 into a `pip install --target` folder under target/autobahn/, never into the repo or the
# interpreter's own site-packages (pip's --prefix mode would uninstall the interpreter's
# setuptools; --target does not touch it).

# CPython 2.7 that runs wstest.
AUTOBAHN_PYTHON2 ?= $(HOME)/.pyenv/versions/2.7.18/bin/python
# Target a server that is already running instead of starting the gateway, e.g.
# AUTOBAHN_URL=ws://127.0.0.1:9001/debug/echo
AUTOBAHN_URL ?=
# The gateway binary to start (with --enable-echo) when AUTOBAHN_URL is empty. Only the default
# is built first; an override is used as it is.
GATEWAY_BIN ?= $(BIN)
# Seconds the whole wstest run may take before it is killed and the run fails.
AUTOBAHN_TIMEOUT ?= 600

AUTOBAHN_DIR   := target/autobahn
AUTOBAHN_SITE  := $(AUTOBAHN_DIR)/site
AUTOBAHN_REQS  := scripts/autobahn/requirements-py27.txt
# Written only after pip succeeded: its presence means the pinned set is installed.
AUTOBAHN_STAMP := $(AUTOBAHN_SITE)/.installed

.PHONY: autobahn autobahn-deps autobahn-selftest

## make autobahn: WebSocket conformance run (AUTOBAHN_URL=ws://... or GATEWAY_BIN=... to retarget).
autobahn: autobahn-deps autobahn-selftest $(if $(AUTOBAHN_URL),,$(if $(filter $(BIN),$(GATEWAY_BIN)),build))
	PYTHONDONTWRITEBYTECODE=1 python3 scripts/autobahn/run.py --python2 $(AUTOBAHN_PYTHON2) --site $(AUTOBAHN_SITE) \
	  --out $(AUTOBAHN_DIR) --timeout $(AUTOBAHN_TIMEOUT) \
	  $(if $(AUTOBAHN_URL),--url $(AUTOBAHN_URL),--gateway $(GATEWAY_BIN))

## make autobahn-deps: install the pinned Autobahn|Testsuite under target/autobahn (once).
autobahn-deps: $(AUTOBAHN_STAMP)

$(AUTOBAHN_STAMP): $(AUTOBAHN_REQS)
	@test -x $(AUTOBAHN_PYTHON2) || { echo "autobahn: no CPython 2.7 at $(AUTOBAHN_PYTHON2);" \
	  "install it (pyenv install 2.7.18) or set AUTOBAHN_PYTHON2" >&2; exit 1; }
	rm -rf $(AUTOBAHN_SITE)
	$(AUTOBAHN_PYTHON2) -m pip install --disable-pip-version-check --no-warn-script-location \
	  --no-input --target $(AUTOBAHN_SITE) -r $(AUTOBAHN_REQS)
	$(AUTOBAHN_PYTHON2) -E -s -B scripts/autobahn/wstest_py27.py $(AUTOBAHN_SITE) --autobahnversion
	touch $@

## make autobahn-selftest: the summary checker's own tests (fabricated reports in a temp dir).
autobahn-selftest:
	PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s scripts/autobahn -p 'test_*.py'
