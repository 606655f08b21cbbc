# One-line entry points; each sets up what it needs first (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
export NIGHTLY_HOME ?= $(CURDIR)/.nightly

.PHONY: setup system-deps run test lint format dagster-dev clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

## Headless Chromium for the report's browser test and iptables for the partition fault's
## (required); Docker's engine for the Docker platform's tests and docker-compose for
## compose.yaml's check (optional: without them those tests skip, saying why).
## TOOL or TOOL:PACKAGE, Debian's packages, installed with apt-get when root.
SYSTEM_TOOLS := chromium iptables
OPTIONAL_TOOLS := dockerd:docker.io docker-compose
system-deps:
	@missing=""; optional=""; \
	for entry in $(SYSTEM_TOOLS); do tool=$${entry%%:*}; \
	  command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $${entry#*:}"; done; \
	for entry in $(OPTIONAL_TOOLS); do tool=$${entry%%:*}; \
	  command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || optional="$$optional $${entry#*:}"; done; \
	if [ -n "$$missing$$optional" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing$$optional (apt-get)"; \
	    apt-get update -qq && apt-get install -y -qq $$missing $$optional >/dev/null; \
	  elif [ -n "$$missing" ]; then \
	    echo "the tests need$$missing: sudo apt-get install -y$$missing" >&2; exit 1; \
	  else \
	    echo "without$$optional their tests skip (sudo apt-get install -y$$optional)" >&2; \
	  fi; \
	fi

## The main job: the nightly suite against the embedded stack, smoke profile
run: setup
	$(BIN)/nightly run --profile smoke

## The tests (exit 5, "no tests collected", is a failure here: there must be tests), in
## TEST_WORKERS processes (pytest-xdist; a module's tests stay in one, see tests/conftest.py)
TEST_WORKERS ?= 2
test: setup system-deps
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## The Dagster UI and daemon on $(NIGHTLY_HOME)/dagster, the instance `nightly run` records
## its runs in (http://127.0.0.1:3000)
dagster-dev: setup
	$(BIN)/nightly ui

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
