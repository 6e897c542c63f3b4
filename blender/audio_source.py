"""The sound a bake analyses, as samples aligned to the scene's frames.

The engine wants float samples whose time 0 is the scene's first frame. For a sound strip, that means placing the
strip's sound where the strip sits on the timeline, as Blender's own mix does: its start, its hold offset and
sound offset (where in the file it starts), its trim (only the visible part plays) and its volume. For the
mixdown, Blender renders everything the scene plays over the frame range to a WAV, which starts at the first
frame by construction.

A bake that would analyse nothing (an empty file, a strip outside the frame range, a silent mixdown) or could
not read a sound is refused with a message naming the strip, before any F-curve is touched.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import bpy

from . import compat

if TYPE_CHECKING:  # numpy is imported where samples are made: registration must work on a Blender without it
    import numpy as np


class AudioSourceError(Exception):
    """The chosen sound cannot be analysed; the message says what to change."""


@dataclass
class SceneAudio:
    samples: np.ndarray  # (n, channels) float32, time 0 = the scene's first frame
    rate: int
    fps: float
    n_frames: int
    description: str
    warnings: list[str] = field(default_factory=list)  # for the artist: baked, but perhaps not what was meant


def scene_fps(scene: bpy.types.Scene) -> float:
    return scene.render.fps / scene.render.fps_base


def sound_strips(scene: bpy.types.Scene) -> list[bpy.types.Strip]:
    return sorted((s for s in compat.all_strips(scene) if s.type == "SOUND"), key=lambda s: (s.channel, s.name))


def find_strip(scene: bpy.types.Scene, name: str) -> bpy.types.Strip:
    strips = sound_strips(scene)
    if name:
        for strip in strips:
            if strip.name == name:
                return strip
        raise AudioSourceError(f"No sound strip named {name!r}: pick one in Bend > Audio > Strip")
    if not strips:
        raise AudioSourceError(
            "No sound strip: add your song to the Sequencer (Add > Sound), "
            "or set Bend > Audio > Source to Scene Mixdown"
        )
    return strips[0]


def is_muted(scene: bpy.types.Scene, strip: bpy.types.Strip) -> bool:
    """Whether the strip is silent in the scene's mix: muted itself, or on a muted channel."""
    editor = scene.sequence_editor
    top_level = editor is not None and compat.strips(scene).get(strip.name) == strip  # a meta has its own channels
    channel_muted = top_level and 0 <= strip.channel < len(editor.channels) and editor.channels[strip.channel].mute
    return bool(strip.mute or channel_muted)


def _frames_text(first: float, end: float) -> str:
    return f"{round(first)} to {round(end) - 1}"


def strip_audio(scene: bpy.types.Scene, strip: bpy.types.Strip) -> SceneAudio:
    """The strip's sound as it plays over the scene's frame range: placed, trimmed and at its volume."""
    if strip.sound is None:
        raise AudioSourceError(f"Sound strip {strip.name!r} has no sound data")
    import numpy as np  # not at the top: registration must work on a Blender without numpy

    path = bpy.path.abspath(strip.sound.filepath, library=strip.sound.library)
    try:
        samples, rate = compat.decode_sound(path)
    except Exception as exc:  # aud raises plain Exceptions for unreadable files
        raise AudioSourceError(f"Could not read the sound of strip {strip.name!r} ({path}): {exc}") from exc
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    if len(samples) == 0:
        raise AudioSourceError(f"Sound strip {strip.name!r} is empty: {path} holds no audio")
    fps = scene_fps(scene)
    n_frames = scene.frame_end - scene.frame_start + 1
    scene_frames = _frames_text(scene.frame_start, scene.frame_end + 1)
    if compat.strip_duration(strip) <= 0:
        raise AudioSourceError(
            f"Sound strip {strip.name!r} has no length left after trimming: "
            "pick another strip in Bend > Audio > Strip, or undo the trim"
        )
    timeline = np.zeros((math.ceil(n_frames * rate / fps), samples.shape[1]), dtype=np.float32)

    def to_sample(frame: float) -> int:
        return round((frame - scene.frame_start) * rate / fps)

    # The sound's first sample plays at the strip's start, less the hold offset (frames of the sound cut off the
    # front), plus the sound offset (seconds it is delayed). Only the frames between its handles are heard.
    left, right = compat.strip_left_handle(strip), compat.strip_right_handle(strip)
    start = compat.strip_content_start(strip) - compat.strip_trim_start(strip)
    origin = to_sample(start + compat.sound_offset_seconds(strip) * fps)
    first = max(to_sample(left), origin, 0)
    last = min(to_sample(right), len(timeline), origin + len(samples))
    if last <= first:
        raise AudioSourceError(
            f"Sound strip {strip.name!r} (frames {_frames_text(left, right)}) "
            f"is not heard in the scene's frames {scene_frames}: move it, or change the scene's frame range"
        )
    timeline[first:last] = samples[first - origin : last - origin] * strip.volume
    audio = SceneAudio(timeline, rate, fps, n_frames, f"strip {strip.name!r}")
    if is_muted(scene, strip):
        audio.warnings.append(
            f"Sound strip {strip.name!r} is muted: baked anyway, though it is silent in the mix "
            "and the exported video. Unmute it, or pick another in Bend > Audio > Strip"
        )
    return audio


def mixdown_audio(scene: bpy.types.Scene) -> SceneAudio:
    """Everything the scene plays over its frame range, mixed by Blender (muted strips stay silent)."""
    import numpy as np  # not at the top: registration must work on a Blender without numpy

    fps = scene_fps(scene)
    n_frames = scene.frame_end - scene.frame_start + 1
    heard = [
        s
        for s in sound_strips(scene)
        if not is_muted(scene, s)
        and compat.strip_left_handle(s) <= scene.frame_end
        and compat.strip_right_handle(s) > scene.frame_start
    ]
    if not heard:
        frames = _frames_text(scene.frame_start, scene.frame_end + 1)
        raise AudioSourceError(
            f"The scene plays no sound in frames {frames}: add or unmute a sound strip there, "
            "or set Bend > Audio > Source to Sound Strip"
        )
    for strip in heard:  # Blender's mix plays an unreadable file as silence, without a word
        path = bpy.path.abspath(strip.sound.filepath, library=strip.sound.library) if strip.sound else ""
        try:
            compat.probe_sound(path)
        except Exception as exc:
            raise AudioSourceError(f"Could not read the sound of strip {strip.name!r} ({path}): {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="bend-mixdown-") as folder:
        path = os.path.join(folder, "mixdown.wav")
        with bpy.context.temp_override(scene=scene):
            result = bpy.ops.sound.mixdown(
                filepath=path, container="WAV", codec="PCM", format="F32", check_existing=False
            )
        if "FINISHED" not in result or not os.path.exists(path):
            raise AudioSourceError("Blender could not mix down the scene's sound")
        samples, rate = compat.decode_sound(path)
    return SceneAudio(np.asarray(samples, dtype=np.float32), rate, fps, n_frames, "the scene mixdown")
