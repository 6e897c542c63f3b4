"""``bend.preview_frame`` ("Preview Frame"): the current frame with the current settings, in an image named
"Bend Preview", without touching the Sequencer or the render output; ``bend.live_preview`` ("Live Preview"): the
same, again whenever the frame or a setting changes, until Esc or the button again.

Previews go to the warm engine (``blender/warm_engine.py``) that renders and sweeps share, so the model loads once
per session: a preview costs only its denoising steps. The process exits, freeing the GPU, after the idle time set
in the preferences, with "Release GPU" (``bend.preview_release``), or when the extension is disabled. Bend >
Preview sets fewer steps or a smaller size for speed, and can show the unbent frame beside the bent one. An
image-to-image frame starts from the previous rendered frame when there is one.

Live Preview keeps one request in flight. A change while it renders becomes the one pending request (replacing an
older pending one) and stops the one in flight between steps; only the answer to the newest request is shown, so
an older frame never replaces a newer one. Its state is module state here (``LIVE``), shown to the panel through
two read-only WindowManager properties: ``bend_live_preview`` (on or off) and ``bend_live_preview_status`` (the
last frame and its time, from the request to the image in Blender).
"""

import json
import queue
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import bpy
from bpy.props import BoolProperty, StringProperty

from ..blender import compat, preferences
from ..blender.engine_python import check_dependencies, engine_python
from ..blender.scene_job import SceneJobError, build_job, output_folder
from ..blender.status_bar import BOARD, model_name
from ..blender.warm_engine import ENGINE, PREVIEW_ANSWERS, Ticket, model_key, shut_down
from ..engine.frame_store import frame_file_name

PREVIEW_IMAGE = "Bend Preview"
LIVE_TICK_SECONDS = 0.05  # how often Live Preview looks for a change and for its answer


def preview_folder(scene: bpy.types.Scene) -> Path:
    """Blender's temporary folder for this session: previews never land in the render output."""
    base = Path(bpy.app.tempdir or tempfile.gettempdir())
    return base / "bend-preview" / bpy.path.clean_name(scene.name)


def preview_request(context: bpy.types.Context) -> dict:
    """The preview request for the current frame and settings (the warm engine adds its id)."""
    scene = compat.sequencer_scene(context)
    frame = scene.frame_current
    settings = scene.bend.preview
    previous = None
    if scene.bend.mode == "img2img" and frame > scene.frame_start:
        try:
            candidate = output_folder(scene) / frame_file_name(frame - 1)
            previous = str(candidate) if candidate.is_file() else None
        except SceneJobError:  # an unsaved file with a relative output folder has no rendered frames
            previous = None
    return {
        "request": "preview",
        "job": build_job(scene, preferences.get(context), only=range(frame, frame + 1)),
        "base_dir": str(preview_folder(scene)),
        "frame": frame,
        "folder": str(preview_folder(scene)),
        "steps": settings.steps,
        "scale": settings.scale / 100,
        "unbent": settings.compare,
        "previous": previous,
    }


def send_preview(payload: dict, python: str) -> Ticket:
    return ENGINE.request(payload, python, model_key(payload["job"]), PREVIEW_ANSWERS)


def show_preview(path: str) -> bpy.types.Image:
    """Load the preview into the "Bend Preview" image and show it in every Image Editor."""
    image = bpy.data.images.get(PREVIEW_IMAGE)
    if image is None:
        image = bpy.data.images.load(path)
        image.name = PREVIEW_IMAGE
    else:
        image.filepath = path
        image.reload()
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                area.spaces.active.image = image
                area.tag_redraw()
    return image


def _ended_message(ticket: Ticket) -> tuple[str, str]:
    """The report for a preview whose process ended before answering: released on purpose, or crashed."""
    if ENGINE.engine is not ticket.engine:
        return "WARNING", "Preview stopped: the engine process was released"
    tail = ticket.last_error_line()
    ENGINE.release()  # reaps it; the next request starts a fresh one
    return "ERROR", f"The engine process ended unexpectedly: {tail or 'no message'}"


class BEND_OT_preview_frame(bpy.types.Operator):
    """Render the current frame with the current settings into the "Bend Preview" image (the model stays loaded)"""

    bl_idname = "bend.preview_frame"
    bl_label = "Preview Frame"

    _timer = None
    _model = ""
    _frame = 0
    _ticket: Ticket | None = None

    def _send(self, context: bpy.types.Context) -> Ticket:
        check_dependencies(context)
        payload = preview_request(context)
        self._model, self._frame = payload["job"]["model"]["source"], payload["frame"]
        self._ticket = send_preview(payload, engine_python(context))
        return self._ticket

    def _answer(self, event: dict | None) -> set[str] | None:
        """Handle one event; the operator's result once the request is answered."""
        if event is None:
            level, message = _ended_message(self._ticket)
            self.report({level}, message)
            return {"CANCELLED"}
        kind = event.get("event")
        if kind == "warning":
            self.report({"WARNING"}, event["message"])
        if kind not in PREVIEW_ANSWERS:
            return None
        if kind == "preview":
            show_preview(event["file"])
            loaded = "model loaded" if event["model_loaded"] else "model warm"
            self.report({"INFO"}, f"Preview of frame {self._frame} in {event['seconds']:.2f} s ({loaded})")
            return {"FINISHED"}
        if kind == "cancelled":
            self.report({"WARNING"}, "Preview stopped")
            return {"CANCELLED"}
        self.report({"ERROR"}, f"Preview failed: {event['message']}")
        return {"CANCELLED"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Blocking: for scripts and background mode."""
        try:
            ticket = self._send(context)
        except SceneJobError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        try:
            while (result := self._answer(ticket.get())) is None:
                pass
        except KeyboardInterrupt:
            ENGINE.release()
            raise
        if "CANCELLED" in result and bpy.app.background:
            print("Bend: preview did not finish", file=sys.stderr, flush=True)
        return result

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if bpy.app.background or context.window is None:
            return self.execute(context)
        warm = ENGINE.running
        try:
            self._send(context)
        except SceneJobError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(0.1, window=context.window)
        context.window_manager.modal_handler_add(self)
        frame = self._frame
        if warm:
            line = f"Bend: previewing frame {frame}... Esc to stop"
        else:  # a fresh engine process loads the model first, which takes longer than the preview itself
            line = f"Bend: loading model {model_name(self._model)} to preview frame {frame}... Esc to stop"
        BOARD.post(self._status_key(), line)
        return {"RUNNING_MODAL"}

    def _status_key(self) -> tuple[str, int]:
        return ("preview", self._ticket.id)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC" and event.value == "PRESS":
            self._ticket.stop()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        while not self._ticket.empty():
            result = self._answer(self._ticket.get_nowait())
            if result is not None:
                context.window_manager.event_timer_remove(self._timer)
                BOARD.remove(self._status_key())  # a render still running keeps its line
                return result
        return {"RUNNING_MODAL"}


class LivePreview:
    """Live Preview's state, one per Blender session: the newest request wins.

    ``update`` makes a request when the frame or the settings changed (their request differs from the last one)
    and sends the newest pending request when none is in flight; ``receive`` reads the answer of the one in flight
    and shows it only if no newer request was made since. ``shown`` records (request number, frame) of each image
    shown, in order.
    """

    def __init__(self) -> None:
        self.running = False
        self.dirty = False  # a handler saw a change: build the request again
        self.building = False  # build_job sets frames itself: the handlers must not take that for a change
        self.serial = 0  # the number of the newest request made
        self.requested = ""  # what that request asked for (request and Engine Python)
        self.frame: int | None = None  # the frame it was made at
        self.pending: tuple[int, int, dict, str] | None = None  # serial, frame, payload, python
        self.in_flight: tuple[int, int, Ticket, float] | None = None  # serial, frame, ticket, when sent
        self.status = ""
        self.shown: deque[tuple[int, int]] = deque(maxlen=100)

    def start(self) -> None:
        self.__init__()
        self.running = self.dirty = True
        for handlers in (bpy.app.handlers.frame_change_post, bpy.app.handlers.depsgraph_update_post):
            if _changed not in handlers:
                handlers.append(_changed)

    def stop(self) -> None:
        self.running = False
        for handlers in (bpy.app.handlers.frame_change_post, bpy.app.handlers.depsgraph_update_post):
            while _changed in handlers:
                handlers.remove(_changed)
        if self.in_flight is not None:
            self.in_flight[2].abandon()
        self.in_flight = self.pending = None
        BOARD.remove(("live",))

    def tick(self, context: bpy.types.Context) -> None:
        self.receive()
        self.update(context)
        if self.status:
            BOARD.post(("live",), f"{self.status} — Esc to stop")

    def update(self, context: bpy.types.Context) -> None:
        """Request the current frame with the current settings if either changed; send the newest request when
        nothing is in flight."""
        frame = compat.sequencer_scene(context).frame_current
        if self.dirty or frame != self.frame:
            self.dirty = False
            self.building = True
            try:
                self.frame = frame
                payload = preview_request(context)
                python = engine_python(context)
            except SceneJobError as exc:
                self.status = f"Live Preview: {exc}"
                return
            finally:
                self.building = False
            requested = json.dumps([payload, python], sort_keys=True)
            if requested != self.requested:
                self.requested, self.serial = requested, self.serial + 1
                self.pending = (self.serial, payload["frame"], payload, python)
                if self.in_flight is not None:
                    self.in_flight[2].stop()  # stale now: its answer will not be shown, so stop it early
        if self.in_flight is None and self.pending is not None:
            serial, frame, payload, python = self.pending
            self.pending = None
            try:
                ticket = send_preview(payload, python)
            except SceneJobError as exc:
                self.status = f"Live Preview: {exc}"
                return
            self.in_flight = (serial, frame, ticket, time.perf_counter())

    def receive(self, timeout: float = 0.0) -> None:
        """Read the answer of the request in flight (waiting up to ``timeout`` for each event); show it only if
        it answers the newest request."""
        while self.in_flight is not None:
            serial, frame, ticket, sent = self.in_flight
            try:
                event = ticket.get(timeout=timeout) if timeout > 0 else ticket.get_nowait()
            except queue.Empty:
                return
            if event is not None and event.get("event") not in PREVIEW_ANSWERS:
                continue
            self.in_flight = None
            if serial != self.serial:
                continue  # an older request than the newest: dropped
            if event is None:
                self.status = f"Live Preview: {_ended_message(ticket)[1]}"
            elif event["event"] == "preview":
                show_preview(event["file"])
                self.shown.append((serial, frame))
                self.status = f"Live Preview: frame {frame} in {time.perf_counter() - sent:.2f} s"
            elif event["event"] == "error":
                self.status = f"Live Preview: {event['message']}"

    @property
    def idle(self) -> bool:
        return self.in_flight is None and self.pending is None


LIVE = LivePreview()


@bpy.app.handlers.persistent
def _changed(scene: bpy.types.Scene, depsgraph: bpy.types.Depsgraph | None = None) -> None:
    if LIVE.running and not LIVE.building:
        LIVE.dirty = True


@bpy.app.handlers.persistent
def _stop_live_on_load(*args: object) -> None:
    """A file being opened ends Live Preview's modal operator: its state must end with it."""
    if LIVE.running:
        LIVE.stop()


def _redraw_sequencer(context: bpy.types.Context) -> None:
    """The Preview panel shows Live Preview's state and time: redraw it when that changes."""
    for window in getattr(context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type == "SEQUENCE_EDITOR":
                area.tag_redraw()


class BEND_OT_live_preview(bpy.types.Operator):
    """Preview the current frame again whenever the frame or a setting changes; the newest frame wins (Esc or this
    button again stops it)"""

    bl_idname = "bend.live_preview"
    bl_label = "Live Preview"

    _timer = None
    _status = ""

    def execute(self, context: bpy.types.Context) -> set[str]:
        if LIVE.running:
            LIVE.stop()
            self.report({"INFO"}, "Live Preview off")
            return {"FINISHED"}
        self.report(
            {"ERROR"}, "Live Preview follows the playhead in Blender's window; from a script, use bend.preview_frame"
        )
        return {"CANCELLED"}

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if LIVE.running or bpy.app.background or context.window is None:
            return self.execute(context)
        try:
            check_dependencies(context)
        except SceneJobError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        LIVE.start()
        self._timer = context.window_manager.event_timer_add(LIVE_TICK_SECONDS, window=context.window)
        context.window_manager.modal_handler_add(self)
        BOARD.post(("live",), "Live Preview: on — Esc to stop")
        _redraw_sequencer(context)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC" and event.value == "PRESS":
            LIVE.stop()
        if not LIVE.running:  # Esc, the button again, or a file opened
            context.window_manager.event_timer_remove(self._timer)
            _redraw_sequencer(context)
            return {"FINISHED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        LIVE.tick(context)
        if LIVE.status != self._status:
            self._status = LIVE.status
            _redraw_sequencer(context)
        return {"PASS_THROUGH"}  # other runs' timers are not ours to take


class BEND_OT_preview_release(bpy.types.Operator):
    """End the engine process now (previews, renders and sweeps share it), freeing the GPU memory its model holds"""

    bl_idname = "bend.preview_release"
    bl_label = "Release GPU"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return ENGINE.running

    def execute(self, context: bpy.types.Context) -> set[str]:
        ENGINE.release()
        self.report({"INFO"}, "Engine process released")
        return {"FINISHED"}


CLASSES = (BEND_OT_preview_frame, BEND_OT_live_preview, BEND_OT_preview_release)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()
    wm = bpy.types.WindowManager
    wm.bend_live_preview = BoolProperty(
        name="Live Preview", description="Whether Live Preview is on", get=lambda self: LIVE.running
    )
    wm.bend_live_preview_status = StringProperty(
        name="Live Preview Status", description="The last live preview and its time", get=lambda self: LIVE.status
    )
    bpy.app.handlers.load_pre.append(_stop_live_on_load)


def unregister() -> None:
    LIVE.stop()
    if _stop_live_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_stop_live_on_load)
    del bpy.types.WindowManager.bend_live_preview_status
    del bpy.types.WindowManager.bend_live_preview
    shut_down()
    _unregister_classes()
