# Dev tasks. `make test` is the one test command: it creates or refreshes the venvs from dependencies.toml and
# runs the whole suite: the engine, then the extension inside Blender 5.0, 4.5 LTS and 4.2 LTS (PyPI bpy modules),
# then the Flamenco job type's tests under Node.js. CI (.ci/run) calls exactly that.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NODE ?= node
BLENDER_VENVS := .venv-bpy45 .venv-bpy42

.PHONY: test test-engine test-blender test-farm venvs venvs-main lint bench demo clean

test: venvs
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(MAKE) test-engine test-blender test-farm

test-engine:
	$(PY) -m pytest tests --ignore=tests/blender

test-blender:
	$(PY) -m pytest tests/blender
	for venv in $(BLENDER_VENVS); do $$venv/bin/python -m pytest tests/blender || exit 1; done

# The Flamenco job type (flamenco/diffusion_bender.js) against a mock of Flamenco's job-compiler API. Needs Node.js
# 20+. It names the files, not the folder: Node 21+ reads --test arguments as glob patterns, Node 20 as paths.
test-farm:
	@command -v $(NODE) >/dev/null || { echo "make test-farm needs Node.js 20 or later ($(NODE) not found)"; exit 1; }
	PYTHON=$(PYTHON) $(NODE) --test tests/flamenco/*.test.mjs

venvs: venvs-main
	$(PYTHON) vendor_setup.py --venv .venv-bpy45 --blender 4.5
	$(PYTHON) vendor_setup.py --venv .venv-bpy42 --blender 4.2

# The dev venv alone (bpy 5.0.1), for what needs no other Blender.
venvs-main:
	$(PYTHON) vendor_setup.py --venv $(VENV)

lint: venvs
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: venvs
	$(PY) bench/run_all.py

# The whole artist workflow, headless, through the extension's operators (scripts/demo.py; outputs in demo/).
# BEND_MODEL=<model> renders with a real Stable Diffusion model; DEMO_ARGS="--seconds 5" passes options.
demo: venvs-main
	$(PY) scripts/demo.py $(DEMO_ARGS)

clean:
	rm -rf $(VENV) $(BLENDER_VENVS) .pytest_cache .ruff_cache
