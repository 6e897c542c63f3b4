"""``bend.render`` ("Render Bent Frames" in the Render menu): evaluate the scene into a job and render it.

The job is written next to the frames (``//bend/<scene name>/job.json`` by default) and rendered by the engine in
a child process (``python -m engine render``), never in Blender's process: the UI stays responsive, GPU memory
is freed at the end, and a crash in torch cannot take Blender down. Frames arrive as JSON-lines events; each
one extends an image strip named after the scene, on the first free channel above the sound. The engine skips
frames already rendered with the same parameters, so rendering again resumes.

From the UI the operator is modal: Blender's progress bar and status text follow the render, and Esc stops it
between denoising steps, keeping every finished frame. Called from a script or with ``blender -b`` it blocks
and prints progress.
"""

import os
import queue
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

import bpy
from bpy.props import IntProperty

from .. import compat, dependencies, preferences
from ..audio_source import sound_strips
from ..engine.frame_store import FrameStore, frame_file_name
from ..scene_job import SceneJobError, build_job, output_folder, write_job

EXTENSION_ROOT = Path(__file__).resolve().parents[1]
EXIT_STOPPED = 130


class EngineProcess:
    """``python -m engine render JOB`` in a child process; its events are read on a thread, never blocking."""

    def __init__(self, job_path: Path, frame_range: tuple[int, int] | None, python: str) -> None:
        command = [python, "-m", "engine", "render", str(job_path)]
        if frame_range is not None:
            command += ["--frames", f"{frame_range[0]}-{frame_range[1]}"]
        env = dict(os.environ, PYTHONNOUSERSITE="1")
        env["PYTHONPATH"] = os.pathsep.join([str(EXTENSION_ROOT), str(dependencies.site_packages())])
        self.process = subprocess.Popen(
            command, cwd=EXTENSION_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
        )
        self.events: queue.Queue = queue.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self._readers = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_events(self) -> None:
        import json

        for line in self.process.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.stderr_tail.append(line.rstrip())
        self.events.put(None)  # end of stream

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr_tail.append(line.rstrip())

    def stop(self) -> None:
        """Ask the engine to stop after the current denoising step (it keeps finished frames)."""
        if self.process.poll() is None:
            self.process.terminate()

    def wait(self) -> int:
        code = self.process.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        return code


class FrameStrip:
    """The scene's image-sequence strip of rendered frames, grown as frames arrive."""

    def __init__(self, scene: bpy.types.Scene, folder: Path) -> None:
        self.scene = scene
        self.folder = folder
        self.strip = None

    def _find_or_create(self) -> "bpy.types.Strip":
        scene, strips = self.scene, compat.strips(self.scene)
        first = frame_file_name(scene.frame_start)
        existing = strips.get(scene.name)
        if existing is not None:
            # Resolved: "Make Paths Relative" turns a folder elsewhere into "//../..", which is the same folder.
            folder = Path(bpy.path.abspath(existing.directory)).resolve() if existing.type == "IMAGE" else None
            same = (folder == self.folder.resolve()
                    and round(existing.frame_start) == scene.frame_start and existing.elements[0].filename == first)
            if same:
                return existing
            strips.remove(existing)
        strip = strips.new_image(name=scene.name, filepath=str(self.folder / first), channel=self._free_channel(),
                                 frame_start=scene.frame_start, fit_method="ORIGINAL")
        # Frames must reach the output as rendered: AgX (the default view transform) would tone-map them.
        scene.view_settings.view_transform = "Standard"
        scene.render.dither_intensity = 0.0
        return strip

    def _free_channel(self) -> int:
        """The first channel above the sound strips with nothing in the scene's frame range."""
        scene = self.scene
        channel = max((s.channel for s in sound_strips(scene)), default=0) + 1
        start, end = scene.frame_start, scene.frame_end + 1
        while any(s.channel == channel and s.frame_final_start < end and s.frame_final_end > start
                  for s in compat.strips(scene)):
            channel += 1
        return channel

    def show(self, frame: int) -> None:
        """Make the strip reach ``frame`` (frames not rendered yet show as missing until they are)."""
        if self.strip is None:
            self.strip = self._find_or_create()
        while self.strip.frame_final_end <= frame:
            next_frame = round(self.strip.frame_start) + len(self.strip.elements)
            self.strip.elements.append(frame_file_name(next_frame))


class RenderSession:
    """What one render run knows: progress, messages, and the strip it keeps up to date."""

    def __init__(self, scene: bpy.types.Scene, folder: Path, process: EngineProcess) -> None:
        self.strip = FrameStrip(scene, folder)
        self.process = process
        self.folder = folder
        self.todo = 0
        self.done = 0
        self.skipped = 0
        self.fraction = 0.0
        self.error: str | None = None
        self.warnings: list[str] = []
        self.finished = False

    def handle(self, event: dict | None) -> str | None:
        """Apply one event; returns a progress line for the console, if the event deserves one."""
        if event is None:
            self.finished = True
            return None
        kind = event.get("event")
        if kind == "start":
            self.todo, self.skipped = event["todo"], event["skipped"]
            for frame in self._existing_frames():
                self.strip.show(frame)
            return f"Bend: {self.todo} frames to render, {self.skipped} already done"
        if kind == "loaded":
            where = f"{event['device']} ({event['dtype']})"
            return f"Bend: model {event['model']} loaded on {where} in {event['seconds']} s"
        if kind == "step" and self.todo:
            self.fraction = (self.done + len(event["frames"]) * event["step"] / event["steps"]) / self.todo
        elif kind == "frame":
            self.done += 1
            self.fraction = self.done / max(self.todo, 1)
            self.strip.show(event["frame"])
            return f"Bend: frame {event['frame']} done ({self.done}/{self.todo}, {event['seconds']:.2f} s)"
        elif kind == "warning":
            self.warnings.append(event["message"])
            return f"Bend: warning: {event['message']}"
        elif kind == "error":
            self.error = event["message"]
        return None

    def _existing_frames(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in self.folder.glob("frame_*.png") if p.stem[6:].isdigit())

    def outcome(self, code: int) -> tuple[str, str]:
        """The report level and message for the finished process (which has exited: its leftovers can go)."""
        FrameStore(self.folder).remove_temporaries()
        if code == 0:
            return "INFO", f"Rendered {self.done} frames ({self.skipped} already done) into {self.folder}"
        if code == EXIT_STOPPED:
            return "WARNING", f"Render stopped: {self.done} new frames kept in {self.folder}; render again to resume"
        if self.error:
            return "ERROR", f"Render failed: {self.error}"
        if code < 0:
            return "ERROR", (f"The render process was killed (signal {-code}), perhaps out of memory: try a smaller "
                             f"Batch Size or output size. {self.done} new frames are kept; render again to resume")
        tail = next((line for line in reversed(self.process.stderr_tail) if line.strip()), "")
        return "ERROR", f"The render process failed (exit code {code}): {tail}"


class BEND_OT_render(bpy.types.Operator):
    """Render the scene with the bent Stable Diffusion pipeline into an image strip in the Sequencer"""

    bl_idname = "bend.render"
    bl_label = "Render Bent Frames"

    frame_start: IntProperty(name="Start", description="First frame to render; -1: the scene's start", default=-1)
    frame_end: IntProperty(name="End", description="Last frame to render; -1: the scene's end", default=-1)

    _session: RenderSession | None = None
    _timer = None

    def _start(self, context: bpy.types.Context) -> RenderSession:
        scene = context.scene
        missing = dependencies.missing() if not preferences.get(context).engine_python else []
        if missing:
            raise SceneJobError(f"The engine's dependencies are missing ({', '.join(missing)}): install them in "
                                "Preferences > Extensions > Diffusion Bender")
        first = scene.frame_start if self.frame_start < 0 else self.frame_start
        last = scene.frame_end if self.frame_end < 0 else self.frame_end
        if not scene.frame_start <= first <= last <= scene.frame_end:
            raise SceneJobError(f"Frames {first}-{last} are not inside the scene's range "
                                f"{scene.frame_start}-{scene.frame_end}: set Start and End within it")
        folder = output_folder(scene)
        job_path = write_job(build_job(scene, preferences.get(context)), folder)
        whole = (first, last) == (scene.frame_start, scene.frame_end)
        python = bpy.path.abspath(preferences.get(context).engine_python) or sys.executable
        process = EngineProcess(job_path, None if whole else (first, last), python)
        return RenderSession(scene, folder, process)

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
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        session = self._session
        if event.type == "ESC" and event.value == "PRESS":
            session.process.stop()
            context.workspace.status_text_set("Bend: stopping after the current step...")
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        while True:
            try:
                session.handle(session.process.events.get_nowait())
            except queue.Empty:
                break
        context.window_manager.progress_update(int(session.fraction * 1000))
        if context.workspace is not None:
            context.workspace.status_text_set(
                f"Bend: {session.done}/{session.todo} frames ({session.fraction:.0%}) — Esc to stop")
        if not session.finished:
            return {"RUNNING_MODAL"}
        wm = context.window_manager
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        return self._finish(session, session.process.wait())

    def _finish(self, session: RenderSession, code: int) -> set[str]:
        level, message = session.outcome(code)
        for warning in session.warnings:
            self.report({"WARNING"}, warning)
        if level == "ERROR" and bpy.app.background:
            print(f"Bend: {message}", file=sys.stderr, flush=True)
        self.report({level}, message)
        return {"FINISHED"} if code == 0 else {"CANCELLED"}


def _menu(self: bpy.types.Menu, context: bpy.types.Context) -> None:
    self.layout.separator()
    self.layout.operator(BEND_OT_render.bl_idname, icon="RENDER_ANIMATION")


CLASSES = (BEND_OT_render,)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()
    bpy.types.TOPBAR_MT_render.append(_menu)


def unregister() -> None:
    bpy.types.TOPBAR_MT_render.remove(_menu)
    _unregister_classes()
