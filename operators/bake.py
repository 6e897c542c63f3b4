"""``bend.bake_audio``: the song's audio features as F-curves on ``scene.bend.audio``, one LINEAR key per frame."""

import time

import bpy

from .. import compat
from ..animation import write_keys
from ..audio_source import AudioSourceError, find_strip, mixdown_audio, strip_audio
from ..engine.catalog import FEATURE_NAMES
from ..engine.errors import AudioError


def bake(scene: bpy.types.Scene) -> tuple[str, list[str]]:
    """Analyse the chosen sound and (re)write every feature's F-curve; returns what was baked and any warnings.

    Everything that can fail happens before the first F-curve is written, so a refused bake leaves the previous
    one as it was.
    """
    settings = scene.bend.audio_bake
    try:
        from ..engine.features import FeatureSettings, compute_features
        from ..engine.postprocess import postprocess
    except ImportError as exc:
        raise AudioSourceError(
            f"The engine's dependencies are missing ({exc.name}): "
            "install them in Preferences > Extensions > Diffusion Bender"
        ) from exc
    if settings.source == "MIXDOWN":
        audio = mixdown_audio(scene)
    else:
        strip = find_strip(scene, settings.strip)
        audio = strip_audio(scene, strip)
    feature_settings = FeatureSettings(
        window_ms=settings.window_ms or None,
        align="center" if settings.centered else "start",
        spectrum_window=settings.spectrum_window,
    )
    values = compute_features(audio.samples, audio.rate, audio.fps, n_frames=audio.n_frames, settings=feature_settings)
    values = postprocess(
        values, audio.fps, normalization=settings.normalization, attack_s=settings.attack, release_s=settings.release
    )
    frames = range(scene.frame_start, scene.frame_end + 1)
    for name in FEATURE_NAMES:
        write_keys(scene, f"bend.audio.{name}", frames, values[name])
    return f"Baked {len(FEATURE_NAMES)} features over {audio.n_frames} frames from {audio.description}", audio.warnings


class BEND_OT_bake_audio(bpy.types.Operator):
    """Analyse the song and write its audio features as F-curves, one key per frame, replacing an earlier bake"""

    bl_idname = "bend.bake_audio"
    bl_label = "Bake Audio"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        if not compat.has_audio():
            self.report({"ERROR"}, "This Blender was built without audio support (Audaspace), so it cannot read sound")
            return {"CANCELLED"}
        started = time.perf_counter()
        try:
            message, warnings = bake(context.scene)
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


CLASSES = (BEND_OT_bake_audio,)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
