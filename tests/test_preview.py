"""Previews (``engine/preview.py``, ``python -m engine serve``): one warm process answers many requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from queue import Empty, Queue

import numpy as np
import pytest
from job_documents import job_document, write_job
from PIL import Image
from test_cli import ROOT, done, engine

from engine.errors import JobError
from engine.events import EventStream
from engine.job import parse_job
from engine.preview import PreviewServer, parse_request, preview_job

R1 = {"name": "R1", "op": "rotate_r1", "latent_layer": 0}


class Server:
    """``python -m engine serve`` in a child process, its events read on a thread."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "engine", "serve"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: Queue = Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.events.put(json.loads(line))

    def send(self, request: dict) -> None:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()

    def until(self, kinds: tuple[str, ...], timeout: float = 120) -> list[dict]:
        """Events up to and including the first of one of ``kinds``."""
        seen = []
        while True:
            try:
                event = self.events.get(timeout=timeout)
            except Empty:
                raise AssertionError(f"no {kinds} event; stderr: {self.process.stderr.read()[-2000:]}") from None
            seen.append(event)
            if event["event"] in kinds:
                return seen

    def close(self) -> int:
        self.process.stdin.close()
        return self.process.wait(timeout=60)


def request(tmp_path: Path, doc: dict, frame: int, **fields) -> dict:
    return {
        "request": "preview",
        "id": fields.pop("id", 1),
        "job": doc,
        "base_dir": str(tmp_path),
        "frame": frame,
        "folder": str(tmp_path / "preview"),
        **fields,
    }


def read(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_a_warm_server_previews_frames_of_a_job_as_the_render_renders_them(tmp_path):
    doc = job_document(3, bends=[R1])
    rendered = tmp_path / "render"
    done(engine("render", str(write_job(rendered, doc))))
    server = Server()
    try:
        server.send(request(tmp_path, doc, 2, id=1))
        first = server.until(("preview", "error"))
        assert first[-1]["event"] == "preview" and first[-1]["id"] == 1, first[-1]
        assert first[-1]["model_loaded"] is True
        # At full size and steps, a preview is the frame the render made.
        assert np.array_equal(read(first[-1]["file"]), read(rendered / "frame_00002.png"))

        doc["frames"][1]["bends"]["R1"] = 2.5  # the artist turns the knob: a new frame, same warm model
        server.send(request(tmp_path, doc, 2, id=2, steps=2, scale=0.5, unbent=True))
        second = server.until(("preview", "error"))
        assert second[-1]["event"] == "preview" and second[-1]["id"] == 2, second[-1]
        assert second[-1]["model_loaded"] is False
        assert not any(e["event"] == "loaded" and e.get("seconds", 0) > 5 for e in second)
        side_by_side = read(second[-1]["file"])
        assert side_by_side.shape[1] > 2 * 16  # unbent | bent, 16×16 frames enlarged to fit their labels

        server.send({"request": "preview", "id": 3})  # a bad request is answered, and the server carries on
        bad = server.until(("preview", "error"))
        assert bad[-1] == {"event": "error", "id": 3, "message": "request.job: required"}
        server.process.stdin.write("not json\n")
        server.process.stdin.flush()
        assert server.until(("preview", "error"))[-1]["message"].startswith("request: not valid JSON")
        server.send(request(tmp_path, doc, 99, id=4))
        assert "frame 99 is not in the job" in server.until(("preview", "error"))[-1]["message"]
    finally:
        assert server.close() == 0


def test_a_stop_request_stops_the_preview_in_progress_and_the_server_keeps_serving(tmp_path):
    doc = job_document(1, bends=[R1], steps=200, width=64, height=64)
    server = Server()
    try:
        server.send(request(tmp_path, doc, 1, id=1))
        server.until(("step",))
        server.send({"request": "stop"})
        stopped = server.until(("cancelled", "preview", "error"))
        assert stopped[-1] == {"event": "cancelled", "id": 1}
        assert sum(e["event"] == "step" for e in stopped) <= 3  # stops within a step (or two, in flight)
        server.send(request(tmp_path, doc, 1, id=2, steps=1))
        assert server.until(("cancelled", "preview", "error"))[-1]["event"] == "preview"
    finally:
        assert server.close() == 0


def test_image_to_image_previews_start_from_the_previous_frame(tmp_path, tiny_model):
    doc = job_document(3, mode="img2img")
    rendered = tmp_path / "render"
    done(engine("render", str(write_job(rendered, doc))))
    server = PreviewServer(EventStream(None))
    server._model, server._model_spec = tiny_model, parse_job(doc, tmp_path).model
    preview = server.preview(parse_request(request(tmp_path, doc, 3, previous=str(rendered / "frame_00002.png"))))
    assert np.array_equal(read(preview), read(rendered / "frame_00003.png"))

    warnings: list[str] = []
    job = preview_job(parse_request(request(tmp_path, doc, 3)), warnings.append)
    assert job.init_image is None and job.seed == 46 + 2
    assert warnings == [
        "frame 2 is not rendered yet, so this image-to-image preview starts from noise; render the "
        "frames before it for a true one"
    ]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scale": 0}, "request.scale: must be above 0"),
        ({"steps": -1}, "request.steps: must be between 0 and 1000"),
        ({"request": "render"}, 'request.request: must be "preview" or "stop"'),
        ({"colour": "red"}, "request.colour: unknown field"),
    ],
)
def test_bad_requests_name_the_field(tmp_path, fields, message):
    with pytest.raises(JobError, match=message):
        parse_request({**request(tmp_path, job_document(1), 1), **fields})


def test_previews_are_smaller_and_shorter_on_request(tmp_path):
    doc = job_document(2, width=64, height=48, steps=10)
    job = preview_job(parse_request(request(tmp_path, doc, 2, steps=3, scale=0.25)), lambda m: None)
    assert (job.width, job.height, job.steps, [f.frame for f in job.frames]) == (16, 8, 3, [2])
    assert job.output_folder == tmp_path / "preview" / "bent"


def test_a_render_whose_parent_dies_stops_instead_of_holding_the_gpu(tmp_path):
    """Blender or a farm worker killed mid-render: the engine's next event finds its pipe closed, and it ends."""
    doc = job_document(4, steps=100, width=64, height=64)
    job = write_job(tmp_path, doc)
    pid_file = tmp_path / "engine.pid"
    parent = textwrap.dedent(f"""\
        import os, signal, subprocess, sys
        child = subprocess.Popen([sys.executable, "-m", "engine", "render", {str(job)!r}], cwd={str(ROOT)!r},
                                 stdout=subprocess.PIPE, text=True)
        open({str(pid_file)!r}, "w").write(str(child.pid))
        for line in child.stdout:
            if '"step"' in line:
                os.kill(os.getpid(), signal.SIGKILL)
        """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", parent], env=env, timeout=120)
    engine_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(engine_pid):
        time.sleep(0.2)
    assert not _alive(engine_pid), "the orphaned engine kept rendering"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie waiting for init to reap it has exited
        return stat.read().split(")")[-1].split()[0] != "Z"
