# sales-etl: the two commands (make demo, make test) set everything up themselves.
# Python 3.13 (the app pins its worker runtime, azure-functions-runtime, for 3.13): the newest
# 3.13.x under pyenv, else python3.13 / python3 on PATH, each checked by running it (pyenv's
# shim refuses to run while another version is global). Override with PYTHON=/path/to/python.
PY_MINOR := 3.13
comma  := ,
ifeq ($(origin PYTHON), undefined)
PYTHON := $(shell for p in $$(ls -d "$$(pyenv root 2>/dev/null)"/versions/$(PY_MINOR).*/bin/python$(PY_MINOR) 2>/dev/null | sort -rV) $$(command -v python$(PY_MINOR)) $$(command -v python3); do \
            "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != ($(subst .,$(comma),$(PY_MINOR))))' 2>/dev/null && { echo "$$p"; break; }; done)
endif
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RPC    := dev/sales_etl_dev/rpc/_generated/function_rpc_pb2.py
NODE_STAMP := node_modules/.installed

.PHONY: setup compose-tool pgbouncer-tool demo test unit lint bench bench-quick dev-up dev-down clean help package
.DEFAULT_GOAL := help

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.txt requirements-cli.txt requirements-dev.txt pyproject.toml dev/pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python $(PY_MINOR) is required and was not found (pyenv versions, python$(PY_MINOR) on PATH): install it, e.g. 'pyenv install $(PY_MINOR)', or pass PYTHON=/path/to/python$(PY_MINOR)"; exit 1; }
	@$(BIN)/python -c 'import sys; sys.exit(sys.version_info[:2] != ($(subst .,$(comma),$(PY_MINOR))))' 2>/dev/null || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e . -e ./dev
	@touch $@

# The Functions RPC messages the tests speak to the genuine worker (git-ignored output).
$(RPC): dev/sales_etl_dev/rpc/function_rpc.proto $(STAMP)
	$(BIN)/python -m sales_etl_dev.rpc

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(STAMP) $(RPC) $(NODE_STAMP)  ## Create the virtual environment and install Azurite

demo: $(STAMP) $(RPC) $(NODE_STAMP)  ## Run the whole flow on the local stack and print a summary
	$(BIN)/sales-etl demo

# docker-compose.yml is validated by Debian's docker-compose (1.29), which needs no engine.
compose-tool:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && \
	      apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1)) || \
	    echo "note: could not install docker-compose; the compose validation test will say so"; \
	  else echo "note: install docker-compose to validate docker-compose.yml"; fi; }

# PgBouncer (Debian's pgbouncer) for the pooled tests and the pooled benchmark: installed
# as root with apt when missing; elsewhere the local stack runs without a pooler.
pgbouncer-tool:
	@command -v pgbouncer >/dev/null 2>&1 || test -x /usr/sbin/pgbouncer || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null 2>&1 || \
	     (apt-get update -qq >/dev/null 2>&1 && \
	      apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null 2>&1)) || \
	    echo "note: could not install pgbouncer; the pooled tests will say so"; \
	  else echo "note: install pgbouncer (apt-get install pgbouncer) for the pooled tests"; fi; }

test: $(STAMP) $(RPC) $(NODE_STAMP) compose-tool pgbouncer-tool  ## Lint, type-check and run every test (starts its own stack)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)  ## ruff (lint and format check) and mypy only (what make test runs first)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: $(STAMP) $(RPC)  ## The unit tests only (no services)
	$(BIN)/pytest tests/unit

bench: $(STAMP) $(RPC) $(NODE_STAMP) pgbouncer-tool  ## The benchmark, 1,000,000 rows (writes bench/RESULTS.md)
	$(BIN)/python -m bench.run

bench-quick: $(STAMP) $(RPC) $(NODE_STAMP) pgbouncer-tool  ## The benchmark's quick mode, 100,000 rows
	$(BIN)/python -m bench.run --quick

dev-up: $(STAMP) $(NODE_STAMP) pgbouncer-tool  ## Start the local stack and print how to use it
	$(BIN)/sales-etl dev up

dev-down: $(STAMP)  ## Stop the local stack
	$(BIN)/sales-etl dev down

package:  ## The deployment zip as `func azure functionapp publish` would upload it (dist/functionapp.zip)
	$(PYTHON) -m tools.package

# The stack is stopped through `python -m sales_etl`, not the console script: a venv made
# before a pull that moved the entry point still runs it (its script would not). It is this
# checkout's stack (SALES_ETL_HOME set to here, whatever the shell exports). A stack that
# cannot be stopped, or that there is no venv to stop, keeps its folder: removing it would
# orphan the servers. build/ goes too: setuptools packs what an earlier build left in
# build/lib into the next wheel.
clean:  ## Stop the stack and remove generated state (.devstack, data, build)
	@if [ -f .devstack/stack.json ]; then \
	  if [ ! -x $(BIN)/python ]; then \
	    echo "make clean: .devstack/stack.json names a local stack and there is no $(BIN)/python to stop it: make setup, then make clean again" >&2; exit 1; fi; \
	  SALES_ETL_HOME="$(CURDIR)" $(BIN)/python -m sales_etl dev down || { \
	    echo "make clean: the local stack did not stop: .devstack/ kept (stop its servers, then make clean again)" >&2; exit 1; }; fi
	rm -rf .devstack data build
