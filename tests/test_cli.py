"""``python -m engine``, run as a user runs it: a child process, JSON-lines events, one-line errors."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from job_documents import job_document, write_job
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def engine(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def events(result: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def done(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-2000:]
    last = events(result)[-1]
    assert last["event"] == "done"
    return last


@pytest.mark.parametrize("mode", ["txt2img", "img2img"])
def test_render_12_frames_resume_and_rerender_one(tmp_path, mode):
    bends = [
        {"name": "rot", "op": "rotate_r1", "latent_layer": 0},
        {
            "name": "gain",
            "op": "add",
            "unet": {"target": "mid_block", "steps": [0, 2]},
            "selection": {"kind": "random", "fraction": 0.05, "seed": 3},
        },
    ]
    doc = job_document(12, bends, mode=mode, width=64, height=64, steps=4, batch_size=4)
    job = write_job(tmp_path, doc)

    first = engine("render", str(job))
    assert done(first) == {"event": "done", "rendered": 12, "skipped": 0, "seconds": done(first)["seconds"]}
    frames = sorted(tmp_path.glob("frame_*.png"))
    assert [p.name for p in frames] == [f"frame_{i:05d}.png" for i in range(1, 13)]
    assert all(Image.open(p).size == (64, 64) for p in frames)
    pixels = [np.asarray(Image.open(p)) for p in frames]
    assert len({p.tobytes() for p in pixels}) == 12  # every frame differs

    again = engine("render", str(job))
    assert done(again)["rendered"] == 0 and done(again)["skipped"] == 12
    assert "loaded" not in [e["event"] for e in events(again)]

    doc["frames"][-1]["bends"]["rot"] = 2.0  # the last frame: in img2img nothing comes after it
    write_job(tmp_path, doc)
    changed = engine("render", str(job))
    assert done(changed)["rendered"] == 1
    rendered = [e["frame"] for e in events(changed) if e["event"] == "frame"]
    assert rendered == [12]


def test_render_a_frame_range(tmp_path):
    job = write_job(tmp_path, job_document(6, width=32, height=32, steps=2))
    assert done(engine("render", str(job), "--frames", "2-4"))["rendered"] == 3
    assert sorted(p.name for p in tmp_path.glob("frame_*.png")) == [f"frame_{i:05d}.png" for i in (2, 3, 4)]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["render", "missing.json"], "no such job file"),
        (["render", "{job}"], "steps"),
        (["render", "{model_job}"], "model.source"),
        (["render", "{job}", "--frames", "x"], "--frames"),
        (["render", "{blocked_job}"], "output folder"),
        (["features", "missing.wav", "--fps", "20"], "missing.wav"),
        (["features", "{job}", "--fps", "20"], "job.json"),
        (["features", "{wav}", "--fps", "0"], "fps"),
        (["features", "{wav}"], "--fps"),
        (["paint"], "invalid choice"),
    ],
)
def test_bad_input_exits_with_one_line(tmp_path, args, needle):
    bad = job_document(2, steps=0)
    job = write_job(tmp_path, bad)
    model_job = write_job(tmp_path, job_document(2, model={"source": "no/such-model"}), "model.json")
    (tmp_path / "taken").write_text("a file where the output folder should be")
    blocked_job = write_job(tmp_path, job_document(2, output={"folder": "taken/frames"}), "blocked.json")
    wav = tmp_path / "a.wav"
    _write_wav(wav, np.zeros(800, dtype=np.int16), 8000)
    args = [a.format(job=job, model_job=model_job, blocked_job=blocked_job, wav=wav) for a in args]
    result = engine(*args)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def _write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    from scipy.io import wavfile

    wavfile.write(path, rate, samples)


def test_features_json_and_csv(tmp_path):
    rate, fps = 44100, 20
    t = np.arange(rate * 2) / rate
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    wav = tmp_path / "tone.wav"
    _write_wav(wav, np.stack([tone, tone], axis=1).astype(np.float32), rate)

    result = engine("features", str(wav), "--fps", str(fps))
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert {"rms", "centroid", "spread", "skewness", "kurtosis", "flux", "onset"} <= set(values)
    assert all(len(v) == 2 * fps for v in values.values())
    assert values["rms"][5] == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)
    assert values["centroid"][5] == pytest.approx(1000, rel=0.05)

    result = engine("features", str(wav), "--fps", str(fps), "--format", "csv", "--normalize", "minmax")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 2 * fps and rows[0]["frame"] == "0"
    assert all(0.0 <= float(r["rms"]) <= 1.0 for r in rows)
