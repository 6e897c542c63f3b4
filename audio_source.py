"""The sound a bake analyses, as samples aligned to the scene's frames.

The engine wants float samples whose time 0 is the scene's first frame. For a sound strip, that means placing the
strip's sound where the strip sits on the timeline: its start, its trim (only the visible part plays) and its
volume. For the mixdown, Blender renders everything the scene plays over the frame range to a WAV, which starts
at the first frame by construction.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass

import bpy
import numpy as np

from . import compat


class AudioSourceError(Exception):
    """The chosen sound cannot be analysed; the message says what to change."""


@dataclass
class SceneAudio:
    samples: np.ndarray  # (n, channels) float32, time 0 = the scene's first frame
    rate: int
    fps: float
    n_frames: int
    description: str


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
        raise AudioSourceError("No sound strip: add your song to the Sequencer (Add > Sound), "
                               "or set Bend > Audio > Source to Scene Mixdown")
    return strips[0]


def strip_audio(scene: bpy.types.Scene, strip: bpy.types.Strip) -> SceneAudio:
    """The strip's sound as it plays over the scene's frame range: placed, trimmed and at its volume."""
    if strip.sound is None:
        raise AudioSourceError(f"Sound strip {strip.name!r} has no sound data")
    path = bpy.path.abspath(strip.sound.filepath, library=strip.sound.library)
    try:
        samples, rate = compat.decode_sound(path)
    except Exception as exc:  # aud raises plain Exceptions for unreadable files
        raise AudioSourceError(f"Could not read the sound of strip {strip.name!r} ({path}): {exc}") from exc
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    fps = scene_fps(scene)
    n_frames = scene.frame_end - scene.frame_start + 1
    timeline = np.zeros((math.ceil(n_frames * rate / fps), samples.shape[1]), dtype=np.float32)

    def to_sample(frame: float) -> int:
        return round((frame - scene.frame_start) * rate / fps)

    # The sound's first sample plays at the strip's frame_start; only frame_final_start..end is heard.
    origin = to_sample(strip.frame_start)
    first = max(to_sample(strip.frame_final_start), 0)
    last = min(to_sample(strip.frame_final_end), len(timeline), origin + len(samples))
    if last > first:
        timeline[first:last] = samples[first - origin : last - origin] * strip.volume
    return SceneAudio(timeline, rate, fps, n_frames, f"strip {strip.name!r}")


def mixdown_audio(scene: bpy.types.Scene) -> SceneAudio:
    """Everything the scene plays over its frame range, mixed by Blender (muted strips stay silent)."""
    fps = scene_fps(scene)
    n_frames = scene.frame_end - scene.frame_start + 1
    with tempfile.TemporaryDirectory(prefix="bend-mixdown-") as folder:
        path = os.path.join(folder, "mixdown.wav")
        with bpy.context.temp_override(scene=scene):
            result = bpy.ops.sound.mixdown(filepath=path, container="WAV", codec="PCM", format="F32",
                                           check_existing=False)
        if "FINISHED" not in result or not os.path.exists(path):
            raise AudioSourceError("Blender could not mix down the scene's sound")
        samples, rate = compat.decode_sound(path)
    return SceneAudio(np.asarray(samples, dtype=np.float32), rate, fps, n_frames, "the scene mixdown")
