"""The runner: atomic frames, the manifest, resume, frame ranges, the img2img chain and stopping."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from job_documents import job_document
from PIL import Image

from engine.errors import EngineError, JobError, RenderCancelled
from engine.events import EventStream
from engine.frame_store import MANIFEST_NAME, TEMP_PREFIX, temp_name
from engine.job import parse_job
from engine.runner import Runner, parse_frame_range

ROT = {"name": "rot", "op": "rotate_r1", "latent_layer": 0}


def _run(tmp_path, doc, model, frame_range=None, should_stop=lambda: False):
    stream = io.StringIO()
    job = parse_job(doc, tmp_path)
    summary = Runner(job, EventStream(stream), model=model, should_stop=should_stop).run(frame_range)
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    return summary, events


def _pixels(folder, frame):
    return np.asarray(Image.open(folder / f"frame_{frame:05d}.png"))


def test_render_writes_frames_and_a_manifest(tmp_path, tiny_model):
    summary, events = _run(tmp_path, job_document(3, [ROT]), tiny_model)
    assert summary.rendered == [1, 2, 3]
    for frame in (1, 2, 3):
        assert _pixels(tmp_path, frame).shape == (32, 32, 3)
    records = [json.loads(line) for line in (tmp_path / MANIFEST_NAME).read_text().splitlines()]
    assert [r["frame"] for r in records] == [1, 2, 3]
    assert all(r["seed"] == 46 and len(r["hash"]) == 64 and r["seconds"] > 0 for r in records)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[1] == "loaded" and kinds[-1] == "done"
    assert kinds.count("frame") == 3 and kinds.count("step") == 3 * 4
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))


def test_resume_skips_done_frames_without_loading_the_model(tmp_path, tiny_model):
    doc = job_document(3, [ROT])
    _run(tmp_path, doc, tiny_model)
    summary, events = _run(tmp_path, doc, model=None)
    assert summary.rendered == [] and summary.skipped == [1, 2, 3]
    assert "loaded" not in [e["event"] for e in events]


def test_only_changed_or_damaged_frames_render_again(tmp_path, tiny_model):
    doc = job_document(4, [ROT])
    _run(tmp_path, doc, tiny_model)
    before = {f: (tmp_path / f"frame_{f:05d}.png").read_bytes() for f in (1, 2, 3, 4)}
    doc["frames"][1]["bends"]["rot"] = 3.0
    (tmp_path / "frame_00004.png").write_bytes(b"not a png")
    summary, _ = _run(tmp_path, doc, tiny_model)
    assert summary.rendered == [2, 4]
    assert (tmp_path / "frame_00001.png").read_bytes() == before[1]
    assert (tmp_path / "frame_00002.png").read_bytes() != before[2]
    assert (tmp_path / "frame_00004.png").read_bytes() == before[4]


def test_batches_give_the_same_frames_as_single_renders(tmp_path, tiny_model):
    doc = job_document(5, [ROT])
    _run(tmp_path / "single", doc, tiny_model)
    _run(tmp_path / "batched", dict(doc, batch_size=3), tiny_model)
    for frame in range(1, 6):
        a, b = _pixels(tmp_path / "single", frame).astype(int), _pixels(tmp_path / "batched", frame).astype(int)
        assert np.abs(a - b).max() <= 1, frame


def test_frame_ranges_render_part_of_a_job(tmp_path, tiny_model):
    doc = job_document(5, [ROT])
    summary, _ = _run(tmp_path, doc, tiny_model, frame_range=(2, 3))
    assert summary.rendered == [2, 3]
    summary, _ = _run(tmp_path, doc, tiny_model)
    assert summary.rendered == [1, 4, 5] and summary.skipped == [2, 3]
    with pytest.raises(JobError, match="no frame"):
        _run(tmp_path, doc, tiny_model, frame_range=(9, 12))


@pytest.mark.parametrize(("text", "expected"), [("3-7", (3, 7)), ("4", (4, 4)), ("0-0", (0, 0))])
def test_parse_frame_range(text, expected):
    assert parse_frame_range(text) == expected


@pytest.mark.parametrize("text", ["7-3", "a-b", "", "1-2-3"])
def test_parse_frame_range_rejects(text):
    with pytest.raises(JobError, match="--frames"):
        parse_frame_range(text)


def test_stopping_keeps_finished_frames_and_resume_matches_an_uninterrupted_render(tmp_path, tiny_model):
    doc = job_document(4, [ROT])
    _run(tmp_path / "whole", doc, tiny_model)
    steps_seen = []

    def stop_in_frame_three():
        return len(steps_seen) > 2 * 4 + 1

    with pytest.raises(RenderCancelled):
        job = parse_job(doc, tmp_path / "cut")
        runner = Runner(job, EventStream(None), model=tiny_model, should_stop=stop_in_frame_three)
        original = runner._follow_steps

        def follow(frames):
            original(frames)
            emit = runner.sampler.on_step
            runner.sampler.on_step = lambda s, n: (steps_seen.append(s), emit(s, n))

        runner._follow_steps = follow
        runner.run()
    assert sorted(p.name for p in (tmp_path / "cut").glob("frame_*.png")) == ["frame_00001.png", "frame_00002.png"]
    summary, _ = _run(tmp_path / "cut", doc, tiny_model)
    assert summary.rendered == [3, 4]
    for frame in (1, 2, 3, 4):
        whole = (tmp_path / "whole" / f"frame_{frame:05d}.png").read_bytes()
        assert (tmp_path / "cut" / f"frame_{frame:05d}.png").read_bytes() == whole


def test_a_torn_manifest_line_and_stale_temporaries_are_harmless(tmp_path, tiny_model):
    doc = job_document(2, [ROT])
    _run(tmp_path, doc, tiny_model)
    with open(tmp_path / MANIFEST_NAME, "a") as f:
        f.write('{"frame": 2, "hash": "abc')
    (tmp_path / temp_name("frame_00002.png")).write_bytes(b"\x89PNG half")  # this pid's, from an earlier run
    summary, _ = _run(tmp_path, doc, tiny_model)
    assert summary.skipped == [1, 2]
    assert not list(tmp_path.glob(f"{TEMP_PREFIX}*"))


def test_an_unusable_output_folder_fails_before_any_work(tmp_path):
    (tmp_path / "taken").write_text("a file where the folder should be")
    doc = job_document(2, [ROT], output={"folder": "taken/frames"})
    with pytest.raises(EngineError, match="output folder"):
        _run(tmp_path, doc, model=None)


def test_img2img_chains_frames_and_resumes(tmp_path, tiny_model):
    doc = job_document(4, [ROT], mode="img2img", steps=6)
    summary, events = _run(tmp_path, doc, tiny_model)
    assert summary.rendered == [1, 2, 3, 4]
    steps = [e["steps"] for e in events if e["event"] == "step"]
    assert steps[:6] == [6] * 6 and steps[6:] == [3] * 9  # frame 1 is text-to-image, then strength 0.5 of 6 steps
    seeds = [json.loads(line)["seed"] for line in (tmp_path / MANIFEST_NAME).read_text().splitlines()]
    assert seeds == [46, 47, 48, 49]
    doc["frames"][3]["bends"]["rot"] = 2.0
    assert _run(tmp_path, doc, tiny_model)[0].rendered == [4]
    doc["frames"][1]["bends"]["rot"] = 2.0
    assert _run(tmp_path, doc, tiny_model)[0].rendered == [2, 3, 4]


def test_img2img_ranges_need_the_previous_frame(tmp_path, tiny_model):
    doc = job_document(4, [ROT], mode="img2img", steps=4)
    with pytest.raises(JobError, match="frame 3 starts from frame 2"):
        _run(tmp_path, doc, tiny_model, frame_range=(3, 4))
    _run(tmp_path, doc, tiny_model, frame_range=(1, 2))
    assert _run(tmp_path, doc, tiny_model, frame_range=(3, 4))[0].rendered == [3, 4]


def test_img2img_from_an_init_image_with_an_empty_prompt(tmp_path, tiny_model):
    Image.new("RGB", (48, 40), (200, 30, 90)).save(tmp_path / "init.png")
    doc = job_document(2, [ROT], mode="img2img", steps=4, img2img={"init_image": "init.png", "prompt": ""})
    for frame in doc["frames"]:
        frame["strength"] = 0.25
    summary, events = _run(tmp_path, doc, tiny_model)
    assert summary.rendered == [1, 2]
    assert [e["steps"] for e in events if e["event"] == "step"] == [1, 1]
    Image.new("RGB", (48, 40), (0, 0, 0)).save(tmp_path / "init.png")
    assert _run(tmp_path, doc, tiny_model)[0].rendered == [1, 2]  # a new init image re-renders the chain
