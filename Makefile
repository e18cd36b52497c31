# Two commands on a fresh machine: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test lint typecheck clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(STAMP)

run: $(STAMP)
	$(BIN)/pipeline run --once

lint: $(TEST_STAMP)
	$(BIN)/ruff check pipeline tests bench tools
	$(BIN)/ruff format --check pipeline tests bench tools

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

# The desk's browser tests drive Debian's Chromium (Playwright never downloads a browser here), and the store,
# dispatch and scheduling tests also run on a PostgreSQL server the tests start themselves from Debian's
# binaries. Both are installed with apt-get when this runs as root (CI) and they are missing; otherwise the
# command to run is printed and those tests are skipped.
NEEDED_DEBS := $(strip $(if $(shell command -v chromium),,chromium) $(if $(wildcard /usr/lib/postgresql/*/bin/pg_ctl),,postgresql))
system-deps:
	@if [ -n "$(NEEDED_DEBS)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's $(NEEDED_DEBS) for the browser and PostgreSQL tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(NEEDED_DEBS) >/dev/null; \
	  else echo "note: 'sudo apt-get install $(NEEDED_DEBS)' to run the browser and PostgreSQL tests"; fi; \
	fi

test: $(TEST_STAMP) system-deps lint typecheck
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) var public .mypy_cache .ruff_cache .pytest_cache .hypothesis
