# The two commands: `make run` (start the gateway with embedded defaults) and
# `make test` (run the whole suite). Both create the virtualenv and install first: `make run`
# only what running needs, `make test` the test tools too.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# Two stamps: running needs requirements.txt only; tests and lint add requirements-dev.txt.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
# The npm `macaroon` package (a port of go-macaroon, which Aperture uses): an independent
# decoder for our L402 macaroons in the tests; `js-lnurl` (fiatjaf's LNURL client): a
# wallet's side of a refund's LNURL-withdraw in the tests; `@getalby/lightning-tools`:
# Alby's L402 and MPP clients, paying the gateway in the tests.
NPM_STAMP := $(VENV)/npm/.installed

.PHONY: run test install system-deps lint clean

$(RUN_STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(RUN_STAMP)

$(DEV_STAMP): $(RUN_STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(DEV_STAMP)

# Everything: what running, the tests and lint need.
install: $(DEV_STAMP)

run: $(RUN_STAMP)
	$(PY) scripts/run.py

test: $(DEV_STAMP) system-deps $(NPM_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

$(NPM_STAMP): Makefile
	npm install --silent --no-save --no-audit --no-fund --prefix $(VENV)/npm macaroon@3.0.4 js-lnurl@0.6.0 @getalby/lightning-tools@9.0.1
	@touch $(NPM_STAMP)

# The page tests drive Debian's Chromium and decode QR codes with zbarimg; the L402 tests
# run Node.js. Installed with apt-get when missing (as root, or through sudo); never a
# browser download of Playwright's.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v zbarimg >/dev/null 2>&1 || missing="$$missing zbar-tools"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) var
