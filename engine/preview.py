"""The warm engine: one process that renders previews, renders and sweeps on request, keeping the model loaded.

``python -m engine serve`` reads one JSON request per line on stdin and answers with events on stdout (see
``events.py``). The model stays loaded between requests, so only the first request pays for start-up and loading;
a request with other model settings replaces it. Requests::

    {"request": "preview", "id": 3, "job": {...a job document...}, "base_dir": "/abs", "frame": 12,
     "folder": "/abs/work", "steps": 20, "scale": 0.5, "unbent": true, "previous": "/abs/frame_00011.png"}
    {"request": "render", "id": 4, "job": "/abs/job.json", "frames": "3-7"}        as ``render JOB --frames 3-7``
    {"request": "sweep", "id": 5, "job": "/abs/sweep.json", "sheet": "/abs/s.png"}   as ``sweep JOB --sheet S``
    {"request": "stop", "id": 4}   stop request 4 between denoising steps (finished frames are kept), or drop it
                                   if it has not started; without an id, the request in progress

Every event of a request carries its ``id``. A render or sweep streams the one-shot command's events and ends with
``{"event": "finished", "id", "code"}``, ``code`` being the command's exit code (0 done, 1 error, 130 stopped),
after an ``error`` or ``cancelled`` event for the last two. A model that an earlier request loaded says ``warm``
(same fields) where a fresh one says ``loaded``, so ``loaded`` means the model really was loaded.

``steps`` 0 and ``scale`` 1 keep the job's own. ``previous`` is the image an image-to-image frame starts from (the
previous rendered frame); without it such a frame previews from its init image or from noise, with a warning. A
preview is an ordinary render of a one-frame job into ``folder``, so an unchanged preview comes back at once.
Each preview ends with ``{"event": "preview", "id", "file", "seconds", "model_loaded"}``, or ``error`` /
``cancelled`` with its ``id``. At the end of stdin the request in progress stops, those queued are cancelled, and
the server exits. A request line is decoded like a job file (``job.decode_document``: size, depth, digits,
UTF-8); a line longer than ``limits.MAX_DOCUMENT_BYTES`` is read past, never held whole, and answered with an
error.
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
from .job import Job, ModelSpec, _Fields, decode_document, load_job, parse_job
from .limits import MAX_DOCUMENT_BYTES, MAX_INT
from .models import Model

PREVIEW_FILE = "preview.png"
# Requests that run a one-shot command's work in the warm process; each ends with a "finished" event.
RUN_REQUESTS = ("render", "sweep")
REQUESTS = ("preview", *RUN_REQUESTS)
# The one-shot command's exit codes, which a "finished" event carries (as engine/cli.py's).
CODE_DONE, CODE_ERROR, CODE_STOPPED = 0, 1, 130
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


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """A render or a sweep of a job file, as ``python -m engine render|sweep`` runs it."""

    id: int
    kind: str  # "render" or "sweep"
    job: Path
    frames: str | None  # render: "A-B" or "A", as --frames
    sheet: Path | None  # sweep: where the contact sheet goes, as --sheet


def parse_run_request(data: Any) -> RunRequest:
    fields = _Fields(data, "request")
    kind = fields.get("request", "str", check=lambda v: None if v in RUN_REQUESTS else 'must be "render" or "sweep"')
    request_id = fields.get("id", "int", 0)
    job = fields.get("job", "str", check=lambda v: None if v else "must name the job file")
    frames = fields.get("frames", "str", None) if kind == "render" else None
    sheet = fields.get("sheet", "str", None) if kind == "sweep" else None
    fields.finish()
    return RunRequest(request_id, kind, Path(job), frames, Path(sheet) if sheet else None)


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


class RequestEvents(EventStream):
    """The events of one request: each carries the request's id, and a model already loaded says ``warm``.

    A warm engine's Runner still prepares the model for each job (prompts, sampler) and says ``loaded``; renamed,
    ``loaded`` keeps its meaning (the model was loaded, taking ``seconds``), as in a one-shot command's stream."""

    def __init__(self, events: EventStream, request_id: int, warm: bool) -> None:
        super().__init__(None)
        self._events = events
        self.id = request_id
        self.warm = warm

    def emit(self, event: str, **fields: Any) -> None:
        if event == "loaded":
            event, self.warm = ("warm" if self.warm else "loaded"), True  # a sweep's later rows reuse it too
        self._events.emit(event, **{"id": self.id, **fields})


class PreviewServer:
    """Serves requests one at a time, keeping the last model loaded."""

    def __init__(self, events: EventStream) -> None:
        self.events = events
        self.stop = threading.Event()
        self._model: Model | None = None
        self._model_spec: ModelSpec | None = None
        # Stop requests arrive on the reading thread while a request runs: these say which request they concern.
        self._lock = threading.Lock()
        self._current: int | None = None
        self._dropped: set[int] = set()  # stopped before they started
        self._closing = False

    def _model_for(self, spec: ModelSpec) -> Model | None:
        if spec != self._model_spec:
            self._model, self._model_spec = None, None  # free the old model before loading another
        return self._model

    def _keep(self, model: Model | None, spec: ModelSpec) -> None:
        if model is not None:
            self._model, self._model_spec = model, spec

    def _events_for(self, request_id: int) -> RequestEvents:
        return RequestEvents(self.events, request_id, warm=self._model is not None)

    def _render(self, job: Job, events: EventStream) -> np.ndarray:
        from .runner import Runner

        runner = Runner(job, events, should_stop=self.stop.is_set, model=self._model_for(job.model))
        try:
            runner.run()
        finally:  # a preview stopped after the model loaded keeps it for the next request
            self._keep(runner.model, job.model)
        return FrameStore(job.output_folder).read(job.frames[0].frame)

    def run(self, request: RunRequest, events: EventStream | None = None) -> None:
        """A render or sweep request: what ``python -m engine render|sweep`` does, with the warm model."""
        from .runner import Runner, parse_frame_range

        events = events or self._events_for(request.id)
        if request.kind == "render":
            job = load_job(request.job)
            frame_range = parse_frame_range(request.frames) if request.frames else None
            runner = Runner(job, events, should_stop=self.stop.is_set, model=self._model_for(job.model))
            try:
                runner.run(frame_range)
            finally:  # stopped or failed after loading: the next request still finds the model
                self._keep(runner.model, job.model)
            return
        from .sweep import default_sheet_path, load_sweep, run_sweep

        job, spec = load_sweep(request.job)
        sheet = request.sheet or default_sheet_path(request.job)
        run_sweep(
            job,
            spec,
            sheet.resolve(),
            events,
            should_stop=self.stop.is_set,
            model=self._model_for(job.model),
            keep_model=lambda model: self._keep(model, job.model),
        )

    def preview(self, request: PreviewRequest, events: EventStream | None = None) -> Path:
        started = time.perf_counter()
        events = events or self._events_for(request.id)
        model_before = self._model
        warn = lambda message: events.emit("warning", message=message)  # noqa: E731
        job = preview_job(request, warn)
        bent = self._render(job, events)
        output = request.folder / PREVIEW_FILE
        remove_planted(output.with_name(f".{output.name}.partial"))  # save_sheet's temporary: never through a link
        if request.unbent:
            unbent = self._render(dataclasses.replace(job, bends=(), output_folder=request.folder / "unbent"), events)
            title = f"frame {request.frame}: unbent | bent"
            sheet, _ = grid_sheet([[unbent, bent]], [""], ["unbent", "bent"], title)
        else:
            from PIL import Image

            sheet = Image.fromarray(bent, mode="RGB")
        save_sheet(sheet, output)
        events.emit(
            "preview",
            id=request.id,
            file=str(output),
            seconds=round(time.perf_counter() - started, 3),
            model_loaded=self._model is not model_before,
        )
        return output

    def handle(self, line: str) -> None:
        request_id, kind = 0, "preview"
        try:
            if line is OVERSIZED:
                raise JobError(f"request: longer than {MAX_DOCUMENT_BYTES:,} bytes; send a smaller job")
            data = decode_document(line, "request")
            if isinstance(data, dict):
                if isinstance(data.get("id"), int) and abs(data["id"]) <= MAX_INT:
                    request_id = data["id"]
                if data.get("request") in RUN_REQUESTS:
                    kind = data["request"]
                elif data.get("request") not in REQUESTS:
                    raise JobError('request.request: must be "preview", "render", "sweep" or "stop"')
            self._begin(request_id)
            if kind == "preview":
                self.preview(parse_request(data))
            else:
                self.run(parse_run_request(data))
                self._finished(kind, request_id, CODE_DONE)
        except RenderCancelled:
            self.events.emit("cancelled", id=request_id)
            self._finished(kind, request_id, CODE_STOPPED)
        except EngineError as exc:
            self.events.emit("error", id=request_id, message=str(exc))
            self._finished(kind, request_id, CODE_ERROR)
        except Exception as exc:  # a bug: keep serving, and keep the traceback for the report
            traceback.print_exc(file=sys.stderr)
            self.events.emit("error", id=request_id, message=f"internal error: {exc!r}")
            self._finished(kind, request_id, CODE_ERROR)
        finally:
            with self._lock:
                self._current = None

    def _begin(self, request_id: int) -> None:
        """Make ``request_id`` the request in progress; RenderCancelled if it was stopped before it started."""
        with self._lock:
            self._current = request_id
            self.stop.clear()
            if self._closing or request_id in self._dropped:
                self._dropped.discard(request_id)
                raise RenderCancelled(f"request {request_id} was stopped before it started")

    def _finished(self, kind: str, request_id: int, code: int) -> None:
        if kind in RUN_REQUESTS:
            self.events.emit("finished", id=request_id, code=code)

    def request_stop(self, request_id: int | None) -> None:
        """Stop request ``request_id`` (None: the one in progress) between steps, or drop it before it starts."""
        with self._lock:
            if request_id is None or request_id == self._current:
                self.stop.set()
            else:
                self._dropped.add(request_id)

    def serve(self, lines: Iterable[str]) -> None:
        """Handle requests until ``lines`` ends; a stop request is seen while a request runs."""
        pending: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            for line in lines:
                if not line.strip():
                    continue
                is_stop, request_id = _stop_request(line) if '"stop"' in line else (False, None)
                if is_stop:
                    self.request_stop(request_id)
                else:
                    pending.put(line)
            with self._lock:  # end of input: finish now, and start nothing that is queued
                self._closing = True
                self.stop.set()
            pending.put(None)

        threading.Thread(target=read, daemon=True, name="requests").start()
        while (line := pending.get()) is not None:
            self.handle(line)


def _stop_request(line: str) -> tuple[bool, int | None]:
    """Whether ``line`` is a stop request, and the id of the request it stops (None: the one in progress)."""
    if line is OVERSIZED or len(line) > 1000:  # a stop request is short; anything longer is parsed as a request
        return False, None
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(data, dict) or data.get("request") != "stop":
        return False, None
    request_id = data.get("id")
    return True, request_id if isinstance(request_id, int) and not isinstance(request_id, bool) else None


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
