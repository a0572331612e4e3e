# sales-etl: the two commands (make demo, make test) set everything up themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup compose-tool pgbouncer-tool demo test unit lint bench bench-quick dev-up dev-down clean help
.DEFAULT_GOAL := help

help:  ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(STAMP) $(NODE_STAMP)  ## Create the virtual environment and install Azurite

demo: $(STAMP) $(NODE_STAMP)  ## Run the whole flow on the local stack and print a summary
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

test: $(STAMP) $(NODE_STAMP) compose-tool pgbouncer-tool  ## Lint, type-check and run every test (starts its own stack)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

unit: $(STAMP)  ## The unit tests only (no services)
	$(BIN)/pytest tests/unit

bench: $(STAMP) $(NODE_STAMP) pgbouncer-tool  ## The benchmark, 1,000,000 rows (writes bench/RESULTS.md)
	$(BIN)/python -m bench.run

bench-quick: $(STAMP) $(NODE_STAMP) pgbouncer-tool  ## The benchmark's quick mode, 100,000 rows
	$(BIN)/python -m bench.run --quick

dev-up: $(STAMP) $(NODE_STAMP) pgbouncer-tool  ## Start the local stack and print how to use it
	$(BIN)/sales-etl dev up

dev-down: $(STAMP)  ## Stop the local stack
	$(BIN)/sales-etl dev down

clean:  ## Stop the stack and remove generated state (.devstack, data)
	-$(BIN)/sales-etl dev down
	rm -rf .devstack data
