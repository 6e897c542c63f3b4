"""The engine picks its CPU threads itself (``model.threads``; 0: every core but one), whoever starts it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from job_documents import job_document, write_job
from PIL import Image
from test_cli import ROOT, done, events

from engine.errors import JobError
from engine.events import EventStream
from engine.job import load_job, parse_job
from engine.models import pick_threads
from engine.runner import Runner


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@pytest.fixture
def torch_threads():
    """In-process renders set the test process's threads: put them back for the tests that follow."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def render_in_child(folder, doc, **environment: str) -> dict:
    """``python -m engine render`` with ``environment`` added (OMP_NUM_THREADS removed unless given); its events."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(PYTHONPATH=str(ROOT), **environment)
    result = subprocess.run(
        [sys.executable, "-m", "engine", "render", str(write_job(folder, doc))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    done(result)
    return {e["event"]: e for e in events(result)}


def test_automatic_leaves_a_core_and_a_number_is_taken_as_given():
    assert pick_threads(0) == max(1, cores() - 1)
    assert pick_threads(3) == 3


def test_the_job_sets_the_threads_of_the_engine_process_not_the_environment(tmp_path):
    # OMP_NUM_THREADS set to something else each time: the job's setting wins, and automatic ignores it too
    doc = job_document(1, steps=1, model={"source": "tiny-random", "threads": 2})
    given = render_in_child(tmp_path / "two", doc, OMP_NUM_THREADS="1")
    assert given["loaded"]["threads"] == 2
    automatic = render_in_child(tmp_path / "auto", job_document(1, steps=1), OMP_NUM_THREADS="3")
    assert automatic["loaded"]["threads"] == max(1, cores() - 1)


def test_a_render_in_process_and_one_in_a_child_agree_whatever_threads_each_started_with(tmp_path, torch_threads):
    """A frame's pixels depend on the thread count (image-to-image shows it at this size: 1 and 2 threads give
    different frames); the engine sets the count from the job, so who renders does not matter."""
    doc = job_document(2, mode="img2img", model={"source": "tiny-random", "device": "cpu", "threads": 1})
    render_in_child(tmp_path / "child", doc, OMP_NUM_THREADS="2")  # on its own, the child would compute with 2
    torch.set_num_threads(3)  # and this process with 3
    Runner(parse_job(doc, tmp_path / "here"), EventStream(io.StringIO())).run()
    for name in ("frame_00001.png", "frame_00002.png"):
        here = np.asarray(Image.open(tmp_path / "here" / name))
        child = np.asarray(Image.open(tmp_path / "child" / name))
        assert np.array_equal(here, child), name
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("value", [-1, 1025, 1.5, "2"])
def test_bad_thread_counts_name_the_field(tmp_path, value):
    with pytest.raises(JobError, match=r"model\.threads"):
        parse_job(job_document(1, model={"source": "tiny-random", "threads": value}), tmp_path)


def test_threads_default_to_automatic(tmp_path):
    path = write_job(tmp_path, job_document(1))
    assert load_job(path).model.threads == 0
    assert json.loads(path.read_text())["model"].get("threads") is None


def test_an_image_to_image_chain_resumed_from_its_files_renders_what_one_run_renders(tmp_path, torch_threads):
    """With one thread the VAE encoder rounds differently for a channel-first and a row-major image: the frame
    kept in memory must have a PNG's layout, or a resumed chain (and a preview) would not match the render."""
    doc = job_document(3, mode="img2img", model={"source": "tiny-random", "device": "cpu", "threads": 1})
    whole = tmp_path / "whole"
    Runner(parse_job(doc, whole), EventStream(io.StringIO())).run()
    resumed = tmp_path / "resumed"
    Runner(parse_job(doc, resumed), EventStream(io.StringIO())).run((1, 2))
    Runner(parse_job(doc, resumed), EventStream(io.StringIO())).run((3, 3))  # frame 3 from frame 2's file
    for name in ("frame_00002.png", "frame_00003.png"):
        assert np.array_equal(np.asarray(Image.open(whole / name)), np.asarray(Image.open(resumed / name))), name
