"""The authors' later vocabulary end to end: vector parameters in the job, the DAFx noise walk, and a render with
every JAES operator (the operators' formulas are tested in test_operators.py, their validation in test_bends.py)."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from job_documents import job_document
from PIL import Image

from engine.catalog import OPERATORS
from engine.errors import JobError
from engine.events import EventStream
from engine.job import parse_job
from engine.noise import DAFX_WALK_WEIGHT, circular_walk, dafx_phases, noise_fields, noise_walk
from engine.runner import Runner

SIX = {"name": "six", "op": "rotate_six", "latent_layer": 1}


def _with_values(doc: dict, name: str, values: list) -> dict:
    for frame, value in zip(doc["frames"], values, strict=True):
        frame["bends"][name] = value
    return doc


# ---------------------------------------------------------------------------------------------------------------
# Vector parameters in the job


def test_a_vector_parameter_is_a_list_per_frame(tmp_path):
    doc = _with_values(job_document(2, [SIX]), "six", [[0.1] * 6, [0, 1, 2, 3, 4, 5]])
    job = parse_job(doc, tmp_path)
    assert job.frames[0].params["six"] == pytest.approx((0.1,) * 6)
    assert job.frames[1].params["six"] == (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    hashes = job.frame_hashes()
    doc["frames"][1]["bends"]["six"][5] = 5.5
    assert parse_job(doc, tmp_path).frame_hashes() == [hashes[0], parse_job(doc, tmp_path).frame_hashes()[1]]
    assert parse_job(doc, tmp_path).frame_hashes()[1] != hashes[1]


@pytest.mark.parametrize(
    ("value", "fragments"),
    [
        (0.5, ["frames[1].bends.six", "bend 'six' at frame 2", "list"]),
        ([0.0] * 5, ["frames[1].bends.six", "frame 2", "6 numbers", "a01, a02"]),
        ([0, 0, "x", 0, 0, 0], ["frames[1].bends.six[2]", "frame 2", "number"]),
        ([0, 0, 0, 0, 0, 1e400], ["frames[1].bends.six[5]", "finite"]),
    ],
)
def test_bad_vector_values_name_the_bend_the_frame_and_the_entry(tmp_path, value, fragments):
    doc = _with_values(job_document(2, [SIX]), "six", [[0.0] * 6, value])
    with pytest.raises(JobError) as info:
        parse_job(doc, tmp_path)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_a_range_out_of_order_names_the_frame(tmp_path):
    doc = _with_values(job_document(2, [{"name": "cl", "op": "clamp", "latent_layer": 0}]), "cl", [[-1, 1], [2, 1]])
    with pytest.raises(JobError, match=r"bend 'cl' \(clamp\) at frame 2: low, high = 2, 1"):
        parse_job(doc, tmp_path)


def test_scalar_jobs_keep_their_recipe(tmp_path):
    job = parse_job(job_document(3, [{"name": "rot", "op": "rotate_r1", "latent_layer": 0}]), tmp_path)
    assert job.noise_mode == "paper" and "noise_mode" not in job.recipe()  # so existing renders keep their hashes
    assert all(isinstance(f.params["rot"], float) for f in job.frames)


# ---------------------------------------------------------------------------------------------------------------
# The noise walk as the authors ran it (DAFx code: vidgen.py, ldm/models/diffusion/ddim.py)


def test_noise_mode_in_the_job(tmp_path):
    job = parse_job(job_document(5, noise={"mode": "dafx"}), tmp_path)
    assert job.noise_mode == "dafx" and job.recipe()["noise_mode"] == "dafx"
    assert [f.phase for f in job.frames] == pytest.approx([0, math.pi / 2, math.pi, 3 * math.pi / 2, 2 * math.pi])
    paper = parse_job(job_document(5), tmp_path)
    assert paper.frame_hashes() != job.frame_hashes()
    with pytest.raises(JobError, match=r"noise\.mode: must be one of paper, dafx"):
        parse_job(job_document(2, noise={"mode": "walk"}), tmp_path)


def test_dafx_walk_is_fixed_noise_plus_point_three_times_the_walk():
    shape, frames = (4, 8, 8), 7
    generator = torch.Generator().manual_seed(46)
    base, walk_x, walk_y = (torch.randn(shape, generator=generator) for _ in range(3))
    # the authors' construction, scales from torch.linspace(0, 2, num_frames) · π
    scale_x = torch.cos(torch.linspace(0, 2, frames, dtype=torch.float64) * math.pi)
    scale_y = torch.sin(torch.linspace(0, 2, frames, dtype=torch.float64) * math.pi)
    theirs = base + 0.3 * (
        torch.tensordot(scale_x, walk_x.double(), dims=0) + torch.tensordot(scale_y, walk_y.double(), dims=0)
    )
    ours = noise_walk(46, shape, "dafx").at(dafx_phases(frames))
    assert DAFX_WALK_WEIGHT == 0.3
    torch.testing.assert_close(ours.double(), theirs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[0], ours[-1], rtol=1e-5, atol=1e-5)  # their loop returns to its start
    assert dafx_phases(1) == [0.0]


def test_paper_walk_is_unchanged():
    a, b = noise_fields(46, (4, 8, 8))
    phases = [0.0, 1.0, 2.5]
    assert torch.equal(noise_walk(46, (4, 8, 8)).at(phases), circular_walk(a, b, phases))


# ---------------------------------------------------------------------------------------------------------------
# Every JAES operator renders, batched as alone

_JAES_BENDS = [
    ({"name": "sub", "op": "subtract", "latent_layer": 1}, lambda i: 0.1 * i),
    ({"name": "neg", "op": "negate", "latent_layer": 1}, None),
    ({"name": "abs", "op": "absolute", "latent_layer": 4}, None),
    ({"name": "neg2", "op": "negate", "latent_layer": 4}, None),
    ({"name": "cl", "op": "clamp", "latent_layer": 2}, lambda i: [-2.0 - i, 2.0 + i]),
    ({"name": "noise", "op": "gaussian_noise", "latent_layer": 0, "options": {"seed": 3}}, lambda i: 0.2 * i),
    ({"name": "unoise", "op": "gaussian_noise", "unet": {"target": "mid_block", "steps": [1, 3]}}, lambda i: 0.1),
    ({"name": "pow", "op": "power", "latent_layer": 3}, lambda i: 1.0 + 0.1 * i),
    ({"name": "log", "op": "log", "unet": {"target": "conv_in", "steps": [2, 3]}}, lambda i: 10.0 + i),
    ({"name": "st", "op": "soft_threshold", "latent_layer": 2}, lambda i: 0.05 * i),
    ({"name": "st2", "op": "soft_threshold2", "latent_layer": 3}, lambda i: 0.05 * i),
    ({"name": "bump", "op": "gaussian_bump", "latent_layer": 1}, lambda i: 2.0 * i),
    ({"name": "h4", "op": "hadamard_channels", "latent_layer": 2}, None),
    ({"name": "hs", "op": "hadamard_spatial", "latent_layer": 3, "selection": {"kind": "channel", "index": 1}}, None),
    ({"name": "mx", "op": "normalize_max_abs", "latent_layer": 4}, None),
    ({"name": "l2", "op": "normalize_l2_channels", "latent_layer": 1}, None),
    ({"name": "mean", "op": "remove_mean", "latent_layer": 2, "options": {"normalize_dim": 1}}, None),
    ({"name": "six", "op": "rotate_six", "latent_layer": 0}, lambda i: [0.1 * i, 0.2, 0.3, 0.4, 0.5, 0.6 * i]),
    (
        {"name": "m", "op": "contract", "latent_layer": 4},
        lambda i: [1.0 if j % 5 == 0 else 0.01 * i for j in range(16)],
    ),
    (
        {"name": "rows", "op": "add", "latent_layer": 2, "selection": {"kind": "random_rows", "fraction": 0.5}},
        lambda i: 0.3 * i,
    ),
]


def _jaes_job(n_frames: int, **overrides) -> dict:
    doc = job_document(n_frames, [b for b, _ in _JAES_BENDS], noise={"mode": "dafx"}, **overrides)
    for index, frame in enumerate(doc["frames"]):
        frame["bends"] = {b["name"]: value(index) for b, value in _JAES_BENDS if value is not None}
    return doc


def test_the_render_uses_every_jaes_operator():
    used = {b["op"] for b, _ in _JAES_BENDS}
    jaes = {name for name, spec in OPERATORS.items() if spec.source.startswith("JAES")}
    assert jaes <= used


def _render(folder, doc, model):
    job = parse_job(doc, folder)
    Runner(job, EventStream(io.StringIO()), model=model).run(None)
    return {f["frame"]: np.asarray(Image.open(folder / f"frame_{f['frame']:05d}.png")) for f in doc["frames"]}


def test_every_jaes_operator_renders_and_batches_equal_single_frames(tmp_path, tiny_model):
    doc = _jaes_job(3)
    single = _render(tmp_path / "single", doc, tiny_model)
    batched = _render(tmp_path / "batched", dict(doc, batch_size=3), tiny_model)
    for frame, image in single.items():
        assert image.shape == (32, 32, 3)
        assert np.abs(image.astype(int) - batched[frame].astype(int)).max() <= 1, frame
    assert not np.array_equal(single[1], single[2])
    manifest = [json.loads(line) for line in (tmp_path / "single" / "manifest.jsonl").read_text().splitlines()]
    assert manifest[0]["params"]["bends"]["six"] == [0.0, 0.2, 0.3, 0.4, 0.5, 0.0]
