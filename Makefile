# Dev tasks. `make test` is the one test command: it creates or refreshes .venv from dependencies.toml and runs
# the whole suite. CI (.ci/run) calls exactly that.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test venv lint bench clean

test: venv
	$(PY) -m ruff check .
	$(PY) -m pytest

venv:
	$(PYTHON) vendor_setup.py --venv $(VENV)

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: venv
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
