# Two commands on a fresh machine (Python 3.11, git, make):
#   make demo   set everything up, generate a month and reconcile it on the embedded default
#   make test   set everything up and run lint and the whole test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8

# Prefect's home lives in the project, so the demo never touches a user's Prefect setup.
export PREFECT_HOME ?= $(CURDIR)/var/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: demo test lint format install tools clean audit

# Local servers the integration tests start: Azurite (npm) and a BigQuery emulator, which
# needs its own venv (it pins duckdb/sqlglot versions of its own). moto and fakesnow come with
# the dev dependencies in requirements.lock.
TOOLS := var/tools

install: $(VENV)/.installed

# The lock pins every package; uv installs exactly those, then the project itself.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

tools: $(TOOLS)/.installed

$(TOOLS)/.installed: tools/bqemulator.lock tools/node/package.json tools/node/package-lock.json
	# Debian's Chromium, for the report's browser test (needs root on a fresh machine).
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	# OpenSSH's sshd, the real SFTP server the statement tests start on a free port.
	test -x /usr/sbin/sshd || (apt-get update -qq && apt-get install -y -qq openssh-server)
	rm -rf $(TOOLS)/node && mkdir -p $(TOOLS)/node
	cp tools/node/package.json tools/node/package-lock.json $(TOOLS)/node/
	npm ci --prefix $(TOOLS)/node --no-audit --no-fund --loglevel=error
	$(PYTHON) -m venv $(TOOLS)/bqemulator
	$(TOOLS)/bqemulator/bin/pip install --quiet uv==$(UV_VERSION)
	$(TOOLS)/bqemulator/bin/uv pip sync --quiet --python $(TOOLS)/bqemulator/bin/python tools/bqemulator.lock
	touch $@

demo: install
	$(BIN)/revshare demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint tools audit
	$(BIN)/pytest

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# pip-audit over the locked dependencies (tools/audit.py): fails on a known vulnerability;
# when the vulnerability service cannot be reached it says so loudly and passes, unless
# REVSHARE_AUDIT_REQUIRED=1 (docs/security.md).
audit: install
	$(BIN)/python tools/audit.py

# Regenerate the lock after changing dependencies in pyproject.toml.
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf var .pytest_cache .ruff_cache
