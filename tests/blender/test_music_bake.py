"""The musical side of the bake: tempo on the scene, fixed-range features, and markers at sections, bars, beats.

Songs are synthesised at 22.05 kHz, so where the beats and the sections are is known; the scene runs at 12 fps.
"""

from __future__ import annotations

import json
from pathlib import Path

import blender_env
import bpy
import numpy as np
import pytest
from scipy.io import wavfile
from test_panels import draw_panel, panel

pytestmark = pytest.mark.skipif(
    not blender_env.extension().blender.compat.has_audio(), reason="the PyPI bpy 4.2 module is built without Audaspace"
)

RATE = 22050
FPS = 12
PART_S = 10.0  # each part of the A-B-A song: long enough for the engine's 8 s section kernel


def _write(path: Path, song: np.ndarray) -> Path:
    wavfile.write(path, RATE, (np.clip(song, -1, 1) * 32767).astype(np.int16))
    return path


def _clicks(bpm: float, seconds: float, offset_s: float = 0.25) -> np.ndarray:
    """Noise clicks, 10 ms each, on every beat from ``offset_s``."""
    rng = np.random.default_rng(7)
    song = np.zeros(round(seconds * RATE))
    click = 0.5 * rng.standard_normal(round(0.01 * RATE)) * np.exp(-np.arange(round(0.01 * RATE)) / (0.002 * RATE))
    for beat in np.arange(offset_s, seconds - 0.05, 60.0 / bpm):
        start = round(beat * RATE)
        song[start : start + click.size] += click[: song.size - start]
    return song


def _chord(freqs: tuple[float, ...], seconds: float, amplitude: float, harmonics: int) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return sum(amplitude / h * np.sin(2 * np.pi * f * h * t + h) for f in freqs for h in range(1, harmonics + 1))


def _a_b_a() -> np.ndarray:
    """A: a C major chord over 120 BPM clicks; B: a brighter, hissier D major chord without them."""
    a = _chord((261.63, 329.63, 392.0), PART_S, 0.1, 3) + 0.5 * _clicks(120.0, PART_S, offset_s=0.0)
    b = _chord((293.66, 369.99, 440.0, 554.37), PART_S, 0.08, 6)
    b = b + 0.03 * np.diff(np.random.default_rng(5).standard_normal(b.size), prepend=0.0)
    return np.concatenate([a, b, a])


def _song_scene(scene, path: Path, seconds: float):
    scene.frame_end = round(seconds * FPS)
    return blender_env.extension().blender.compat.strips(scene).new_sound("song", str(path), 1, 1)


def _curve(scene, name: str) -> np.ndarray:
    ext = blender_env.extension()
    fcurve = ext.blender.compat.find_fcurve(scene, ext.blender.audio_features.path(name))
    return np.array([k.co[1] for k in fcurve.keyframe_points])


def _markers(scene) -> list[tuple[str, int]]:
    return sorted(((m.name, m.frame) for m in scene.timeline_markers), key=lambda m: (m[1], m[0]))


def test_click_track_bakes_its_tempo_onto_the_scene_and_keeps_it_in_the_file(scene, tmp_path):
    _song_scene(scene, _write(tmp_path / "clicks.wav", _clicks(100.0, 8.0)), 8.0)
    bake = scene.bend.audio_bake
    assert bake.baked_analysis == ""
    assert not any("Baked Tempo" in text for text in draw_panel(panel("BEND_PT_audio")).labels())
    assert bpy.ops.bend.bake_audio() == {"FINISHED"}
    assert bake.baked_tempo == pytest.approx(100.0, abs=1.0)
    assert f"Baked Tempo: {bake.baked_tempo:.1f} BPM" in draw_panel(panel("BEND_PT_audio")).labels()

    path = tmp_path / "clicks.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(path))
    reloaded = bpy.context.scene.bend.audio_bake
    assert reloaded.baked_tempo == pytest.approx(100.0, abs=1.0)
    beats = json.loads(reloaded.baked_analysis)["BEATS"]
    assert np.diff(beats) == pytest.approx(0.6, abs=0.02)  # 100 BPM: a beat every 0.6 s


def test_tempo_override_and_its_range(scene, tmp_path):
    _song_scene(scene, _write(tmp_path / "clicks.wav", _clicks(100.0, 6.0)), 6.0)
    bake = scene.bend.audio_bake
    bake.tempo = 100.0
    assert bpy.ops.bend.bake_audio() == {"FINISHED"}
    assert bake.baked_tempo == 100.0  # the artist's tempo, as given
    bake.tempo = 5.0
    with pytest.raises(RuntimeError, match=r"Tempo must be 0 \(detect it\) or 10 to 1000 BPM, got 5"):
        bpy.ops.bend.bake_audio()
    assert bake.baked_tempo == 100.0  # a refused bake changes nothing


def test_fixed_range_features_keep_their_values_whatever_the_normalization(scene, tmp_path):
    _song_scene(scene, _write(tmp_path / "clicks.wav", _clicks(100.0, 6.0)), 6.0)
    catalog = blender_env.extension().engine.catalog
    fixed = [name for name, spec in catalog.FEATURES.items() if not spec.normalize]
    assert set(fixed) == {"beat_phase", "bar_phase", "beat_pulse", "section", "pitch_class"}
    baked = {}
    for normalization in ("none", "minmax", "percentile"):
        scene.bend.audio_bake.normalization = normalization
        assert bpy.ops.bend.bake_audio() == {"FINISHED"}
        baked[normalization] = {name: _curve(scene, name) for name in (*fixed, "rms")}
    phase = baked["minmax"]["beat_phase"]
    # 0.6 s beats at 12 fps: the phase climbs by 1/7.2 a frame and never reaches 1; min-max would stretch it to 1.
    assert phase.min() >= 0.0 and phase.max() < 1.0
    for normalization in ("minmax", "percentile"):
        for name in fixed:
            np.testing.assert_array_equal(baked[normalization][name], baked["none"][name], err_msg=name)
        assert not np.allclose(baked[normalization]["rms"], baked["none"]["rms"])  # the others are normalised


def test_section_markers_of_an_a_b_a_song_drive_the_crossfade(scene, tmp_path):
    _song_scene(scene, _write(tmp_path / "aba.wav", _a_b_a()), 3 * PART_S)
    assert bpy.ops.bend.bake_audio() == {"FINISHED"}
    assert bpy.ops.bend.add_music_markers(kind="SECTIONS") == {"FINISHED"}
    markers = _markers(scene)
    assert [name for name, _ in markers] == ["section 1", "section 2", "section 3"]
    frames = np.array([frame for _, frame in markers])
    expected = 1 + np.array([0.0, PART_S, 2 * PART_S]) * FPS
    assert np.all(np.abs(frames - expected) <= FPS), frames  # within a second of the true boundaries
    # The baked index agrees: it steps within a frame of each marker (markers go to the nearest frame, the index
    # changes on the first frame at or after the boundary).
    section = _curve(scene, "section")
    for k, frame in enumerate(frames[1:], start=1):
        index = frame - scene.frame_start
        assert section[index - 1] == k - 1 and section[index + 1] == k, (k, frame)

    for _ in range(3):
        bpy.ops.bend.prompt_add()
    assert bpy.ops.bend.crossfade_at_markers() == {"FINISHED"}
    for k, prompt in enumerate(scene.bend.prompts):
        for i, frame in enumerate(frames):
            scene.frame_set(int(frame))
            assert prompt.weight == pytest.approx(1.0 if i == k else 0.0), (prompt.name, frame)


def test_markers_replace_only_their_own(scene, tmp_path):
    _song_scene(scene, _write(tmp_path / "clicks.wav", _clicks(120.0, 6.0)), 6.0)
    markers = scene.timeline_markers
    markers.new("chorus", frame=30)
    assert bpy.ops.bend.add_music_markers(kind="BEATS") == {"FINISHED"}
    beats = [m for m in _markers(scene) if m[0].startswith("beat ")]
    assert len(beats) >= 10 and beats[0][0] == "beat 1"
    assert np.diff([frame for _, frame in beats]) == pytest.approx(6, abs=1)  # 0.5 s at 12 fps
    # The artist moves one of them and names a marker like ours at the frame of one of ours: both are theirs now.
    moved = next(m for m in markers if m.name == "beat 3")
    moved.frame += 2
    artists_own = ("beat 5", next(frame for name, frame in beats if name == "beat 5"))
    markers.new(artists_own[0], frame=artists_own[1])

    scene.bend.audio_bake.beats_per_bar = 2
    assert bpy.ops.bend.add_music_markers(kind="BARS") == {"FINISHED"}
    after = _markers(scene)
    bars = [m for m in after if m[0].startswith("bar ")]
    assert len(bars) >= 5 and [name for name, _ in bars] == [f"bar {k}" for k in range(1, len(bars) + 1)]
    assert np.diff([frame for _, frame in bars]) == pytest.approx(12, abs=1)  # two beats a bar: one second
    assert sorted(m for m in after if not m[0].startswith("bar ")) == sorted(
        [("beat 3", moved.frame), artists_own, ("chorus", 30)]
    )
    assert bpy.ops.bend.add_music_markers(kind="BARS") == {"FINISHED"}
    assert _markers(scene) == after  # asked again: the same markers, not twice as many


def test_markers_reuse_the_bake_only_while_the_sound_and_settings_are_the_same(scene, tmp_path):
    strip = _song_scene(scene, _write(tmp_path / "clicks.wav", _clicks(120.0, 6.0)), 6.0)
    bake = scene.bend.audio_bake
    assert bpy.ops.bend.bake_audio() == {"FINISHED"}
    # Mark the stored analysis: markers that show the mark came from the bake, not a new analysis.
    stored = json.loads(bake.baked_analysis)
    stored["SECTIONS"] = [0.0, 2.0]
    bake.baked_analysis = json.dumps(stored)
    assert bpy.ops.bend.add_music_markers(kind="SECTIONS") == {"FINISHED"}
    assert _markers(scene) == [("section 1", 1), ("section 2", 25)]

    strip.frame_start = 3  # the sound moved: the bake no longer describes it
    assert bpy.ops.bend.add_music_markers(kind="SECTIONS") == {"FINISHED"}
    assert _markers(scene) == [("section 1", 1)]  # six seconds of clicks are one section
    strip.frame_start = 1
    bake.beats_per_bar = 3  # so does a new meter
    assert bpy.ops.bend.add_music_markers(kind="SECTIONS") == {"FINISHED"}
    assert _markers(scene) == [("section 1", 1)]
    bake.beats_per_bar = 4
    assert bpy.ops.bend.add_music_markers(kind="SECTIONS") == {"FINISHED"}
    assert _markers(scene) == [("section 1", 1), ("section 2", 25)]
    for damaged in ("not json", json.dumps({**stored, "SECTIONS": ["x"]}), "[]"):
        bake.baked_analysis = damaged  # a damaged record is analysed again, not trusted
        assert bpy.ops.bend.add_music_markers(kind="SECTIONS") == {"FINISHED"}
        assert _markers(scene) == [("section 1", 1)]


def test_markers_without_a_beat_say_what_to_do(scene, tmp_path):
    _song_scene(scene, _write(tmp_path / "silence.wav", np.zeros(3 * RATE)), 3.0)
    with pytest.raises(RuntimeError, match=r"Found no beats .*: set Tempo in the Audio panel"):
        bpy.ops.bend.add_music_markers(kind="BEATS")
    assert list(scene.timeline_markers) == []
