"""``bend.bake_audio``: the song's audio features as F-curves on ``scene.bend.audio``, one LINEAR key per frame;
``bend.add_music_markers``: timeline markers at the song's sections, bars or beats.

The bake keeps the song's tempo, beats, downbeats and section starts on the scene, with a fingerprint of the
sound and the settings they came from, so the markers reuse them until either changes (and survive a reload).
"""

import hashlib
import json
import time
from collections import Counter
from typing import TYPE_CHECKING

import bpy

from ..blender import audio_features, compat
from ..blender.animation import write_keys
from ..blender.audio_source import AudioSourceError, SceneAudio, find_strip, mixdown_audio, scene_fps, strip_audio
from ..blender.dependencies import missing_bake_modules, missing_message
from ..engine.catalog import FEATURE_NAMES, MAX_TEMPO_BPM, MIN_TEMPO_BPM
from ..engine.errors import AudioError

# No "from __future__ import annotations": Blender reads the operator's property annotations as objects.
if TYPE_CHECKING:  # the engine's analysis imports numpy: registration must work on a Blender without it
    from ..engine.music import MusicAnalysis

MARKER_KINDS = (
    ("SECTIONS", "Sections", "A marker where each section of the song starts, the first at the scene's start"),
    ("BARS", "Bars", "A marker on the first beat of every bar"),
    ("BEATS", "Beats", "A marker on every beat"),
)
# Marker names: "section 1", "bar 5", "beat 17"; numbered from 1 as a musician counts.
_MARKER_NAMES = {"SECTIONS": "section", "BARS": "bar", "BEATS": "beat"}


def _read_audio(scene: bpy.types.Scene) -> SceneAudio:
    settings = scene.bend.audio_bake
    if settings.source == "MIXDOWN":
        return mixdown_audio(scene)
    return strip_audio(scene, find_strip(scene, settings.strip))


def _analysis_settings(settings: bpy.types.PropertyGroup) -> dict[str, object]:
    """The bake settings that decide the analysis, as FeatureSettings keywords; checks the tempo's range."""
    tempo = settings.tempo
    if 0.0 < tempo < MIN_TEMPO_BPM:  # the field's own bounds stop above MAX_TEMPO_BPM
        raise AudioSourceError(
            f"Tempo must be 0 (detect it) or {MIN_TEMPO_BPM:g} to {MAX_TEMPO_BPM:g} BPM, got {tempo:g}"
        )
    return {
        "window_ms": settings.window_ms or None,
        "align": "center" if settings.centered else "start",
        "spectrum_window": settings.spectrum_window,
        "tempo_bpm": tempo or None,
        "beats_per_bar": settings.beats_per_bar,
        "beat_decay_s": settings.beat_decay,
    }


def _fingerprint(audio: SceneAudio, keywords: dict[str, object]) -> str:
    """Changes when the sound the analysis hears or its settings change (a moved strip, a new meter)."""
    import numpy as np

    samples = np.ascontiguousarray(audio.samples)
    # Beat Decay shapes only the pulse curve, not where beats and sections are.
    keywords = {key: value for key, value in keywords.items() if key != "beat_decay_s"}
    digest = hashlib.blake2b(digest_size=16)
    digest.update(
        json.dumps([keywords, audio.rate, audio.fps, audio.n_frames, samples.shape, str(samples.dtype)]).encode()
    )
    digest.update(memoryview(samples).cast("B"))
    return digest.hexdigest()


def _analyze(audio: SceneAudio, keywords: dict[str, object]) -> "MusicAnalysis":
    try:
        from ..engine.features import FeatureSettings, analyze
    except ImportError as exc:
        raise AudioSourceError(missing_message([exc.name or str(exc)])) from exc
    return analyze(audio.samples, audio.rate, audio.fps, n_frames=audio.n_frames, settings=FeatureSettings(**keywords))


def _events(analysis: "MusicAnalysis") -> dict[str, list[float]]:
    """Seconds from the scene's first frame; sections start with the song itself."""
    return {
        "SECTIONS": [0.0, *map(float, analysis.section_times_s)],
        "BARS": [float(t) for t in analysis.downbeat_times_s],
        "BEATS": [float(t) for t in analysis.beat_times_s],
    }


def bake(scene: bpy.types.Scene) -> tuple[str, list[str]]:
    """Analyse the chosen sound and (re)write every feature's F-curve; returns what was baked and any warnings.

    Everything that can fail happens before the first F-curve is written, so a refused bake leaves the previous
    one as it was.
    """
    settings = scene.bend.audio_bake
    keywords = _analysis_settings(settings)
    try:
        from ..engine.postprocess import postprocess
    except ImportError as exc:
        raise AudioSourceError(missing_message([exc.name or str(exc)])) from exc
    audio = _read_audio(scene)
    analysis = _analyze(audio, keywords)
    shaping = {
        "attack_s": settings.attack,
        "release_s": settings.release,
        "median_s": settings.median,
        "gate": settings.gate,
    }
    features = analysis.features
    values = postprocess(features, audio.fps, normalization=settings.normalization, **shaping)
    stored = json.dumps({"fingerprint": _fingerprint(audio, keywords), **_events(analysis)})
    frames = range(scene.frame_start, scene.frame_end + 1)
    audio_features.ensure(scene)
    for name in FEATURE_NAMES:
        write_keys(scene, audio_features.path(name), frames, values[name])
    settings.baked_tempo = analysis.tempo_bpm
    settings.baked_analysis = stored
    tempo = f"{analysis.tempo_bpm:.1f} BPM" if analysis.tempo_bpm else "no beat found"
    message = f"Baked {len(FEATURE_NAMES)} features over {audio.n_frames} frames from {audio.description} ({tempo})"
    return message, audio.warnings


def music_events(scene: bpy.types.Scene) -> tuple[dict[str, list[float]], bool, list[str]]:
    """Section, bar and beat times: the last bake's while the sound and settings are the same, else analysed now.

    Returns the times, whether they are the bake's, and the audio's warnings.
    """
    settings = scene.bend.audio_bake
    keywords = _analysis_settings(settings)
    audio = _read_audio(scene)
    try:
        stored = json.loads(settings.baked_analysis) if settings.baked_analysis else {}
        if stored.get("fingerprint") == _fingerprint(audio, keywords):
            return {kind: [float(t) for t in stored[kind]] for kind in _MARKER_NAMES}, True, audio.warnings
    except (ValueError, TypeError, KeyError, AttributeError):  # hand-edited: analyse again rather than trust it
        pass
    return _events(_analyze(audio, keywords)), False, audio.warnings


def marker_frames(scene: bpy.types.Scene, kind: str, times_s: list[float]) -> list[tuple[str, int]]:
    """``(name, frame)`` for each time that falls in the scene's frame range, numbered in the song's order."""
    from ..engine.music import MusicAnalysis

    frames = scene.frame_start + MusicAnalysis.frames(times_s, scene_fps(scene))
    word = _MARKER_NAMES[kind]
    named = [(f"{word} {k}", int(frame)) for k, frame in enumerate(frames.tolist(), start=1)]
    return [(name, frame) for name, frame in named if scene.frame_start <= frame <= scene.frame_end]


def replace_music_markers(scene: bpy.types.Scene, named_frames: list[tuple[str, int]]) -> int:
    """Write these markers and remove the ones written last time; returns how many were removed.

    A marker counts as ours only while it keeps the name and frame it was written with: one the artist made,
    renamed or moved is theirs and stays. Each written marker removes at most one, so an artist's marker that
    happens to share a name and frame with one of ours survives too.
    """
    settings = scene.bend.audio_bake
    try:
        written = Counter((str(name), int(frame)) for name, frame in json.loads(settings.music_markers or "[]"))
    except (ValueError, TypeError):  # hand-edited: remove nothing rather than guess
        written = Counter()
    markers = scene.timeline_markers
    ours = []
    for marker in markers:
        key = (marker.name, marker.frame)
        if written[key] > 0:
            written[key] -= 1
            ours.append(marker)
    for marker in ours:
        markers.remove(marker)
    for name, frame in named_frames:
        markers.new(name, frame=frame)
    settings.music_markers = json.dumps(named_frames)
    return len(ours)


class BEND_OT_bake_audio(bpy.types.Operator):
    """Analyse the song and write its audio features as F-curves, one key per frame, replacing an earlier bake"""

    bl_idname = "bend.bake_audio"
    bl_label = "Bake Audio"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not _can_analyse(self):
            return {"CANCELLED"}
        started = time.perf_counter()
        try:
            message, warnings = bake(compat.sequencer_scene(context))
        except AudioSourceError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        except AudioError as exc:
            self.report({"ERROR"}, f"Audio analysis failed: {exc}")
            return {"CANCELLED"}
        for warning in warnings:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, f"{message} in {time.perf_counter() - started:.2f} s")
        return {"FINISHED"}


class BEND_OT_add_music_markers(bpy.types.Operator):
    """Add timeline markers at the song's sections, bars or beats, replacing the ones this wrote before (never
    your own), so Crossfade at Markers can change prompts with the music"""

    bl_idname = "bend.add_music_markers"
    bl_label = "Add Music Markers"
    bl_options = {"REGISTER", "UNDO"}

    kind: bpy.props.EnumProperty(name="At", items=MARKER_KINDS, default="SECTIONS")

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not _can_analyse(self):
            return {"CANCELLED"}
        scene = compat.sequencer_scene(context)
        try:
            events, reused, warnings = music_events(scene)
            named_frames = marker_frames(scene, self.kind, events[self.kind])
        except AudioSourceError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        except AudioError as exc:
            self.report({"ERROR"}, f"Audio analysis failed: {exc}")
            return {"CANCELLED"}
        if not named_frames:
            self.report(
                {"ERROR"},
                f"Found no {_MARKER_NAMES[self.kind]}s in the sound within the scene's frames: set Tempo in the "
                "Audio panel if the beat is there",
            )
            return {"CANCELLED"}
        removed = replace_music_markers(scene, named_frames)
        for warning in warnings:
            self.report({"WARNING"}, warning)
        source = "the last bake" if reused else "a new analysis (the sound or its settings changed since the bake)"
        self.report(
            {"INFO"},
            f"Added {len(named_frames)} {_MARKER_NAMES[self.kind]} markers from {source}, replacing {removed}",
        )
        return {"FINISHED"}


def _can_analyse(operator: bpy.types.Operator) -> bool:
    """Report why this Blender cannot analyse sound, if it cannot."""
    missing = missing_bake_modules()
    if missing:
        operator.report({"ERROR"}, missing_message(missing))
        return False
    reason = compat.audio_unavailable()
    if reason:
        operator.report({"ERROR"}, reason[0].upper() + reason[1:])
        return False
    return True


CLASSES = (BEND_OT_bake_audio, BEND_OT_add_music_markers)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
