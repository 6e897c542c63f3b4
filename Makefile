# Dev tasks. `make test` is the one test command: it creates or refreshes the venvs from dependencies.toml and
# runs the whole suite: the engine, then the extension inside Blender 5.0, 4.5 LTS and 4.2 LTS (PyPI bpy modules),
# then the Flamenco job type's tests under Node.js. CI (.ci/run) calls exactly that.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NODE ?= node
BLENDER_VENVS := .venv-bpy45 .venv-bpy42

.PHONY: test test-engine test-blender test-farm test-real-blender venvs venvs-main lint bench demo toy-model clean

test: venvs
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(MAKE) test-engine test-blender test-farm

test-engine:
	$(PY) -m pytest tests --ignore=tests/blender --ignore=tests/real_blender

# The 4.5 and 4.2 venvs hold bpy and the test tools but no torch: their tests run the engine in the dev venv's Python
# (the Engine Python preference; tests/blender/blender_env.py).
test-blender:
	$(PY) -m pytest tests/blender
	for venv in $(BLENDER_VENVS); do BEND_TEST_ENGINE_PYTHON=$(abspath $(PY)) $$venv/bin/python -m pytest tests/blender || exit 1; done

# The Flamenco job type (flamenco/diffusion_bender.js) against a mock of Flamenco Manager that follows Flamenco's
# source (tests/flamenco/flamenco_mock.mjs, checked by flamenco_mock.test.mjs); $(PYTHON) runs the tasks' Python with
# a stand-in bpy. What a task prints for the Worker is checked with the real bpy in tests/blender/test_farm_output.py
# (test-blender). Needs Node.js 20+. It names the files, not the folder: Node 21+ reads --test arguments as glob
# patterns, Node 20 as paths.
test-farm:
	@command -v $(NODE) >/dev/null || { echo "make test-farm needs Node.js 20 or later ($(NODE) not found)"; exit 1; }
	PYTHON=$(PYTHON) $(NODE) --test tests/flamenco/*.test.mjs

# The extension in a real Blender 5.2 LTS (Debian sid's package) in a chroot: validate, build, install-file, enable
# without numpy, Install Dependencies, the headless workflow, a windowed run with screenshots. Not part of `make test`:
# it needs root and downloads a Debian and GBs of wheels. Options: REAL_BLENDER_ARGS="--from workflow" and the
# variables described in tests/real_blender/run.sh.
test-real-blender:
	tests/real_blender/run.sh $(REAL_BLENDER_ARGS)

# .venv (bpy 5.0.1) gets every group; .venv-bpy45 and .venv-bpy42 get their bpy, numpy, scipy, pillow and the dev
# tools only (vendor_setup.py --blender), since the engine runs in .venv's Python for them.
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

# Retrain models/toy-shapes, the demo's default model, from scratch (scripts/toy_model/: seeded, CPU only), then
# print its prompt adherence over held-out prompts × 4 seeds. One thread, as the shipped weights were trained: the
# same seed and thread count give the same weights bit for bit; another thread count sums in another order and
# gives a different model (OMP_NUM_THREADS=2 is faster on an idle machine).
toy-model: venvs-main
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m scripts.toy_model.train
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) -m scripts.toy_model.adherence

clean:
	rm -rf $(VENV) $(BLENDER_VENVS) .pytest_cache .ruff_cache
