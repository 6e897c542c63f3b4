"""The warm engine's render, sweep and stop requests (``engine/preview.py``): a one-shot command's work and events,
in a process that keeps the model between requests."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from queue import Queue

import pytest
from job_documents import job_document, write_job

from engine.events import EventStream
from engine.frame_store import FrameStore
from engine.job import parse_job
from engine.preview import PreviewServer

R1 = {"name": "R1", "op": "rotate_r1", "latent_layer": 0}


class Recorder(io.StringIO):
    """The server's stdout: events decoded as they are written; ``on_event`` may act on one (a stop mid-render)."""

    def __init__(self, on_event: Callable[[dict], None] = lambda e: None) -> None:
        super().__init__()
        self.events: list[dict] = []
        self.on_event = on_event

    def write(self, text: str) -> int:
        for line in text.splitlines():
            self.events.append(json.loads(line))
            self.on_event(self.events[-1])
        return len(text)

    def of(self, request_id: int) -> list[dict]:
        return [e for e in self.events if e.get("id") == request_id]


def kinds(events: list[dict]) -> list[str]:
    return [e["event"] for e in events if e["event"] != "step"]


def warm_server(recorder: Recorder, tiny_model, job_file: Path) -> PreviewServer:
    server = PreviewServer(EventStream(recorder))
    doc = {k: v for k, v in json.loads(job_file.read_text()).items() if k != "sweep"}
    server._model, server._model_spec = tiny_model, parse_job(doc, job_file.parent).model  # as after a request
    return server


def test_a_render_request_streams_the_render_and_a_rerender_renders_only_the_changed_frame(tmp_path, tiny_model):
    doc = job_document(3, bends=[R1], steps=2)
    job_file = write_job(tmp_path / "out", doc)
    recorder = Recorder()
    server = PreviewServer(EventStream(recorder))
    server._model, server._model_spec = None, None
    server.handle(json.dumps({"request": "render", "id": 7, "job": str(job_file)}))
    first = recorder.of(7)
    assert kinds(first) == ["start", "loaded", "frame", "frame", "frame", "done", "finished"]
    assert first[0] == {"event": "start", "id": 7, "frames": 3, "todo": 3, "skipped": 0}
    assert first[-1] == {"event": "finished", "id": 7, "code": 0}
    model = server._model
    assert model is not None

    doc["frames"][1]["bends"]["R1"] = 2.5  # the artist moves one key
    write_job(tmp_path / "out", doc)
    server.handle(json.dumps({"request": "render", "id": 8, "job": str(job_file)}))
    second = recorder.of(8)
    assert kinds(second) == ["start", "warm", "frame", "done", "finished"]  # nothing loaded again
    assert second[0]["todo"] == 1 and [e["frame"] for e in second if e["event"] == "frame"] == [2]
    assert server._model is model
    assert FrameStore(tmp_path / "out").load_manifest()[2]["params"]["bends"]["R1"] == 2.5

    server.handle(json.dumps({"request": "render", "id": 9, "job": str(job_file), "frames": "3-3"}))
    assert kinds(recorder.of(9)) == ["start", "done", "finished"]  # all done: no model work at all


def test_stop_requests_stop_their_own_request_between_steps_and_drop_queued_ones(tmp_path, tiny_model):
    doc = job_document(4, bends=[R1], steps=6, batch_size=1)
    job_file = write_job(tmp_path / "out", doc)
    lines: Queue = Queue()
    server: PreviewServer

    def on_event(event: dict) -> None:
        if event["event"] != "step" or event["step"] != 1:
            return
        if event["id"] == 1 and event["frames"] == [2]:
            server.request_stop(99)  # another request's stop: this render goes on
            server.request_stop(2)  # queued, not started: dropped when its turn comes
            server.request_stop(1)
        elif event["id"] == 3:
            lines.put(None)  # the input ends (Release GPU) while request 3 renders
            while not server._closing:  # until the reading thread has seen it
                time.sleep(0.001)

    recorder = Recorder(on_event)
    server = warm_server(recorder, tiny_model, job_file)

    def feed() -> Iterator[str]:
        while (line := lines.get()) is not None:
            yield line

    for request_id in (1, 2, 3, 4):
        lines.put(json.dumps({"request": "render", "id": request_id, "job": str(job_file)}) + "\n")
    serve_thread = threading.Thread(target=server.serve, args=(feed(),))
    serve_thread.start()
    serve_thread.join(timeout=600)
    assert not serve_thread.is_alive()
    first = recorder.of(1)
    assert [e["frame"] for e in first if e["event"] == "frame"] == [1]  # frame 1 kept, frame 2 stopped mid-way
    assert first[-2:] == [{"event": "cancelled", "id": 1}, {"event": "finished", "id": 1, "code": 130}]
    assert recorder.of(2) == [{"event": "cancelled", "id": 2}, {"event": "finished", "id": 2, "code": 130}]
    # The end of input stops the request in progress and starts none of those queued.
    assert kinds(recorder.of(3)) == ["start", "warm", "cancelled", "finished"]
    assert recorder.of(4) == [{"event": "cancelled", "id": 4}, {"event": "finished", "id": 4, "code": 130}]
    assert set(FrameStore(tmp_path / "out").load_manifest()) == {1}


def test_a_sweep_request_writes_the_sheet(tmp_path, tiny_model):
    doc = job_document(1, bends=[R1], steps=2)
    doc["sweep"] = {"bend": "R1", "values": [0.0, 1.0], "layers": [0]}
    sweep_file = write_job(tmp_path / "sw", doc, name="sweep.json")
    recorder = Recorder()
    server = warm_server(recorder, tiny_model, sweep_file)
    sheet = tmp_path / "sheet.png"
    server.handle(json.dumps({"request": "sweep", "id": 4, "job": str(sweep_file), "sheet": str(sheet)}))
    events = recorder.of(4)
    assert kinds(events) == ["sweep", "start", "warm", "frame", "frame", "done", "sheet", "finished"]
    assert events[-1]["code"] == 0 and sheet.is_file()


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"request": "render", "job": "missing.json"}, "missing.json: no such job file"),
        ({"request": "render", "job": ""}, "request.job: must name the job file"),
        ({"request": "render", "job": "x.json", "sheet": "s.png"}, "request.sheet: unknown field"),
        ({"request": "render", "job": "JOB", "frames": "5-2"}, "--frames: the range '5-2' ends before it starts"),
        ({"request": "paint"}, 'request.request: must be "preview", "render", "sweep" or "stop"'),
    ],
)
def test_bad_run_requests_end_with_an_error_naming_the_field(tmp_path, tiny_model, request_fields, message):
    job_file = write_job(tmp_path / "out", job_document(1))
    recorder = Recorder()
    server = warm_server(recorder, tiny_model, job_file)
    fields = {
        k: (str(job_file) if v == "JOB" else str(tmp_path / v) if k == "job" and v else v)
        for k, v in request_fields.items()
    }
    server.handle(json.dumps({"id": 5, **fields}))
    events = recorder.of(5)
    assert events[0]["event"] == "error" and message in events[0]["message"]
    if fields["request"] == "render":
        assert events[-1] == {"event": "finished", "id": 5, "code": 1}
    server.handle(json.dumps({"request": "render", "id": 6, "job": str(job_file)}))
    assert recorder.of(6)[-1] == {"event": "finished", "id": 6, "code": 0}  # and the server carries on


def test_a_sweep_on_a_cold_engine_leaves_the_model_warm_for_the_next_request(tmp_path):
    doc = job_document(1, bends=[R1], steps=2)
    doc["sweep"] = {"bend": "R1", "values": [0.0, 1.0], "layers": [0]}
    sweep_file = write_job(tmp_path / "sw", doc, name="sweep.json")
    recorder = Recorder()
    server = PreviewServer(EventStream(recorder))  # cold: nothing loaded yet
    server.handle(json.dumps({"request": "sweep", "id": 1, "job": str(sweep_file), "sheet": str(tmp_path / "a.png")}))
    assert "loaded" in kinds(recorder.of(1))
    render_file = write_job(tmp_path / "render", job_document(1, bends=[R1], steps=2))  # same model settings
    server.handle(json.dumps({"request": "render", "id": 2, "job": str(render_file)}))
    assert kinds(recorder.of(2)) == ["start", "warm", "frame", "done", "finished"]
