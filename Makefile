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

## Headless Chromium for the report's browser test, iptables for the partition fault's,
## dockerd for the Docker platform's, docker-compose for compose.yaml's check
## (TOOL or TOOL:PACKAGE, Debian's packages; installed when root)
SYSTEM_TOOLS := chromium iptables dockerd:docker.io docker-compose
system-deps:
	@missing=""; for entry in $(SYSTEM_TOOLS); do tool=$${entry%%:*}; \
	  command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $${entry#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (apt-get)"; \
	    apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "the tests need$$missing: sudo apt-get install -y$$missing" >&2; exit 1; \
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
