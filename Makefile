# The two commands: `make run` (start the gateway with embedded defaults) and
# `make test` (run the whole suite). Both create the virtualenv and install first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The npm `macaroon` package (a port of go-macaroon, which Aperture uses): an independent
# decoder for our L402 macaroons in the tests.
NPM_STAMP := $(VENV)/npm/.installed

.PHONY: run test install system-deps lint clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) scripts/run.py

test: $(STAMP) system-deps $(NPM_STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

$(NPM_STAMP):
	npm install --silent --no-save --no-audit --no-fund --prefix $(VENV)/npm macaroon@3.0.4
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

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) var
