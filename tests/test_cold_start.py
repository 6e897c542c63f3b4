"""What a cold ``python -m engine render`` imports, and when: the start event before torch, then only the model's
own modules (not diffusers' registry of pipelines, not the audio features, not kornia for a job that needs none)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from job_documents import job_document, write_job
from test_cli import ROOT

HEAVY = ("torch", "numpy", "diffusers", "transformers", "kornia", "scipy", "PIL")

# Runs the CLI's main() as ``python -m engine`` does, with a stdout that notes which heavy libraries were loaded when
# each event was written, then reports those and which of the watched modules the whole render had imported.
PROBE = f"""
import json, sys

HEAVY = {HEAVY!r}
WATCHED = ("diffusers.pipelines", "engine.postprocess", "engine.features", "kornia")


class Recorder:
    def __init__(self):
        self.loaded = {{}}
        self.events = []

    def write(self, text):
        for line in text.splitlines():
            event = json.loads(line)["event"]
            self.events.append(event)
            self.loaded.setdefault(event, [m for m in HEAVY if m in sys.modules])
        return len(text)

    def flush(self):
        pass


recorder = Recorder()
sys.stdout = recorder
from engine.cli import main

code = main(sys.argv[1:])
report = {{
    "code": code,
    "events": recorder.events,
    "loaded": recorder.loaded,
    "imported": [m for m in WATCHED if m in sys.modules],
}}
print(json.dumps(report), file=sys.stderr)
"""

# A latent bend that needs no kornia: the job is parsed and its values checked with the bend machinery before start
ADD = {"name": "push", "op": "add", "latent_layer": 0, "selection": {"kind": "random", "fraction": 0.5, "seed": 3}}


def _engine_python(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def tiny_render(tmp_path_factory) -> dict:
    """One cold tiny render with a bend, run once for the tests below (a cold process costs seconds)."""
    folder = tmp_path_factory.mktemp("cold")
    job = write_job(folder, job_document(1, [ADD], steps=1, width=16, height=16))
    reports = {}
    for run in ("first", "again"):  # again: the frame is done, so the run only checks it
        result = _engine_python("-c", PROBE, "render", str(job))
        assert result.stderr.strip(), "the probe printed nothing"
        reports[run] = json.loads(result.stderr.strip().splitlines()[-1]) | {"stderr": result.stderr[-2000:]}
    return reports["first"] | {"again": reports["again"]}


def test_the_start_event_comes_before_torch_or_numpy_is_imported(tiny_render):
    assert tiny_render["code"] == 0, tiny_render["stderr"]
    assert tiny_render["events"][0] == "start" and tiny_render["events"][-1] == "done", tiny_render["events"]
    assert tiny_render["loaded"]["start"] == [], tiny_render["loaded"]
    assert {"torch", "diffusers", "transformers"} <= set(tiny_render["loaded"]["loaded"])  # the probe sees imports


def test_a_job_with_nothing_left_to_render_loads_no_heavy_library(tiny_render):
    again = tiny_render["again"]
    assert again["code"] == 0 and again["events"] == ["start", "done"], again["stderr"]
    assert again["loaded"] == {"start": [], "done": []}


def test_a_tiny_render_imports_no_pipeline_registry_audio_features_or_kornia(tiny_render):
    assert tiny_render["code"] == 0, tiny_render["stderr"]
    assert tiny_render["imported"] == [], tiny_render["stderr"]


def test_the_engine_modules_a_render_starts_with_import_no_heavy_library():
    """The modules the CLI imports before the start event, each alone in a fresh interpreter: one that grew a
    top-level torch (or numpy, kornia, ...) import is named here."""
    modules = ("engine.cli", "engine.events", "engine.job", "engine.runner", "engine.bends", "engine.selection")
    modules += ("engine.stack", "engine.noise", "engine.frame_store")
    check = (
        "import importlib, json, sys; importlib.import_module(sys.argv[1]); "
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    heavy = {}
    for module in modules:
        result = _engine_python("-c", check, module)
        assert result.returncode == 0, result.stderr[-2000:]
        heavy[module] = json.loads(result.stdout)
    assert heavy == {module: [] for module in modules}


def test_the_written_out_float32_limit_is_torch_s():
    import torch

    from engine.bends import _FLOAT32_MAX

    assert float(torch.finfo(torch.float32).max) == _FLOAT32_MAX
