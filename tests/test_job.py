"""The job file: validation that names the field, defaults from the paper, and the per-frame hash."""

from __future__ import annotations

import copy
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from job_documents import job_document, write_job

from engine.errors import JobError
from engine.job import load_job, parse_job

ROT = {"name": "rot", "op": "rotate_r1", "latent_layer": 0}
MID = {"name": "mid", "op": "add", "unet": {"target": "mid_block", "steps": [0, 2]}}


def test_a_minimal_job_gets_the_papers_defaults(tmp_path):
    job = parse_job({"version": 1, "frames": [{"frame": 1}, {"frame": 2}, {"frame": 3}, {"frame": 4}]}, tmp_path)
    assert (job.steps, job.guidance, job.seed, job.width, job.height) == (50, 7.5, 46, 512, 512)
    assert job.model.scheduler == "ddim" and job.model.source == "tiny-random"
    assert [f.phase for f in job.frames] == pytest.approx([0, math.pi / 2, math.pi, 3 * math.pi / 2])
    assert job.output_folder == tmp_path.resolve()


def test_a_full_job_parses(tmp_path):
    job = parse_job(job_document(4, [ROT, MID]), tmp_path)
    assert [p.bend.name for p in job.bends] == ["rot", "mid"]
    assert job.bends[1].placement.unet_target == "mid_block"
    assert job.frames[2].params == {"rot": pytest.approx(0.3), "mid": pytest.approx(0.3)}


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(mode="video"), "mode"),
        (lambda d: d.update(width=30), "width"),
        (lambda d: d.update(steps=0), "steps"),
        (lambda d: d.update(steps="50"), "steps"),
        (lambda d: d.update(colour=1), "colour"),
        (lambda d: d["model"].update(precision="fp8"), "model.precision"),
        (lambda d: d["frames"][1].update(prompt_weights=[1]), "frames[1].prompt_weights"),
        (lambda d: d["frames"][1].update(prompt_weights=[0, 0]), "frames[1].prompt_weights"),
        (lambda d: d["frames"][2].update(strength=1.5), "frames[2].strength"),
        (lambda d: d["frames"][2]["bends"].pop("rot"), "frames[2].bends.rot"),
        (lambda d: d["frames"][2]["bends"].update(rot="fast"), "frames[2].bends.rot"),
        (lambda d: d["frames"][2]["bends"].update(typo=1.0), "frames[2].bends.typo"),
        (lambda d: d["frames"][1].update(frame=1), "frames[1].frame"),
        (lambda d: d["bends"][0].update(op="spin"), "bends[0].op"),
        (lambda d: d["bends"][0].update(name="mid"), "bends[1].name"),
        (lambda d: d["bends"][0].update(unet={"target": "mid_block"}), "bends[0]"),
        (lambda d: d["bends"][1]["unet"].update(target="decoder"), "bends[1].unet.target"),
        (lambda d: d["bends"][1]["unet"].update(steps=[3, 1]), "bends[1].unet.steps"),
        (lambda d: d.update(prompts=[]), "prompts"),
        (lambda d: d["img2img"].update(init_image="missing.png"), "img2img.init_image"),
    ],
)
def test_errors_name_the_field(tmp_path, edit, field):
    doc = job_document(3, [copy.deepcopy(ROT), copy.deepcopy(MID)], img2img={})
    edit(doc)
    with pytest.raises(JobError) as caught:
        parse_job(doc, tmp_path)
    assert str(caught.value).startswith(field), str(caught.value)


def test_bad_bend_parameters_name_the_bend_and_frame(tmp_path):
    doc = job_document(3, [{"name": "inv", "op": "invert", "latent_layer": 0}])
    doc["frames"][1]["bends"]["inv"] = 0.0
    with pytest.raises(JobError, match=r"inv.*frame 2"):
        parse_job(doc, tmp_path)


def test_load_job_reports_missing_and_broken_files(tmp_path):
    with pytest.raises(JobError, match="no such job file"):
        load_job(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{ not json")
    with pytest.raises(JobError, match="not valid JSON"):
        load_job(tmp_path / "bad.json")


def test_hashes_change_only_for_the_changed_frame(tmp_path):
    doc = job_document(4, [copy.deepcopy(ROT)])
    before = parse_job(doc, tmp_path).frame_hashes()
    assert len(set(before)) == 4
    doc["frames"][2]["bends"]["rot"] = 2.5
    after = parse_job(doc, tmp_path).frame_hashes()
    assert [b == a for b, a in zip(before, after, strict=True)] == [True, True, False, True]
    doc["output"] = {"folder": "elsewhere"}
    doc["batch_size"] = 4
    assert parse_job(doc, tmp_path).frame_hashes() == after


def test_img2img_hashes_ripple_forward(tmp_path):
    doc = job_document(4, [copy.deepcopy(ROT)], mode="img2img")
    before = parse_job(doc, tmp_path).frame_hashes()
    doc["frames"][1]["bends"]["rot"] = 2.5
    after = parse_job(doc, tmp_path).frame_hashes()
    assert [b == a for b, a in zip(before, after, strict=True)] == [True, False, False, False]


def test_defaults_and_explicit_values_hash_alike(tmp_path):
    implicit = {"version": 1, "frames": [{"frame": 1}]}
    explicit = {
        "version": 1,
        "steps": 50,
        "guidance": 7.5,
        "seed": 46,
        "model": {"scheduler": "ddim"},
        "frames": [{"frame": 1, "phase": 0.0}],
    }
    assert parse_job(implicit, tmp_path).frame_hashes() == parse_job(explicit, tmp_path).frame_hashes()


# Property-based: whatever a user (or a broken tool) writes into a job, the parser gives a job or one JobError.
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, (*prefix, i))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_jobs_parse_or_fail_with_a_job_error(tmp_path, data):
    doc = job_document(
        3,
        [
            copy.deepcopy(ROT),
            copy.deepcopy(MID),
            {"name": "e", "op": "erode", "latent_layer": 4, "options": {"normalize_dim": 1}},
        ],
    )
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(doc))[1:]
        path = data.draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(st.text(max_size=8))] = data.draw(_json_value)
        else:
            parent[path[-1]] = data.draw(_json_value)
    try:
        job = parse_job(json.loads(json.dumps(doc)), tmp_path)
    except JobError as exc:
        message = str(exc)
        assert message and "\n" not in message
        return
    job.frame_hashes()


def test_a_job_file_round_trips(tmp_path):
    path = write_job(tmp_path, job_document(2, [copy.deepcopy(ROT)]))
    assert len(load_job(path).frames) == 2
