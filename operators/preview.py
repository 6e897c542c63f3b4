"""``bend.preview_frame`` ("Preview Frame"): the current frame with the current settings, in an image named
"Bend Preview", without touching the Sequencer or the render output.

Previews go to one engine process that stays warm between them (``python -m engine serve``), so the model loads
once per session: the second preview costs only its denoising steps. The process exits, freeing the GPU, after
the idle time set in the preferences, with "Release GPU" (``bend.preview_release``), or when the extension is
disabled. Bend > Preview sets fewer steps or a smaller size for speed, and can show the unbent frame beside the
bent one. An image-to-image frame starts from the previous rendered frame when there is one.
"""

import sys
import tempfile
import time
from pathlib import Path

import bpy

from ..blender import preferences
from ..blender.engine_process import EngineProcess
from ..blender.engine_python import check_dependencies, engine_python
from ..blender.scene_job import SceneJobError, build_job, output_folder
from ..blender.status_bar import BOARD, model_name
from ..engine.frame_store import frame_file_name

PREVIEW_IMAGE = "Bend Preview"
_ANSWERS = ("preview", "error", "cancelled")


class PreviewProcess:
    """The warm ``python -m engine serve`` child shared by every preview of this Blender session."""

    def __init__(self) -> None:
        self.engine: EngineProcess | None = None
        self.python = ""
        self.last_used = 0.0
        self.next_id = 0
        self.busy = False  # a request is in flight: never released for idleness meanwhile

    @property
    def running(self) -> bool:
        return self.engine is not None and self.engine.running

    def start(self, python: str) -> EngineProcess:
        if not self.running or python != self.python:
            self.release()
            self.engine, self.python = EngineProcess(["serve"], python, interactive=True), python
        self.last_used = time.monotonic()
        return self.engine

    def release(self) -> bool:
        """End the process (it exits at the end of its input), freeing its memory; False if none was running."""
        engine, self.engine = self.engine, None
        if engine is None:
            return False
        if not engine.running:
            engine.wait()  # reaps it and closes its pipes
            return False
        try:
            engine.process.stdin.close()
            engine.process.wait(timeout=10)
        except (OSError, ValueError):
            pass
        except Exception:  # subprocess.TimeoutExpired: a step that will not end
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


SERVER = PreviewProcess()


def _idle_timer() -> float | None:
    try:
        idle = preferences.get().preview_idle_minutes * 60
    except (KeyError, AttributeError):  # the extension is being disabled
        return None
    return SERVER.release_if_idle(idle)


def preview_folder(scene: bpy.types.Scene) -> Path:
    """Blender's temporary folder for this session: previews never land in the render output."""
    base = Path(bpy.app.tempdir or tempfile.gettempdir())
    return base / "bend-preview" / bpy.path.clean_name(scene.name)


def preview_request(context: bpy.types.Context, request_id: int) -> dict:
    scene = context.scene
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
        "id": request_id,
        "job": build_job(scene, preferences.get(context), only=range(frame, frame + 1)),
        "base_dir": str(preview_folder(scene)),
        "frame": frame,
        "folder": str(preview_folder(scene)),
        "steps": settings.steps,
        "scale": settings.scale / 100,
        "unbent": settings.compare,
        "previous": previous,
    }


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


class BEND_OT_preview_frame(bpy.types.Operator):
    """Render the current frame with the current settings into the "Bend Preview" image (the model stays loaded)"""

    bl_idname = "bend.preview_frame"
    bl_label = "Preview Frame"

    _id = 0
    _timer = None
    _model = ""
    _engine = None  # the process this request went to: Release GPU may take it from SERVER meanwhile

    def _send(self, context: bpy.types.Context) -> EngineProcess:
        check_dependencies(context)
        SERVER.next_id += 1
        self._id = SERVER.next_id
        request = preview_request(context, self._id)
        self._model = request["job"]["model"]["source"]
        engine = SERVER.start(engine_python(context))
        try:
            engine.send(request)
        except OSError:  # the process died since the last preview: start a fresh one
            SERVER.release()
            engine = SERVER.start(engine_python(context))
            engine.send(request)
        SERVER.busy = True
        self._engine = engine
        return engine

    def _answer(self, event: dict | None) -> set[str] | None:
        """Handle one event; the operator's result once the request is answered."""
        if event is None:
            SERVER.busy = False
            if SERVER.engine is not self._engine:  # Release GPU ended it on purpose
                self.report({"WARNING"}, "Preview stopped: its process was released")
                return {"CANCELLED"}
            tail = self._engine.last_error_line() if self._engine else ""
            SERVER.release()
            self.report({"ERROR"}, f"The preview process ended unexpectedly: {tail or 'no message'}")
            return {"CANCELLED"}
        kind = event.get("event")
        if kind == "warning":
            self.report({"WARNING"}, event["message"])
        if kind not in _ANSWERS or event.get("id") != self._id:
            return None
        SERVER.last_used, SERVER.busy = time.monotonic(), False
        if not bpy.app.timers.is_registered(_idle_timer):
            bpy.app.timers.register(_idle_timer, first_interval=1.0, persistent=True)
        if kind == "preview":
            show_preview(event["file"])
            loaded = "model loaded" if event["model_loaded"] else "model warm"
            self.report(
                {"INFO"}, f"Preview of frame {bpy.context.scene.frame_current} in {event['seconds']:.2f} s ({loaded})"
            )
            return {"FINISHED"}
        if kind == "cancelled":
            self.report({"WARNING"}, "Preview stopped")
            return {"CANCELLED"}
        self.report({"ERROR"}, f"Preview failed: {event['message']}")
        return {"CANCELLED"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Blocking: for scripts and background mode."""
        try:
            engine = self._send(context)
        except SceneJobError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        try:
            while (result := self._answer(engine.events.get())) is None:
                pass
        except KeyboardInterrupt:
            SERVER.release()
            raise
        if "CANCELLED" in result and bpy.app.background:
            print("Bend: preview did not finish", file=sys.stderr, flush=True)
        return result

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if bpy.app.background or context.window is None:
            return self.execute(context)
        warm = SERVER.running
        try:
            self._send(context)
        except SceneJobError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(0.1, window=context.window)
        context.window_manager.modal_handler_add(self)
        frame = context.scene.frame_current
        if warm:
            line = f"Bend: previewing frame {frame}... Esc to stop"
        else:  # a fresh engine process loads the model first, which takes longer than the preview itself
            model = model_name(self._model)
            line = f"Bend: loading model {model} to preview frame {frame}... Esc to stop"
        BOARD.post(self._status_key(), line)
        return {"RUNNING_MODAL"}

    def _status_key(self) -> tuple[str, int]:
        return ("preview", self._id)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type == "ESC" and event.value == "PRESS" and self._engine.running:
            self._engine.send({"request": "stop"})
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        while not self._engine.events.empty():
            result = self._answer(self._engine.events.get_nowait())
            if result is not None:
                context.window_manager.event_timer_remove(self._timer)
                BOARD.remove(self._status_key())  # a render still running keeps its line
                return result
        return {"RUNNING_MODAL"}


class BEND_OT_preview_release(bpy.types.Operator):
    """End the preview process now, freeing the GPU memory its model holds"""

    bl_idname = "bend.preview_release"
    bl_label = "Release GPU"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return SERVER.running

    def execute(self, context: bpy.types.Context) -> set[str]:
        SERVER.release()
        self.report({"INFO"}, "Preview process released")
        return {"FINISHED"}


CLASSES = (BEND_OT_preview_frame, BEND_OT_preview_release)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()


def unregister() -> None:
    if bpy.app.timers.is_registered(_idle_timer):
        bpy.app.timers.unregister(_idle_timer)
    SERVER.release()
    _unregister_classes()
