"""Export Bent Video: the scene's VSE through Blender's own FFmpeg output, as H.264 + AAC in an MP4.

The artist's render settings are borrowed, not changed: every setting this operator touches is put back
afterwards, whether the render succeeded or not.
"""

# No "from __future__ import annotations": Blender reads property annotations as evaluated objects.
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import bpy
from bpy.props import StringProperty

from ..blender import compat

# Strip types that produce pixels; without one, Blender renders the 3D scene instead and needs a camera.
_SOUND_STRIP_TYPES = {"SOUND"}


# Not allowed in file names on some systems, or (#) read by Blender as the frame number.
_UNSAFE = str.maketrans({c: "_" for c in '/\\:*?"<>|#'})


def default_filepath(scene: bpy.types.Scene) -> str:
    return f"//bend/{scene.name.translate(_UNSAFE)}.mp4"


def resolve_filepath(scene: bpy.types.Scene, filepath: str) -> Path:
    """The absolute output path: ``//`` is relative to the .blend file (or the working folder if unsaved)."""
    path = bpy.path.abspath(filepath or default_filepath(scene))
    if not path.lower().endswith(".mp4"):
        path += ".mp4"
    return Path(path)


def prepare_folder(path: Path) -> str | None:
    """Create the output folder; the reason it cannot be written to, or None."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create the folder {folder} ({exc.strerror or exc})"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable"
    if path.is_dir():
        return f"{path} is a folder"
    return None


# In this order: the container decides which codecs are on offer.
FFMPEG_SETTINGS = {"format": "MPEG4", "codec": "H264", "audio_codec": "AAC"}


# (owner, attribute, value while exporting). The view settings make the VSE pass frames through unchanged:
# AgX and looks tone-map them, and dithering adds noise.
def _settings(scene: bpy.types.Scene, filepath: str) -> list[tuple[object, str, object]]:
    render, view = scene.render, scene.view_settings
    return [
        (render, "use_sequencer", True),
        (render, "use_file_extension", True),
        (render, "filepath", filepath),
        (render, "dither_intensity", 0.0),
        (view, "view_transform", "Standard"),
        (view, "look", "None"),
        (view, "exposure", 0.0),
        (view, "gamma", 1.0),
        (view, "use_curve_mapping", False),
    ]


_SIMPLE_TYPES = {"BOOLEAN", "INT", "FLOAT", "STRING", "ENUM"}


def _snapshot(
    struct: bpy.types.bpy_struct, first: tuple[str, ...] = (), skip: tuple[str, ...] = ()
) -> list[tuple[str, object]]:
    """Every plain setting of ``struct`` but ``skip``, the names in ``first`` first (they reset the others when set)."""
    names = [
        prop.identifier
        for prop in struct.bl_rna.properties
        if prop.type in _SIMPLE_TYPES
        and not prop.is_readonly
        and not getattr(prop, "array_length", 0)
        and prop.identifier not in skip
    ]
    names.sort(key=lambda name: first.index(name) if name in first else len(first))
    return [(name, getattr(struct, name)) for name in names]


def _restore(struct: bpy.types.bpy_struct, snapshot: list[tuple[str, object]]) -> None:
    for name, value in snapshot:
        if getattr(struct, name) != value:
            # A value this Blender refuses now was equally unusable before; keep restoring the rest.
            with suppress(TypeError, ValueError, AttributeError):
                setattr(struct, name, value)


def _unset_ffmpeg_settings(ffmpeg: bpy.types.FFmpegSettings) -> tuple[str, ...]:
    """FFmpeg settings that hold no value yet and so cannot be read back.

    A scene made with ``bpy.data.scenes.new`` has never had FFmpeg set up: its preset is 0, which no enum item
    has, and reading it makes Blender print "current value '0' matches no enum". Blender fills the preset in
    (GOOD) when FFmpeg is chosen while the codec is still unset, so there is no artist's choice to keep.
    """
    return ("ffmpeg_preset",) if ffmpeg.codec == "NONE" else ()


@contextmanager
def video_settings(scene: bpy.types.Scene, filepath: str) -> Iterator[None]:
    """Switch the scene to H.264/AAC video output into ``filepath``; restore every changed setting on exit.

    Switching to FFmpeg also changes settings nobody asked for: the colour mode and depth drop to 8-bit RGB, and
    the container's preset fills in bitrate, GOP and buffer sizes. So the image and FFmpeg settings are restored
    whole, not only the ones set here.
    """
    render = scene.render
    output_state = compat.video_output_state(render)
    image_state = _snapshot(render.image_settings)
    ffmpeg_state = _snapshot(render.ffmpeg, first=("format", "codec"), skip=_unset_ffmpeg_settings(render.ffmpeg))
    changes = _settings(scene, filepath)
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in changes]
    try:
        compat.set_video_output(render)
        for name, value in FFMPEG_SETTINGS.items():
            setattr(render.ffmpeg, name, value)
        for owner, name, value in changes:
            setattr(owner, name, value)
        yield
    finally:
        # The file format first: the colour modes and depths on offer depend on it.
        compat.restore_video_output(render, output_state)
        _restore(render.image_settings, image_state)
        _restore(render.ffmpeg, ffmpeg_state)
        # Same order as set: the view transform must come back before the look that belongs to it.
        for owner, name, value in saved:
            setattr(owner, name, value)


def check_scene(scene: bpy.types.Scene) -> str | None:
    """Why the VSE cannot be exported, or None."""
    strips = list(compat.strips(scene)) if scene.sequence_editor else []
    if not strips:
        return f"Scene '{scene.name}' has no strips in the Video Sequencer: Render Bent Frames first, or add strips"
    if scene.camera is None and all(s.type in _SOUND_STRIP_TYPES for s in strips):
        return (
            f"Scene '{scene.name}' has only sound strips in the Video Sequencer: Render Bent Frames first, "
            "or add an image or movie strip"
        )
    return None


class BEND_OT_export_video(bpy.types.Operator):
    """Render the Video Sequencer to an MP4 (H.264 video, AAC audio) without changing the render settings"""

    bl_idname = "bend.export_video"
    bl_label = "Export Bent Video"
    bl_options = {"REGISTER"}

    filepath: StringProperty(
        name="File Path",
        description="The MP4 to write; empty: //bend/<scene name>.mp4 next to the .blend file",
        subtype="FILE_PATH",
    )
    filter_glob: StringProperty(default="*.mp4", options={"HIDDEN"})

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return compat.sequencer_scene(context) is not None

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if context.window is None:
            return self.execute(context)
        if not self.filepath:
            self.filepath = default_filepath(compat.sequencer_scene(context))
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene = compat.sequencer_scene(context)
        problem = check_scene(scene)
        if problem:
            self.report({"ERROR"}, problem)
            return {"CANCELLED"}

        path = resolve_filepath(scene, self.filepath)
        problem = prepare_folder(path)
        if problem:
            self.report({"ERROR"}, f"Cannot write {path}: {problem}. Choose another File Path (filepath)")
            return {"CANCELLED"}

        with video_settings(scene, str(path)):
            # The path Blender will write, which is ours unless a frame-number pattern (#) was given.
            written = Path(scene.render.frame_path(frame=scene.frame_start))
            try:
                bpy.ops.render.render(animation=True, scene=scene.name)
            except RuntimeError as exc:
                self.report({"ERROR"}, f"Rendering the video failed: {exc}")
                return {"CANCELLED"}

        if not written.is_file():
            self.report({"ERROR"}, f"Blender reported no error, but {written} was not written")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Exported {written}")
        return {"FINISHED"}


def draw_menu(self: bpy.types.Menu, context: bpy.types.Context) -> None:
    self.layout.separator()
    self.layout.operator(BEND_OT_export_video.bl_idname, icon="FILE_MOVIE")


CLASSES = (BEND_OT_export_video,)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()
    bpy.types.TOPBAR_MT_render.append(draw_menu)


def unregister() -> None:
    bpy.types.TOPBAR_MT_render.remove(draw_menu)
    _unregister_classes()
