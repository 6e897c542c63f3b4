"""The warm engine: one ``python -m engine serve`` child per Blender session, shared by previews, renders and sweeps.

The first request pays for starting Python, importing torch and loading the model; every later one with the same
model settings (the job's ``model`` section, and the Engine Python) starts rendering at once. Other model settings
restart the process, which frees everything the old model held. The process exits after the idle time set in the
preferences, with *Release GPU* (``bend.preview_release``), or when the extension is disabled.

It is still a child process, so a crash in torch cannot take Blender down: the request in flight ends with the
process's exit code, every frame it finished is on disk already (``engine/frame_store.py``), and the next request
starts a fresh process. ``blender -b`` (a farm node, a one-off script) keeps one process per render instead:
nothing is kept warm there, unless ``BEND_WARM_ENGINE=1`` asks for it (a script that renders many variations);
``BEND_WARM_ENGINE=0`` never keeps one for renders and sweeps.

Each request gets an id, and the engine tags every event of a request with it (``engine/preview.py``): the
reading thread delivers each event to the ``Ticket`` of its request, so a render and a preview in flight at once
never see each other's events. The engine runs one request at a time, in the order they were sent.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Collection

import bpy

from . import preferences
from .engine_process import EngineProcess
from .scene_job import SceneJobError

WARM_VARIABLE = "BEND_WARM_ENGINE"
RUN_ANSWERS = ("finished",)  # a render or sweep request ends with this event (its code: the command's exit code)
PREVIEW_ANSWERS = ("preview", "error", "cancelled")
RELEASE_SECONDS = 10.0  # how long Release GPU waits for the step in progress before it kills the process


def warm_renders() -> bool:
    """Whether renders and sweeps go to the warm engine: in the UI yes, with ``blender -b`` no, unless the
    ``BEND_WARM_ENGINE`` environment variable says 1 (always) or 0 (never)."""
    value = os.environ.get(WARM_VARIABLE, "").strip().lower()
    if value in ("1", "on", "yes", "true"):
        return True
    if value in ("0", "off", "no", "false"):
        return False
    return not bpy.app.background


def model_key(job: dict) -> str:
    """What decides whether the warm process can serve a job: its whole model section."""
    return json.dumps(job["model"], sort_keys=True)


class Ticket:
    """One request to the warm engine, read like a one-shot ``EngineProcess``: its events end with None, then
    ``wait()`` gives what the one-shot command's exit code would be (the process's own, when it died)."""

    def __init__(self, warm: WarmEngine, engine: EngineProcess, request_id: int, answers: Collection[str]) -> None:
        self.warm = warm
        self.engine = engine
        self.id = request_id
        self.answers = answers
        self.inbox: queue.Queue = queue.Queue()
        self.events = self  # read as ``process.events.get()``, as a one-shot process's queue
        self.code: int | None = None
        self.ended = False

    # The queue the session reads: a render's "finished" event becomes the end of its stream.
    def get(self, timeout: float | None = None) -> dict | None:
        return self._seen(self.inbox.get(timeout=timeout))

    def get_nowait(self) -> dict | None:
        return self._seen(self.inbox.get_nowait())

    def empty(self) -> bool:
        return self.inbox.empty()

    def _seen(self, event: dict | None) -> dict | None:
        if event is None:  # the process ended (crashed, or released) before answering
            self._end()
            return None
        if event.get("event") in self.answers:
            self._end()
            if event["event"] == "finished":
                self.code = event["code"]
                return None
        return event

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            self.warm.close(self)

    @property
    def pid(self) -> int:
        return self.engine.pid

    @property
    def running(self) -> bool:
        return self.engine.running

    def stop(self) -> None:
        """Stop this request after the current denoising step (finished frames are kept), or before it starts."""
        if self.ended:
            return
        with contextlib.suppress(OSError, ValueError):  # the process has ended: so has the request
            self.engine.send({"request": "stop", "id": self.id})

    def abandon(self) -> None:
        """Stop the request and stop reading it: its events are dropped from now on."""
        self.stop()
        self._end()

    def wait(self) -> int:
        """The request's exit code: as the one-shot command's, or the process's own if it ended first."""
        while not self.ended:
            self.get()
        return self.code if self.code is not None else self.engine.wait()

    def last_error_line(self) -> str:
        return self.engine.last_error_line()


class WarmEngine:
    """The warm ``python -m engine serve`` child shared by every request of this Blender session."""

    def __init__(self) -> None:
        self.engine: EngineProcess | None = None
        self.key: tuple[str, str] | None = None  # (Engine Python, model key) it was started for
        self.last_used = 0.0
        self._next_id = 0
        self._tickets: dict[int, Ticket] = {}
        self._lock = threading.Lock()  # the reading thread routes events while Blender's adds and ends tickets

    @property
    def running(self) -> bool:
        return self.engine is not None and self.engine.running

    @property
    def busy(self) -> bool:
        """A request is in flight: never released for idleness meanwhile."""
        with self._lock:
            return any(t.engine is self.engine for t in self._tickets.values())

    def serves(self, python: str, key: str) -> bool:
        return self.running and self.key == (python, key)

    def request(self, payload: dict, python: str, key: str, answers: Collection[str] = RUN_ANSWERS) -> Ticket:
        """Send ``payload`` (a request without its id) to a process started for ``python`` and ``key``."""
        engine = self._start(python, key)
        try:
            return self._send(engine, payload, answers)
        except (OSError, ValueError):  # the process died since the last request: start a fresh one
            self.release()
            return self._send(self._start(python, key), payload, answers)

    def _send(self, engine: EngineProcess, payload: dict, answers: Collection[str]) -> Ticket:
        with self._lock:
            self._next_id += 1
            ticket = Ticket(self, engine, self._next_id, answers)
            self._tickets[ticket.id] = ticket
        try:
            engine.send({**payload, "id": ticket.id})
        except BaseException:
            with self._lock:
                self._tickets.pop(ticket.id, None)
            raise
        self.last_used = time.monotonic()
        return ticket

    def _start(self, python: str, key: str) -> EngineProcess:
        if self.serves(python, key):
            return self.engine
        if self.running and self.busy:
            raise SceneJobError(
                "The engine is busy with other model settings (a render or preview in progress): wait for it, "
                "or stop it with Esc"
            )
        self.release()
        self.engine = EngineProcess(["serve"], python, interactive=True, on_event=self._route)
        self.key = (python, key)
        return self.engine

    def _route(self, engine: EngineProcess, event: dict | None) -> None:
        """On the reading thread: give the event to its request; the end of the stream to every request left."""
        with self._lock:
            if event is None:
                targets = [t for t in self._tickets.values() if t.engine is engine]
            else:
                ticket = self._tickets.get(event.get("id")) if isinstance(event, dict) else None
                targets = [ticket] if ticket is not None and ticket.engine is engine else []
        for ticket in targets:
            ticket.inbox.put(event)

    def close(self, ticket: Ticket) -> None:
        """A request has ended: the idle time counts from now."""
        with self._lock:
            self._tickets.pop(ticket.id, None)
        self.last_used = time.monotonic()
        schedule_idle_release()

    def release(self) -> bool:
        """End the process (it stops what it renders and exits at the end of its input); False if none ran."""
        engine, self.engine, self.key = self.engine, None, None
        if engine is None:
            return False
        if not engine.running:
            engine.wait()  # reaps it and closes its pipes
            return False
        try:
            engine.process.stdin.close()
            engine.process.wait(timeout=RELEASE_SECONDS)
        except (OSError, ValueError):
            pass
        except subprocess.TimeoutExpired:  # a step that will not end; its finished frames are on disk already
            engine.process.kill()
        engine.wait()
        return True

    def release_if_idle(self, idle_seconds: float) -> float | None:
        """Release after ``idle_seconds`` without use; the seconds until the next check, or None when released."""
        if not self.running:
            return None
        if self.busy:
            return max(idle_seconds, 1.0)
        left = self.last_used + idle_seconds - time.monotonic()
        if left <= 0:
            self.release()
            return None
        return max(left, 1.0)


ENGINE = WarmEngine()


def start_command(command: str, job: dict, job_path: str, python: str, **options: str) -> EngineProcess | Ticket:
    """``python -m engine <command> JOB [--option value ...]``: a request to the warm engine, or a process of its
    own in background mode, or while the warm engine is busy with other model settings (nothing waits)."""
    key = model_key(job)
    if warm_renders() and (ENGINE.serves(python, key) or not ENGINE.busy):
        return ENGINE.request({"request": command, "job": job_path, **options}, python, key)
    arguments = [command, job_path]
    for name, value in options.items():
        arguments += [f"--{name}", value]
    return EngineProcess(arguments, python)


def _idle_timer() -> float | None:
    try:
        idle = preferences.get().preview_idle_minutes * 60
    except (KeyError, AttributeError):  # the extension is being disabled
        return None
    return ENGINE.release_if_idle(idle)


def schedule_idle_release() -> None:
    if not bpy.app.timers.is_registered(_idle_timer):
        bpy.app.timers.register(_idle_timer, first_interval=1.0, persistent=True)


def shut_down() -> None:
    """When the extension is disabled: no timer left behind, no process left running."""
    if bpy.app.timers.is_registered(_idle_timer):
        bpy.app.timers.unregister(_idle_timer)
    ENGINE.release()
