"""``bend.render`` ("Render Bent Frames" in the Render menu): evaluate the scene into a job and render it.

The job is written next to the frames (``//bend/<scene name>/job.json`` by default) and rendered by the engine in
a child process, never in Blender's process: the UI stays responsive and a crash in torch cannot take Blender down.
In the UI that child is the warm engine (``blender/warm_engine.py``), which keeps the model loaded between renders
and previews; ``blender -b`` runs ``python -m engine render`` in a process of its own. Frames arrive as JSON-lines
events; each one extends an image strip named after the scene, on the first free channel above the sound. The
engine skips frames already rendered with the same parameters, so rendering again resumes, and a re-render after
changing some keys renders only the frames they changed.

From the UI the operator is modal: Blender's progress bar and status text follow the render, and Esc stops it
between denoising steps, keeping every finished frame. Called from a script or with ``blender -b`` it blocks
and prints progress.
"""

from pathlib import Path

import bpy
from bpy.props import IntProperty

from ..blender import compat, preferences
from ..blender.audio_source import sound_strips
from ..blender.engine_process import EXIT_STOPPED, EngineProcess
from ..blender.engine_python import check_dependencies, engine_python
from ..blender.engine_run import EngineRun, EngineSession
from ..blender.scene_job import SceneJobError, build_job, output_folder, write_job
from ..blender.status_bar import model_name
from ..blender.warm_engine import Ticket, start_command
from ..engine.frame_store import FrameStore, frame_file_name


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
            same = (
                folder == self.folder.resolve()
                and round(compat.strip_content_start(existing)) == scene.frame_start
                and existing.elements[0].filename == first
            )
            if same:
                return existing
            strips.remove(existing)
        strip = strips.new_image(
            name=scene.name,
            filepath=str(self.folder / first),
            channel=self._free_channel(),
            frame_start=scene.frame_start,
            fit_method="ORIGINAL",
        )
        # Frames must reach the output as rendered: AgX (the default view transform) would tone-map them.
        scene.view_settings.view_transform = "Standard"
        scene.render.dither_intensity = 0.0
        return strip

    def _free_channel(self) -> int:
        """The first channel above the sound strips with nothing in the scene's frame range."""
        scene = self.scene
        channel = max((s.channel for s in sound_strips(scene)), default=0) + 1
        start, end = scene.frame_start, scene.frame_end + 1
        while any(
            s.channel == channel and compat.strip_left_handle(s) < end and compat.strip_right_handle(s) > start
            for s in compat.strips(scene)
        ):
            channel += 1
        return channel

    def show(self, frame: int) -> None:
        """Make the strip reach ``frame`` (frames not rendered yet show as missing until they are)."""
        if self.strip is None:
            self.strip = self._find_or_create()
        while compat.strip_right_handle(self.strip) <= frame:
            next_frame = round(compat.strip_content_start(self.strip)) + len(self.strip.elements)
            self.strip.elements.append(frame_file_name(next_frame))


class RenderSession(EngineSession):
    """A render run: progress over the frames to render, and the strip it keeps up to date."""

    def __init__(self, scene: bpy.types.Scene, folder: Path, process: EngineProcess | Ticket, model: str = "") -> None:
        super().__init__(process)
        self.strip = FrameStrip(scene, folder)
        self.folder = folder
        self.model = model
        self.todo = 0
        self.done = 0
        self.skipped = 0
        self.started = False  # the engine's "start" event came: it knows what is left to render
        self.loaded = False  # the model is loaded ("loaded" event): from here on, frames count

    def progress(self, kind: str, event: dict) -> str | None:
        if kind == "start":
            self.started = True
            self.todo, self.skipped = event["todo"], event["skipped"]
            for frame in self._existing_frames():
                self.strip.show(frame)
            # A Flamenco Worker counts each line starting "Skipping existing frame" as one step of the task, as
            # Blender prints for each frame it does not render again (command_blender.go, regexpFrameSkipped).
            lines = [f"Bend: {self.todo} frames to render, {self.skipped} already done"]
            lines += [f"Skipping existing frame ({n} of {self.skipped})" for n in range(1, self.skipped + 1)]
            return "\n".join(lines)
        if kind == "loaded":
            self.loaded = True
            where = f"{event['device']} ({event['dtype']})"
            return f"Bend: model {event['model']} loaded on {where} in {event['seconds']} s"
        if kind == "warm":  # the warm engine had the model loaded already
            self.loaded = True
            return f"Bend: model {event['model']} already loaded on {event['device']} ({event['dtype']})"
        if kind == "step" and self.todo:
            self.fraction = (self.done + len(event["frames"]) * event["step"] / event["steps"]) / self.todo
        elif kind == "frame":
            self.done += 1
            self.fraction = self.done / max(self.todo, 1)
            self.strip.show(event["frame"])
            # Blender's own lines for a frame written, which a Flamenco Worker reads (command_blender.go): "Saved:"
            # sends the image as the job's thumbnail, "Time:" counts one step of the task.
            minutes, seconds = divmod(round(event["seconds"], 2), 60)
            return "\n".join(
                [
                    f"Bend: frame {event['frame']} done ({self.done}/{self.todo}, {event['seconds']:.2f} s)",
                    f"Saved: '{self.folder / frame_file_name(event['frame'])}'",
                    f"Time: {int(minutes):02d}:{seconds:05.2f}",
                ]
            )
        return None

    def status(self) -> str:
        # Loading takes a while (torch's import, then the checkpoint): say so instead of "0/0 frames". A render
        # with every frame already done loads nothing.
        if not self.loaded and not (self.started and self.todo == 0):
            return f"Bend: loading model {model_name(self.model)}..." if self.model else "Bend: loading the model..."
        return f"Bend: {self.done}/{self.todo} frames ({self.fraction:.0%})"

    def _existing_frames(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in self.folder.glob("frame_*.png") if p.stem[6:].isdigit())

    def outcome(self, code: int) -> tuple[str, str]:
        """The report level and message for the finished process (which has exited: its leftovers can go)."""
        # wait() has ended the child's whole process group, so an engine behind a wrapper writes no more either:
        # the child's temporaries go by its pid, those of the rest of its group as a dead process's. A warm engine
        # still running has finished this request: only what is provably stale goes.
        FrameStore(self.folder).remove_temporaries(pid=None if self.process.running else self.process.pid)
        if code == 0 and (not self.started or self.done < self.todo):
            # An Engine Python that is a wrapper script can exit 0 although the engine behind it never ran or died
            return "ERROR", (
                f"The render process exited before the render was done ({self.done} of {self.todo} frames; "
                f"{self.process.last_error_line() or 'no message'}): check the Engine Python in the preferences"
            )
        if code == 0:
            return "INFO", f"Rendered {self.done} frames ({self.skipped} already done) into {self.folder}"
        if code == EXIT_STOPPED:
            return "WARNING", f"Render stopped: {self.done} new frames kept in {self.folder}; render again to resume"
        if self.error:
            return "ERROR", f"Render failed: {self.error}"
        if code < 0:
            return "ERROR", (
                f"The render process was killed (signal {-code}), perhaps out of memory: try a smaller "
                f"Batch Size or output size. {self.done} new frames are kept; render again to resume"
            )
        return "ERROR", f"The render process failed (exit code {code}): {self.process.last_error_line()}"


class BEND_OT_render(EngineRun, bpy.types.Operator):
    """Render the scene with the bent Stable Diffusion pipeline into an image strip in the Sequencer"""

    bl_idname = "bend.render"
    bl_label = "Render Bent Frames"

    frame_start: IntProperty(name="Start", description="First frame to render; -1: the scene's start", default=-1)
    frame_end: IntProperty(name="End", description="Last frame to render; -1: the scene's end", default=-1)

    def _start(self, context: bpy.types.Context) -> RenderSession:
        scene = compat.sequencer_scene(context)
        check_dependencies(context)
        first = scene.frame_start if self.frame_start < 0 else self.frame_start
        last = scene.frame_end if self.frame_end < 0 else self.frame_end
        if not scene.frame_start <= first <= last <= scene.frame_end:
            raise SceneJobError(
                f"Frames {first}-{last} are not inside the scene's range "
                f"{scene.frame_start}-{scene.frame_end}: set Start and End within it"
            )
        folder = output_folder(scene)
        job = build_job(scene, preferences.get(context))
        job_path = write_job(job, folder)
        options = {}
        if (first, last) != (scene.frame_start, scene.frame_end):
            options["frames"] = f"{first}-{last}"
        process = start_command("render", job, str(job_path), engine_python(context), **options)
        return RenderSession(scene, folder, process, model=job["model"]["source"])


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
