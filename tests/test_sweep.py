"""Sweeps (``engine/sweep.py``): a bend's parameter × its layers as a labelled contact sheet, whose tiles are the
frames the same settings render one by one."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from job_documents import job_document, write_job
from PIL import Image
from test_cli import engine, events

from engine.errors import JobError
from engine.events import EventStream
from engine.job import FrameSpec, load_job
from engine.runner import Runner
from engine.stack import PlacedBend, Placement
from engine.sweep import load_sweep, row_job, run_sweep

R1 = {"name": "R1", "op": "rotate_r1", "latent_layer": 0}
ANGLES = {"start": 0, "stop": 2 * math.pi, "count": 8, "endpoint": False}


def sweep_document(sweep: dict, bends: list[dict] | None = None, **overrides) -> dict:
    # Batch 1: a batch of 8 renders the same frames to within float rounding (1/255 on 0.03% of pixels), and the
    # test below wants them bit-equal to frames rendered one by one.
    doc = job_document(1, bends=bends or [R1], batch_size=1, **overrides)
    doc["prompts"] = ["a floating orb"]
    doc["frames"][0]["prompt_weights"] = [1.0]
    doc["sweep"] = sweep
    return doc


def render_alone(job, bend_name: str, layer: int, value: float, folder, model) -> np.ndarray:
    """One frame with the bend at ``layer`` and parameter ``value``, as an ordinary one-frame render."""
    base = job.frames[0]
    bends = tuple(
        PlacedBend(p.bend, Placement(latent_layer=layer)) if p.bend.name == bend_name else p for p in job.bends
    )
    frame = FrameSpec(
        frame=1, prompt_weights=base.prompt_weights, phase=base.phase, strength=base.strength, params={bend_name: value}
    )
    alone = dataclasses.replace(job, bends=bends, frames=(frame,), batch_size=1, output_folder=folder)
    Runner(alone, EventStream(None), model=model).run()
    with Image.open(folder / "frame_00001.png") as image:
        return np.asarray(image.convert("RGB"))


def test_r1_over_8_angles_by_3_layers_is_a_labelled_sheet_of_the_frames_rendered_one_by_one(tmp_path, tiny_model):
    path = write_job(
        tmp_path / "sweep", sweep_document({"bend": "R1", "values": ANGLES, "layers": [0, 2, 4]}), name="sweep.json"
    )
    result = engine("sweep", str(path))
    assert result.returncode == 0, result.stderr[-2000:]
    stream = events(result)
    assert stream[0] == {"event": "sweep", "rows": 3, "columns": 8, "tiles": 24}
    sheet_event = stream[-1]
    assert sheet_event["event"] == "sheet" and sheet_event["file"] == str(path.with_suffix(".png"))
    assert sum(e["event"] == "frame" for e in stream) == 24
    with Image.open(sheet_event["file"]) as image:
        sheet = np.asarray(image.convert("RGB"))
    job, spec = load_sweep(path)
    scale = sheet_event["scale"]
    assert scale == 4  # 32-pixel frames are enlarged by a whole factor, so labels fit beside them
    for row, layer in enumerate(spec.layers):
        for column, angle in enumerate(spec.values):
            x, y = sheet_event["origins"][row][column]
            tile = sheet[y : y + 32 * scale : scale, x : x + 32 * scale : scale]
            alone = render_alone(job, "R1", layer, angle, tmp_path / f"alone_{row}_{column}", tiny_model)
            assert np.array_equal(tile, alone), (layer, angle)
    # Labels: the title and the label rows are drawn (ink) where no tile is.
    x0, y0 = sheet_event["origins"][0][0]
    assert (sheet[:y0, :, :] < 100).any() and (sheet[y0:, :x0, :] < 100).any()
    # The columns differ: the sweep really varied the angle (a constant tile row would pass the test above).
    x1, y1 = sheet_event["origins"][0][2]
    assert not np.array_equal(
        sheet[y0 : y0 + 32 * scale, x0 : x0 + 32 * scale], sheet[y1 : y1 + 32 * scale, x1 : x1 + 32 * scale]
    )

    again = events(engine("sweep", str(path), "--sheet", str(tmp_path / "again.png")))
    assert [e["todo"] for e in again if e["event"] == "start"] == [0, 0, 0]  # rows resume like renders
    with Image.open(tmp_path / "again.png") as image:
        assert np.array_equal(np.asarray(image.convert("RGB")), sheet)


def test_rows_at_unet_targets_and_a_bend_without_a_parameter(tmp_path, tiny_model):
    flip = {"name": "flip", "op": "spatial_flip", "unet": {"target": "mid_block"}, "options": {"axis": "x"}}
    doc = sweep_document({"bend": "flip", "layers": ["mid_block", "up_blocks.1"]}, bends=[flip])
    doc["frames"][0]["bends"] = {}
    path = write_job(tmp_path, doc, name="flip.json")
    job, spec = load_sweep(path)
    assert spec.values == () and spec.layers == ("mid_block", "up_blocks.1")
    sheet = run_sweep(job, spec, tmp_path / "flip.png", EventStream(None), model=tiny_model)
    assert row_job(job, spec, 1).bends[0].placement.unet_target == "up_blocks.1"
    with Image.open(sheet) as image:
        assert image.width > 2 * 32 and image.height > 2 * 32


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"bend": "nope", "values": [1], "layers": [0]}, "sweep.bend: the job has no bend named 'nope'"),
        ({"bend": "R1", "layers": [0]}, "sweep.values: required"),
        ({"bend": "R1", "values": [], "layers": [0]}, "sweep.values: give 1 to 64 values"),
        ({"bend": "R1", "values": [0, "x"], "layers": [0]}, "sweep.values[1]: expected a number"),
        ({"bend": "R1", "values": {"start": 0, "stop": 1, "count": 0}, "layers": [0]}, "sweep.values.count"),
        ({"bend": "R1", "values": [1], "layers": ["up_block.1"]}, "sweep.layers[0]: expected a latent layer"),
        ({"bend": "R1", "values": [1], "layers": [-1]}, "sweep.layers[0]: must be ≥ 0"),
        ({"bend": "R1", "values": [1], "layers": [0], "frame": 3}, "sweep.frame: must be a frame index"),
        ({"bend": "R1", "values": [1], "layers": [0], "rows": 3}, "sweep.rows: unknown field"),
        ({"bend": "inv", "values": [1, 0], "layers": [0]}, "sweep.values: bend 'inv' (invert) at sample 1"),
    ],
)
def test_bad_sweep_sections_name_the_field(tmp_path, sweep, message):
    bends = [R1, {"name": "inv", "op": "invert", "latent_layer": 0}]
    path = write_job(tmp_path, sweep_document(sweep, bends=bends), name="bad.json")
    with pytest.raises(JobError) as caught:
        load_sweep(path)
    assert message in str(caught.value)


def test_a_plain_job_is_not_a_sweep_and_a_sweep_is_not_a_job(tmp_path):
    plain = write_job(tmp_path, job_document(1), name="plain.json")
    with pytest.raises(JobError, match='needs a "sweep" section'):
        load_sweep(plain)
    sweep = write_job(tmp_path, sweep_document({"bend": "R1", "values": [1], "layers": [0]}), name="s.json")
    with pytest.raises(JobError, match="sweep: unknown field"):
        load_job(sweep)
    result = engine("sweep", str(plain))
    assert result.returncode == 1 and 'needs a "sweep" section' in result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["event"] == "error"
