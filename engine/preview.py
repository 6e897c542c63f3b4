"""Previews: one frame of a job, rendered by a process that stays warm between requests.

``python -m engine serve`` reads one JSON request per line on stdin and answers with events on stdout (see
``events.py``). The model stays loaded between requests, so only the first preview pays for start-up and loading;
a request with other model settings replaces it. Requests::

    {"request": "preview", "id": 3, "job": {...a job document...}, "base_dir": "/abs", "frame": 12,
     "folder": "/abs/work", "steps": 20, "scale": 0.5, "unbent": true, "previous": "/abs/frame_00011.png"}
    {"request": "stop"}      stop the preview in progress between denoising steps (the server keeps running)

``steps`` 0 and ``scale`` 1 keep the job's own. ``previous`` is the image an image-to-image frame starts from (the
previous rendered frame); without it such a frame previews from its init image or from noise, with a warning. A
preview is an ordinary render of a one-frame job into ``folder``, so an unchanged preview comes back at once.
Each request ends with ``{"event": "preview", "id", "file", "seconds", "model_loaded"}``, or ``error`` /
``cancelled`` with its ``id``. The server exits at the end of stdin. A request line is decoded like a job file
(``job.decode_document``: size, depth, digits, UTF-8); a line longer than ``limits.MAX_DOCUMENT_BYTES`` is read
past, never held whole, and answered with an error.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .contact_sheet import grid_sheet, save_sheet
from .errors import EngineError, JobError, RenderCancelled
from .events import EventStream
from .files import remove_planted
from .frame_store import FrameStore
from .job import Job, ModelSpec, _Fields, decode_document, parse_job
from .limits import MAX_DOCUMENT_BYTES, MAX_INT
from .models import Model

PREVIEW_FILE = "preview.png"
# What bounded_lines yields for a request line longer than the limit (a str no line equals by identity).
OVERSIZED = "\x00oversized request\x00"


@dataclasses.dataclass(frozen=True)
class PreviewRequest:
    id: int
    job: Job
    frame: int
    folder: Path
    steps: int
    scale: float
    unbent: bool
    previous: Path | None


def parse_request(data: Any) -> PreviewRequest:
    fields = _Fields(data, "request")
    fields.get("request", "str", check=lambda v: None if v == "preview" else 'must be "preview" or "stop"')
    request_id = fields.get("id", "int", 0)
    base_dir = fields.get("base_dir", "str", ".")
    fields.used.add("job")
    if data.get("job") is None:
        raise JobError("request.job: required")
    job = parse_job(data["job"], base_dir)
    previous = fields.get("previous", "str", None)
    request = PreviewRequest(
        id=request_id,
        job=job,
        frame=fields.get("frame", "int"),
        folder=Path(fields.get("folder", "str")),
        steps=fields.get("steps", "int", 0, lambda v: None if 0 <= v <= 1000 else "must be between 0 and 1000"),
        scale=fields.get("scale", "float", 1.0, lambda v: None if 0 < v <= 1 else "must be above 0, at most 1"),
        unbent=fields.get("unbent", "bool", False),
        previous=Path(previous) if previous else None,
    )
    fields.finish()
    return request


def _scaled(pixels: int, scale: float) -> int:
    return max(8, int(pixels * scale) // 8 * 8)


def preview_job(request: PreviewRequest, warn: Callable[[str], None]) -> Job:
    """The one-frame job a preview renders: the requested frame, at preview size and steps, into ``folder``."""
    job = request.job
    index = next((i for i, f in enumerate(job.frames) if f.frame == request.frame), None)
    if index is None:
        raise JobError(f"frame: frame {request.frame} is not in the job ({job.frames[0].frame}-{job.frames[-1].frame})")
    frame = job.frames[index]
    changes: dict[str, Any] = {
        "frames": (frame,),
        "width": _scaled(job.width, request.scale),
        "height": _scaled(job.height, request.scale),
        "steps": request.steps or job.steps,
        "batch_size": 1,
        "output_folder": request.folder / "bent",
    }
    if job.mode == "img2img" and index > 0:
        # Frame i starts from frame i-1 with seed + i (Job.frame_seed): as frame 0 of a job seeded seed + i.
        changes["seed"] = job.seed + index
        if request.previous is not None and request.previous.is_file():
            changes["init_image"] = request.previous
        else:
            warn(
                f"frame {frame.frame - 1} is not rendered yet, so this image-to-image preview starts from "
                f"{'the init image' if job.init_image else 'noise'}; render the frames before it for a true one"
            )
    return dataclasses.replace(job, **changes)


class PreviewServer:
    """Serves preview requests one at a time, keeping the last model loaded."""

    def __init__(self, events: EventStream) -> None:
        self.events = events
        self.stop = threading.Event()
        self._model: Model | None = None
        self._model_spec: ModelSpec | None = None

    def _model_for(self, spec: ModelSpec) -> Model | None:
        if spec != self._model_spec:
            self._model, self._model_spec = None, None  # free the old model before loading another
        return self._model

    def _render(self, job: Job) -> np.ndarray:
        from .runner import Runner

        runner = Runner(job, self.events, should_stop=self.stop.is_set, model=self._model_for(job.model))
        runner.run()
        if runner.model is not None:
            self._model, self._model_spec = runner.model, job.model
        return FrameStore(job.output_folder).read(job.frames[0].frame)

    def preview(self, request: PreviewRequest) -> Path:
        started = time.perf_counter()
        model_before = self._model
        warn = lambda message: self.events.emit("warning", message=message)  # noqa: E731
        job = preview_job(request, warn)
        bent = self._render(job)
        output = request.folder / PREVIEW_FILE
        remove_planted(output.with_name(f".{output.name}.partial"))  # save_sheet's temporary: never through a link
        if request.unbent:
            unbent = self._render(dataclasses.replace(job, bends=(), output_folder=request.folder / "unbent"))
            title = f"frame {request.frame}: unbent | bent"
            sheet, _ = grid_sheet([[unbent, bent]], [""], ["unbent", "bent"], title)
        else:
            from PIL import Image

            sheet = Image.fromarray(bent, mode="RGB")
        save_sheet(sheet, output)
        self.events.emit(
            "preview",
            id=request.id,
            file=str(output),
            seconds=round(time.perf_counter() - started, 3),
            model_loaded=self._model is not model_before,
        )
        return output

    def handle(self, line: str) -> None:
        request_id = 0
        try:
            if line is OVERSIZED:
                raise JobError(f"request: longer than {MAX_DOCUMENT_BYTES:,} bytes; send a smaller job")
            data = decode_document(line, "request")
            if isinstance(data, dict) and isinstance(data.get("id"), int) and abs(data["id"]) <= MAX_INT:
                request_id = data["id"]
            request = parse_request(data)
            self.stop.clear()
            self.preview(request)
        except RenderCancelled:
            self.events.emit("cancelled", id=request_id)
        except EngineError as exc:
            self.events.emit("error", id=request_id, message=str(exc))
        except Exception as exc:  # a bug: keep serving, and keep the traceback for the report
            traceback.print_exc(file=sys.stderr)
            self.events.emit("error", id=request_id, message=f"internal error: {exc!r}")

    def serve(self, lines: Iterable[str]) -> None:
        """Handle requests until ``lines`` ends; a stop request is seen while a preview renders."""
        pending: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            for line in lines:
                if not line.strip():
                    continue
                if '"stop"' in line and _is_stop(line):
                    self.stop.set()
                else:
                    pending.put(line)
            self.stop.set()  # end of input: finish now
            pending.put(None)

        threading.Thread(target=read, daemon=True, name="requests").start()
        while (line := pending.get()) is not None:
            self.handle(line)


def _is_stop(line: str) -> bool:
    if line is OVERSIZED or len(line) > 1000:  # a stop request is short; anything longer is parsed as a request
        return False
    try:
        return json.loads(line).get("request") == "stop"
    except (ValueError, AttributeError, RecursionError):
        return False


def bounded_lines(stream: BinaryIO, limit: int = MAX_DOCUMENT_BYTES) -> Iterator[str]:
    """The lines of a byte stream, each at most ``limit`` bytes: a longer one is read past (never held whole) and
    comes out as ``OVERSIZED``. Bytes that are not UTF-8 stay as surrogates, for the request's own error."""
    while line := stream.readline(limit + 1):
        if len(line) > limit and not line.endswith(b"\n"):
            while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
                pass
            yield OVERSIZED
            continue
        yield line.decode("utf-8", errors="surrogateescape")
