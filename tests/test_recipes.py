"""The README's recipes for the paper's figures (``recipes/*.json``): each is a valid sweep, documented, runnable."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from job_documents import write_job

from engine.events import EventStream
from engine.sweep import load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.json"))


def test_there_is_a_recipe_for_each_figure_and_the_readme_gives_its_command():
    figures = {path.name.split("_")[0] for path in RECIPES}
    assert figures == {
        "figure1b",
        "figure1c",
        "figure1d",
        "figure1e",
        "figure1fj",
        "figure2",
        "figure3",
        "figure4",
        "figure5",
    }
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in RECIPES:
        assert f"recipes/{path.name}" in readme, path.name


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipes_are_valid_sweeps_at_the_papers_settings(path):
    job, spec = load_sweep(path)
    assert (job.width, job.height, job.steps, job.guidance, job.noise_seed) == (512, 512, 50, 7.5, 46)
    assert job.model.source == "CompVis/stable-diffusion-v1-4" and job.model.scheduler == "ddim"
    assert spec.layers and all(isinstance(layer, int) and 0 <= layer <= 49 for layer in spec.layers)


def test_the_r1_grid_runs_with_a_tiny_model(tmp_path, tiny_model):
    document = json.loads((ROOT / "recipes" / "figure5_r1_grid.json").read_text(encoding="utf-8"))
    document.update(width=16, height=16, steps=3, model={"source": "tiny-random", "device": "cpu"})
    job, spec = load_sweep(write_job(tmp_path, document, name="grid.json"))
    assert spec.values == pytest.approx([k * math.pi / 4 for k in range(8)])
    job = dataclasses.replace(job, batch_size=8)
    sheet = run_sweep(job, spec, tmp_path / "grid.png", EventStream(None), model=tiny_model)
    assert sheet.is_file() and len(list(tmp_path.glob("row_*/frame_*.png"))) == 48
