"""Baking: the strip's start, trim and volume are honoured, the mixdown hears every strip, a re-bake replaces."""

from __future__ import annotations

import blender_env
import bpy
import numpy as np
import pytest
from helpers import write_song

pytestmark = pytest.mark.skipif(
    not blender_env.extension().blender.compat.has_audio(), reason="the PyPI bpy 4.2 module is built without Audaspace"
)


def _rms(scene) -> np.ndarray:
    ext = blender_env.extension()
    fcurve = ext.blender.compat.find_fcurve(scene, ext.blender.audio_features.path("rms"))
    return np.array([fcurve.evaluate(f) for f in range(scene.frame_start, scene.frame_end + 1)])


def _raw(scene) -> None:
    scene.bend.audio_bake.normalization = "none"


def test_bake_writes_one_linear_key_per_frame_for_every_feature(scene, tmp_path):
    ext = blender_env.extension()
    features = ext.blender.audio_features
    ext.blender.compat.strips(scene).new_sound("song", str(write_song(tmp_path / "a.wav")), 1, 1)
    assert not features.present(scene)
    assert bpy.ops.bend.bake_audio() == {"FINISHED"}
    assert features.present(scene)
    for name, spec in ext.engine.catalog.FEATURES.items():
        # A custom property of the Scene each, keyed at the path Blender gives it.
        assert features.path(name) == f'["bend_{name}"]'
        fcurve = ext.blender.compat.find_fcurve(scene, features.path(name))
        assert [k.co[0] for k in fcurve.keyframe_points] == list(range(1, 13)), name
        assert all(k.interpolation == "LINEAR" for k in fcurve.keyframe_points)
        values = [k.co[1] for k in fcurve.keyframe_points]
        assert all(np.isfinite(values)) and min(values) >= 0.0, name
        if spec.normalize:
            assert max(values) <= 1.0, name  # min-max by default
    # Fixed-range features keep their raw values: the song's 110 Hz bass is an A, pitch class 9.
    assert [k.co[1] for k in ext.blender.compat.find_fcurve(scene, features.path("pitch_class")).keyframe_points] == [
        9.0
    ] * 12
    assert bpy.ops.bend.bake_audio() == {"FINISHED"}  # a re-bake replaces, it does not add
    assert len(ext.blender.compat.find_fcurve(scene, features.path("rms")).keyframe_points) == 12
    scene.frame_set(4)
    rms = ext.blender.compat.find_fcurve(scene, features.path("rms")).evaluate(4)
    assert 0.0 <= features.value(scene, "rms") <= 1.0 and features.value(scene, "rms") == pytest.approx(rms)


def test_strip_start_trim_and_volume(scene, tmp_path):
    compat = blender_env.extension().blender.compat
    _raw(scene)
    song = write_song(tmp_path / "a.wav", seconds=2.0)
    strip = compat.strips(scene).new_sound("song", str(song), 1, 1)
    bpy.ops.bend.bake_audio()
    reference = _rms(scene)
    assert reference.min() > 0.05

    strip.frame_start = 4  # the song starts three frames later
    bpy.ops.bend.bake_audio()
    moved = _rms(scene)
    assert moved[:3] == pytest.approx(0.0, abs=1e-6)
    assert moved[3:] == pytest.approx(reference[:9], rel=1e-3)

    strip.frame_start = 1
    strip.frame_offset_start = 6  # trimmed: the first six frames are not heard
    bpy.ops.bend.bake_audio()
    trimmed = _rms(scene)
    assert trimmed[:6] == pytest.approx(0.0, abs=1e-6) and trimmed[6:] == pytest.approx(reference[6:], rel=1e-3)

    strip.frame_offset_start = 0
    strip.volume = 0.5
    bpy.ops.bend.bake_audio()
    assert _rms(scene) == pytest.approx(0.5 * reference, rel=1e-3)


def test_mixdown_hears_overlapping_strips(scene, tmp_path):
    compat = blender_env.extension().blender.compat
    _raw(scene)
    scene.bend.audio_bake.source = "MIXDOWN"  # compared with itself: Blender's mix applies its pan law
    compat.strips(scene).new_sound("a", str(write_song(tmp_path / "a.wav")), 1, 1)
    assert bpy.ops.bend.bake_audio() == {"FINISHED"}
    one = _rms(scene)
    assert one.min() > 0.05
    compat.strips(scene).new_sound("b", str(write_song(tmp_path / "b.wav")), 2, 1)
    assert bpy.ops.bend.bake_audio() == {"FINISHED"}
    both = _rms(scene)
    assert both[1:-1] == pytest.approx(2 * one[1:-1], rel=0.1)  # the same song twice: twice the amplitude


def test_bake_errors_say_what_to_do(scene, tmp_path):
    with pytest.raises(RuntimeError, match="No sound strip"):
        bpy.ops.bend.bake_audio()
    scene.bend.audio_bake.strip = "missing"
    blender_env.extension().blender.compat.strips(scene).new_sound("song", str(write_song(tmp_path / "a.wav")), 1, 1)
    with pytest.raises(RuntimeError, match="No sound strip named 'missing'"):
        bpy.ops.bend.bake_audio()
