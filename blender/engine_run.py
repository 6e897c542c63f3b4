"""What every operator that runs one engine command shares: blocking from scripts, modal in the UI.

Called from a script or with ``blender -b``, the operator blocks and prints progress lines. From the UI it is
modal: Blender's progress bar and status text follow the child process, and Esc stops it between denoising
steps, keeping every finished frame. The operator supplies ``_start`` (which returns a session); the session
turns the engine's events into progress, and its ``outcome`` into the final report. The session's process is a
one-shot ``EngineProcess`` or a request to the warm engine (``warm_engine.Ticket``), read the same way.
"""

import queue
import sys

import bpy

from .engine_process import EngineProcess
from .scene_job import SceneJobError
from .status_bar import BOARD
from .warm_engine import Ticket


class EngineSession:
    """What one engine run knows. Warnings, errors and the end of the stream are the same for every command;
    subclasses turn the other events into progress (``progress``) and the exit code into a report (``outcome``)."""

    def __init__(self, process: EngineProcess | Ticket) -> None:
        self.process = process
        self.finished = False
        self.fraction = 0.0
        self.error: str | None = None
        self.warnings: list[str] = []

    def handle(self, event: dict | None) -> str | None:
        """Apply one event; returns a progress line for the console, if the event deserves one."""
        if event is None:
            self.finished = True
            return None
        kind = event.get("event")
        if kind == "warning":
            self.warnings.append(event["message"])
            return f"Bend: warning: {event['message']}"
        if kind == "error":
            self.error = event["message"]
            return None
        return self.progress(kind, event)

    def progress(self, kind: str, event: dict) -> str | None:
        raise NotImplementedError

    def status(self) -> str:
        raise NotImplementedError

    def outcome(self, code: int) -> tuple[str, str]:
        raise NotImplementedError


class EngineRun:
    """Mixin for a ``bpy.types.Operator``; subclasses define ``_start(context) -> EngineSession``."""

    _session: EngineSession | None = None
    _timer = None
    _stopping = False

    def _start(self, context: bpy.types.Context) -> EngineSession:
        raise NotImplementedError

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Blocking: for scripts and background mode (``blender -b``)."""
        try:
            session = self._start(context)
        except SceneJobError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        try:
            while not session.finished:
                line = session.handle(session.process.events.get())
                if line:
                    print(line, flush=True)
        except BaseException:  # Ctrl+C, or a bug here: never leave the engine running on its own
            session.process.stop()
            session.process.wait()
            raise
        return self._finish(session, session.process.wait())

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if bpy.app.background or context.window is None:
            return self.execute(context)
        try:
            self._session = self._start(context)
        except SceneJobError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.progress_begin(0, 1000)
        wm.modal_handler_add(self)
        BOARD.post(self._session, f"{self._session.status()} — Esc to stop")
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        session = self._session
        if event.type == "ESC" and event.value == "PRESS":
            session.process.stop()
            self._stopping = True
            BOARD.post(session, "Bend: stopping after the current step...")
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        while True:
            try:
                session.handle(session.process.events.get_nowait())
            except queue.Empty:
                break
        context.window_manager.progress_update(int(session.fraction * 1000))
        if not self._stopping:
            BOARD.post(session, f"{session.status()} — Esc to stop")
        if not session.finished:
            return {"RUNNING_MODAL"}
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        BOARD.remove(session)  # the status bar keeps the lines of other runs still going (a preview)
        return self._finish(session, session.process.wait())

    def _finish(self, session: EngineSession, code: int) -> set[str]:
        level, message = session.outcome(code)
        for warning in session.warnings:
            self.report({"WARNING"}, warning)
        if level == "ERROR" and bpy.app.background:
            print(f"Bend: {message}", file=sys.stderr, flush=True)
        self.report({level}, message)
        return {"FINISHED"} if code == 0 else {"CANCELLED"}
