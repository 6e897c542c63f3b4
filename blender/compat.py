"""Every difference between the Blender versions we support (4.2 LTS, 4.5 LTS, 5.0, 5.2 LTS), in one place.

| | 4.2 | 4.5 | 5.0 | 5.2 |
|---|---|---|---|---|
| VSE strips | ``sequences`` | ``strips`` (and deprecated ``sequences``) | ``strips`` only | same |
| F-curves of an action | ``action.fcurves`` | slotted actions (``fcurves`` still works) | channelbags only | same |
| FFmpeg output | ``file_format = 'FFMPEG'`` | same | ``media_type = 'VIDEO'`` first | same |
| ``aud`` in the PyPI bpy module | absent | present | present | (real binary: present) |
| ``//`` paths in path properties | always allowed | need ``PATH_SUPPORTS_BLEND_RELATIVE`` | same | same |
| a sound strip's ``sound_offset`` | absent | present | present | present |
| strip timing | old names (below) | same | same | new names (5.1+) |
| the Sequencer's scene (``sequencer_scene``) | the window's | same | the workspace's, else the window's | same |

Strip timing, old name → new name (5.1 deprecates the old ones, removal planned in 6.0): ``frame_start`` →
``content_start``, ``frame_final_start`` → ``left_handle``, ``frame_final_end`` → ``right_handle``,
``frame_final_duration`` → ``duration``, ``animation_offset_start`` → ``content_trim_start``.

Nothing else in the extension checks a version or probes for one of these attributes.
"""

from __future__ import annotations

from collections.abc import Iterable

import bpy

NO_AUDASPACE = "this Blender was built without audio support (Audaspace), so it cannot read sound"
AUD_NEEDS_NUMPY = (
    "Blender's audio module needs numpy, which this Blender lacks: Install Dependencies in Preferences > Add-ons > "
    "Diffusion Bender"
)


# Path properties that accept Blender-relative ``//`` paths; 4.5 warns without the option, 4.2 rejects it.
BLEND_RELATIVE_PATH: set[str] = (
    {"PATH_SUPPORTS_BLEND_RELATIVE"}
    if "is_path_supports_blend_relative" in bpy.types.Property.bl_rna.properties
    else set()
)


def _aud():
    """Blender's ``aud`` module, imported when first needed, or None.

    Not at registration: Debian's ``aud`` imports numpy, which a Blender without numpy gets only from Install
    Dependencies, after the extension registered. A failed import leaves nothing in ``sys.modules``, so the next
    call tries again. The PyPI bpy module of 4.2 is built without Audaspace: no ``aud`` at all.
    """
    try:
        import aud
    except ImportError:
        return None
    return aud


def audio_unavailable() -> str | None:
    """Why this Blender cannot decode sound (one line naming the fix), or None when it can."""
    try:
        import aud  # noqa: F401
    except ImportError as exc:
        return why_no_aud(exc)
    return None


def why_no_aud(exc: ImportError) -> str:
    """What an ImportError of ``aud`` means for the artist: numpy missing (fixable), or no Audaspace at all."""
    return AUD_NEEDS_NUMPY if "numpy" in str(exc) or (exc.name or "").startswith("numpy") else NO_AUDASPACE


def has_audio() -> bool:
    """Whether this Blender can decode sound and hold sound strips."""
    return _aud() is not None


def strips(scene: bpy.types.Scene) -> bpy.types.bpy_prop_collection:
    """The top-level strips of the scene's sequence editor (created if needed)."""
    editor = scene.sequence_editor or scene.sequence_editor_create()
    return editor.strips if hasattr(editor, "strips") else editor.sequences


def sequencer_scene(context: bpy.types.Context) -> bpy.types.Scene | None:
    """The scene the extension works on: the one whose strips the Sequencer shows.

    Blender 5 shows the workspace's ``sequencer_scene``, which can differ from the window's scene; its own Sequencer
    panels, operators and Render menu read ``context.sequencer_scene``. When the workspace has none (a file made in
    background mode, a script) or before 5.0, that is the window's scene.
    """
    return getattr(context, "sequencer_scene", None) or context.scene


def show_in_sequencer(scene: bpy.types.Scene, replace: bool = False) -> int:
    """Make ``scene`` the Sequencer's scene in every workspace that has none (every workspace, with ``replace``);
    returns how many changed.

    Blender 5 shows a workspace's ``sequencer_scene`` in the Sequencer, not the window's scene, and a file made in
    background mode has none: opened in Blender, its Sequencer would be empty. Before 5.0 the Sequencer shows the
    window's scene, and there is nothing to set.
    """
    changed = 0
    for workspace in bpy.data.workspaces:
        if (
            hasattr(workspace, "sequencer_scene")
            and workspace.sequencer_scene != scene
            and (replace or workspace.sequencer_scene is None)
        ):
            workspace.sequencer_scene = scene
            changed += 1
    return changed


def all_strips(scene: bpy.types.Scene) -> Iterable[bpy.types.Strip]:
    """Every strip, including those inside meta strips; none when the scene has no sequence editor."""
    editor = scene.sequence_editor
    if editor is None:
        return ()
    return editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all


def action_fcurves(id_data: bpy.types.ID) -> list[bpy.types.FCurve]:
    """The F-curves of the ID's action: the channelbag of its slot (4.4+), or the legacy list (4.2)."""
    return [fcurve for owner in _fcurve_owners(id_data) for fcurve in owner]


def remove_fcurve(id_data: bpy.types.ID, fcurve: bpy.types.FCurve) -> None:
    """Delete a keyframed F-curve from whichever collection holds it (channelbag or legacy action)."""
    for owner in _fcurve_owners(id_data):
        if any(f == fcurve for f in owner):
            owner.remove(fcurve)
            return


def _fcurve_owners(id_data: bpy.types.ID) -> list[bpy.types.bpy_prop_collection]:
    anim = id_data.animation_data
    action = anim.action if anim else None
    if action is None:
        return []
    layers = getattr(action, "layers", None)
    if layers:
        slot = getattr(anim, "action_slot", None)
        bags = [strip.channelbag(slot) for layer in layers for strip in layer.strips] if slot is not None else []
        return [bag.fcurves for bag in bags if bag is not None]
    return [action.fcurves]


def find_fcurve(id_data: bpy.types.ID, data_path: str, index: int = 0) -> bpy.types.FCurve | None:
    for fcurve in action_fcurves(id_data):
        if fcurve.data_path == data_path and fcurve.array_index == index:
            return fcurve
    return None


def new_fcurve(id_data: bpy.types.ID, data_path: str, index: int = 0) -> bpy.types.FCurve:
    """An empty keyframed F-curve on the ID at ``data_path`` (component ``index``), made the same way on every version.

    ``keyframe_insert`` creates what the version needs (a legacy action in 4.2; an action, slot, layer, keyframe
    strip and channelbag in 4.4+); its one key is then cleared. An existing curve there is emptied and reused.
    """
    array = hasattr(id_data.path_resolve(data_path), "__len__")
    fcurve = find_fcurve(id_data, data_path, index)
    if fcurve is None:
        id_data.keyframe_insert(data_path, index=index if array else -1, frame=0.0)
        fcurve = find_fcurve(id_data, data_path, index)
    if fcurve is None:
        raise RuntimeError(f"could not create an F-curve for {data_path!r}[{index}] on {id_data.name!r}")
    fcurve.keyframe_points.clear()
    return fcurve


def set_video_output(render: bpy.types.RenderSettings) -> None:
    """Switch the output to FFmpeg video; 5.0 needs the media type chosen first."""
    settings = render.image_settings
    if hasattr(settings, "media_type"):
        settings.media_type = "VIDEO"
    settings.file_format = "FFMPEG"


def video_output_state(render: bpy.types.RenderSettings) -> dict[str, object]:
    """What set_video_output changes, to put back afterwards."""
    settings = render.image_settings
    state: dict[str, object] = {"file_format": settings.file_format}
    if hasattr(settings, "media_type"):
        state["media_type"] = settings.media_type
    return state


def restore_video_output(render: bpy.types.RenderSettings, state: dict[str, object]) -> None:
    settings = render.image_settings
    if "media_type" in state:
        settings.media_type = state["media_type"]
    settings.file_format = state["file_format"]


# Blender 5.1 renamed the strip timing properties; the old names still work there but raise DeprecationWarning
# (removal planned in 6.0). Looked up in the type's RNA, never with hasattr: reading a deprecated name warns.
_STRIP_TYPE = getattr(bpy.types, "Strip", None) or bpy.types.Sequence  # 4.2 calls strips Sequences
_HANDLES = "left_handle" in _STRIP_TYPE.bl_rna.properties


def strip_content_start(strip: bpy.types.Strip) -> float:
    """The timeline frame where the strip's content (its first image, or the sound's start) sits, before trims."""
    return float(strip.content_start if _HANDLES else strip.frame_start)


def set_strip_content_start(strip: bpy.types.Strip, frame: float) -> None:
    """Move the whole strip so its content starts at ``frame``."""
    if _HANDLES:
        strip.content_start = frame
    else:
        strip.frame_start = frame


def strip_left_handle(strip: bpy.types.Strip) -> int:
    """The first frame the strip plays (after trimming its start)."""
    return int(strip.left_handle if _HANDLES else strip.frame_final_start)


def strip_right_handle(strip: bpy.types.Strip) -> int:
    """The first frame after the strip (it plays up to, not including, this frame)."""
    return int(strip.right_handle if _HANDLES else strip.frame_final_end)


def strip_duration(strip: bpy.types.Strip) -> int:
    """How many frames the strip plays, from its left handle to its right handle."""
    return int(strip.duration if _HANDLES else strip.frame_final_duration)


def strip_trim_start(strip: bpy.types.Strip) -> int:
    """Frames cut off the front of the source (the hold offset): the content is that much shorter at its start."""
    return int(strip.content_trim_start if _HANDLES else strip.animation_offset_start)


def sound_offset_seconds(strip: bpy.types.Strip) -> float:
    """How much later than the strip's start its sound plays, in seconds (4.5+; 4.2 has no such setting)."""
    return float(getattr(strip, "sound_offset", 0.0))


def probe_sound(path: str) -> tuple[int, int]:
    """The rate and channel count of a sound file, without decoding it; raises if Blender cannot read it."""
    aud = _aud()
    if aud is None:
        raise RuntimeError(audio_unavailable() or NO_AUDASPACE)
    # Reading the specs opens the file and raises a Python exception when that fails. Calling data() on a Sound
    # that was never opened this way aborts the whole process instead (an uncaught C++ exception in aud), which
    # is why decode_sound reads the specs first too.
    rate, channels = aud.Sound(path).specs
    return int(rate), int(channels)


def decode_sound(path: str) -> tuple[object, int]:
    """Float32 samples ``(n, channels)`` and the rate of any file Blender can play (video files included)."""
    aud = _aud()
    if aud is None:
        raise RuntimeError(audio_unavailable() or NO_AUDASPACE)
    sound = aud.Sound(path)
    rate = int(sound.specs[0])  # before data(): see probe_sound
    return sound.data(), rate
