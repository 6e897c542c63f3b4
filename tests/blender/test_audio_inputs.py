"""The sounds an artist brings: every common format, strips anywhere on the timeline, muted, empty or broken.

Placement is checked against Blender's own mix: a staircase tone (each frame of the sound louder than the one
before) shows which frame of the sound plays at which scene frame, so a strip baked alone must match the scene
mixdown frame for frame, up to the mix's constant pan gain.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import blender_env
import bpy
import numpy as np
import pytest
from media import encode, staircase, tone, write_wav

pytestmark = pytest.mark.skipif(
    not blender_env.extension().blender.compat.has_audio(), reason="the PyPI bpy 4.2 module is built without Audaspace"
)

RATE = 48000  # Blender's default mix rate: a mixdown needs no resampling
FPS = 12
PER_FRAME = RATE // FPS
STEP = 0.02  # staircase amplitude step


def _curve(scene, name: str = "rms") -> np.ndarray:
    ext = blender_env.extension()
    fcurve = ext.blender.compat.find_fcurve(scene, ext.blender.audio_features.path(name))
    return np.array([fcurve.evaluate(f) for f in range(scene.frame_start, scene.frame_end + 1)])


def _keys(scene) -> dict[str, list[tuple[float, float]]]:
    """Every baked key, to show that a refused bake left them alone."""
    compat = blender_env.extension().blender.compat
    return {f.data_path: [tuple(k.co) for k in f.keyframe_points] for f in compat.action_fcurves(scene)}


def _bake(scene, source: str = "STRIP") -> np.ndarray:
    scene.bend.audio_bake.source = source
    scene.bend.audio_bake.normalization = "none"
    assert bpy.ops.bend.bake_audio() == {"FINISHED"}
    return _curve(scene)


def _add(scene, name: str, path, frame_start: int = 1, channel: int = 1):
    return blender_env.extension().blender.compat.strips(scene).new_sound(name, str(path), channel, frame_start)


# Formats. The files sit in a folder with spaces and non-ASCII letters, as songs often do.
FORMATS = [("wav", 48000), ("mp3", 48000), ("flac", 44100), ("ogg", 48000), ("mp4", 44100)]


@pytest.mark.parametrize(("kind", "rate"), FORMATS, ids=[kind for kind, _ in FORMATS])
def test_every_format_bakes_the_same_loudness_in_the_same_frames(scene, tmp_path, kind, rate):
    """A 480 Hz sine of amplitude 0.5 from 0.25 s to 0.75 s: frames 4 to 9 at 12 fps, silence around them."""
    signal = tone(1.0, rate, 480, 0.5, start=0.25, end=0.75)
    folder = tmp_path / "my songs ünï 音"
    path = (
        write_wav(folder / "tone ü 音.wav", signal, rate)
        if kind == "wav"
        else (encode(folder / f"tone ü 音.{kind}", signal, rate, kind))
    )
    _add(scene, "song", path)
    rms = _bake(scene)
    centroid = _curve(scene, "centroid")
    assert np.isfinite(rms).all() and np.isfinite(centroid).all()
    # Lossy codecs lose a little level (LAME about 5 %) and smear a little across the tone's edges.
    assert rms[3:9] == pytest.approx(0.5 / np.sqrt(2), rel=0.07)
    assert np.abs(np.r_[rms[:2], rms[10:]]).max() < 0.005
    assert max(rms[2], rms[9]) < 0.02
    assert centroid[4:8] == pytest.approx(480, rel=0.03)  # the right pitch: decoded at the file's own rate


# Placement: (strip settings, the staircase step heard at scene frames 1..12; 0 = silence).
PLACEMENTS = {
    "starts before frame 1": ({"frame_start": -5}, list(range(7, 19))),
    "starts late": ({"frame_start": 8}, [0] * 7 + [1, 2, 3, 4, 5]),
    "trimmed": ({"frame_start": -2, "frame_final_start": 4}, [0] * 3 + list(range(7, 16))),
    "hold offset": ({"animation_offset_start": 3}, list(range(4, 16))),
    "sound offset": ({"sound_offset": 0.25}, [0] * 3 + list(range(1, 10))),
    "negative sound offset": ({"sound_offset": -0.25}, list(range(4, 16))),
    "all of them": (
        {"frame_start": 3, "animation_offset_start": 2, "frame_offset_start": 2, "sound_offset": 0.25},
        [0] * 4 + list(range(2, 10)),
    ),
}


@pytest.mark.parametrize("case", list(PLACEMENTS))
def test_strip_placement_matches_blenders_own_mix(scene, tmp_path, case):
    settings, steps = PLACEMENTS[case]
    song = write_wav(tmp_path / "stairs.wav", staircase(24, RATE, FPS, 480, STEP), RATE)
    strip = _add(scene, "song", song)
    if "sound_offset" in settings and "sound_offset" not in strip.bl_rna.properties:
        pytest.skip("this Blender has no sound offset")
    for name, value in settings.items():
        setattr(strip, name, value)
    expected = STEP * np.array(steps) / np.sqrt(2)

    baked = _bake(scene)
    assert baked == pytest.approx(expected, rel=1e-3, abs=1e-6)
    mixed = _bake(scene, "MIXDOWN")
    heard = expected > 0
    gain = mixed[heard] / baked[heard]  # Blender's pan law, the same for every frame
    assert gain == pytest.approx(np.full(heard.sum(), gain.mean()), rel=2e-3)
    assert mixed[~heard] == pytest.approx(0.0, abs=1e-6)


def test_strip_running_past_the_end_is_cut(scene, tmp_path):
    strip = _add(scene, "song", write_wav(tmp_path / "stairs.wav", staircase(24, RATE, FPS, 480, STEP), RATE))
    strip.frame_start = 8
    strip.frame_offset_end = 2  # trimmed at the end too, and still past the scene's end
    assert strip.frame_final_end > scene.frame_end + 1
    assert _bake(scene) == pytest.approx(STEP * np.array([0] * 7 + [1, 2, 3, 4, 5]) / np.sqrt(2), rel=1e-3, abs=1e-6)


def test_strip_the_scene_never_hears_is_refused_and_keeps_the_bake(scene, tmp_path):
    song = write_wav(tmp_path / "stairs.wav", staircase(24, RATE, FPS, 480, STEP), RATE)
    strip = _add(scene, "song", song)
    _bake(scene)
    before = _keys(scene)

    strip.frame_start = 20  # after the scene's end
    with pytest.raises(
        RuntimeError,
        match=r"Sound strip 'song' \(frames 20 to 43\) is not heard in the scene's "
        r"frames 1 to 12: move it, or change the scene's frame range",
    ):
        bpy.ops.bend.bake_audio()
    strip.frame_start = -30  # over before the scene starts
    with pytest.raises(RuntimeError, match=r"'song' \(frames -30 to -7\) is not heard"):
        bpy.ops.bend.bake_audio()
    strip.frame_start = 1
    strip.sound_offset = 2.0 if "sound_offset" in strip.bl_rna.properties else 0.0
    strip.frame_offset_end = 12  # what is left of the strip is before its delayed sound starts
    if strip.sound_offset:
        with pytest.raises(RuntimeError, match=r"'song' .* is not heard"):
            bpy.ops.bend.bake_audio()
    assert _keys(scene) == before


def test_zero_length_strips_are_refused_with_the_reason(scene, tmp_path):
    empty = _add(scene, "empty", write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), RATE))
    scene.bend.audio_bake.strip = "empty"
    with pytest.raises(RuntimeError, match=r"Sound strip 'empty' is empty: .*empty\.wav holds no audio"):
        bpy.ops.bend.bake_audio()

    song = _add(scene, "song", write_wav(tmp_path / "stairs.wav", staircase(24, RATE, FPS, 480, STEP), RATE), 1, 2)
    scene.bend.audio_bake.strip = "song"
    _bake(scene)
    before = _keys(scene)
    song.frame_offset_start = 12
    song.frame_offset_end = 12  # trimmed from both ends until nothing is left
    assert song.frame_final_duration <= 0
    with pytest.raises(RuntimeError, match="Sound strip 'song' has no length left after trimming"):
        bpy.ops.bend.bake_audio()
    assert _keys(scene) == before
    assert empty.name in blender_env.extension().blender.compat.strips(scene)


def test_muted_strip_is_baked_with_a_warning_and_silent_in_the_mixdown(scene, tmp_path, capfd):
    song = write_wav(tmp_path / "stairs.wav", staircase(24, RATE, FPS, 480, STEP), RATE)
    strip = _add(scene, "song", song, channel=2)
    audible = _bake(scene)
    capfd.readouterr()

    strip.mute = True
    assert _bake(scene) == pytest.approx(audible)  # the artist picked it: bake what they picked ...
    assert "Warning: Sound strip 'song' is muted: baked anyway" in capfd.readouterr().out  # ... and say so
    strip.mute = False
    scene.sequence_editor.channels[2].mute = True  # a muted channel silences it just the same
    assert _bake(scene) == pytest.approx(audible)
    assert "'song' is muted" in capfd.readouterr().out

    scene.bend.audio_bake.source = "MIXDOWN"
    with pytest.raises(RuntimeError, match=r"The scene plays no sound in frames 1 to 12: add or unmute a sound strip"):
        bpy.ops.bend.bake_audio()
    scene.sequence_editor.channels[2].mute = False
    assert _bake(scene, "MIXDOWN").min() > 0
    assert "muted" not in capfd.readouterr().out


def test_mixdown_hears_both_overlapping_strips(scene, tmp_path):
    """A: 480 Hz at 0.4 on frames 1-8. B: 1200 Hz at 0.3 on frames 5-12. Both play on frames 5-8."""
    a = _add(scene, "a", write_wav(tmp_path / "a.wav", tone(8 / FPS, RATE, 480, 0.4), RATE), 1, 1)
    b = _add(scene, "b", write_wav(tmp_path / "b.wav", tone(8 / FPS, RATE, 1200, 0.3), RATE), 5, 2)
    assert (a.frame_final_end, b.frame_final_start) == (9, 5)
    rms = _bake(scene, "MIXDOWN")
    centroid = _curve(scene, "centroid")
    # Frame 9 is left out: Blender's mix lets a strip ring on a few hundred samples past its end.
    alone_a, both, alone_b = rms[0:4], rms[4:8], rms[9:12]
    gain = alone_a.mean() / (0.4 / np.sqrt(2))  # the mix's pan law
    assert 0.5 < gain <= 1.0
    assert alone_a == pytest.approx(gain * 0.4 / np.sqrt(2), rel=0.01)
    assert alone_b == pytest.approx(gain * 0.3 / np.sqrt(2), rel=0.01)
    assert both == pytest.approx(gain * 0.5 / np.sqrt(2), rel=0.01)  # sqrt(0.4² + 0.3²): two tones' powers add
    assert centroid[1:3] == pytest.approx(480, rel=0.03) and centroid[10:12] == pytest.approx(1200, rel=0.03)
    assert centroid[5:7].min() > 480 * 1.2 and centroid[5:7].max() < 1200 / 1.2

    b.mute = True  # muted strips are silent in the mixdown
    rms = _bake(scene, "MIXDOWN")
    assert rms[0:8] == pytest.approx(gain * 0.4 / np.sqrt(2), rel=0.01)
    assert rms[9:12] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("source", ["STRIP", "MIXDOWN"])
@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_unreadable_sound_is_refused_naming_the_strip_and_keeps_the_bake(scene, tmp_path, source, damage):
    song = write_wav(tmp_path / "song ü.wav", tone(1.0, RATE, 480, 0.5), RATE)
    _add(scene, "song", song)
    _bake(scene, source)
    before = _keys(scene)
    if damage == "corrupt":
        song.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt not really" * 50)
    else:
        song.unlink()
    # The mixdown would play the broken file as silence; the bake must not quietly analyse that.
    with pytest.raises(RuntimeError, match=r"Could not read the sound of strip 'song' \(.*song ü\.wav\)"):
        bpy.ops.bend.bake_audio()
    assert _keys(scene) == before


def test_a_file_aud_cannot_read_never_aborts_blender(tmp_path):
    """aud aborts the whole process (an uncaught C++ exception) when data() is asked of a file it cannot open.

    Run in a child, so that a regression fails this test instead of killing the test run.
    """
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio" * 100)
    (tmp_path / "empty.mp3").write_bytes(b"")
    paths = [str(tmp_path / "missing.wav"), str(garbage), str(tmp_path / "empty.mp3"), str(tmp_path)]
    script = textwrap.dedent(f"""\
        import json, sys
        import bpy
        sys.path.insert(0, {str(blender_env.ROOT / "blender")!r})
        import compat
        results = []
        for path in {paths!r}:
            for read in (compat.decode_sound, compat.probe_sound):
                try:
                    read(path)
                    results.append("read")
                except Exception as exc:
                    results.append(type(exc).__name__)
        print(json.dumps(results))
        """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    results = json.loads(child.stdout.strip().splitlines()[-1])
    assert len(results) == 2 * len(paths) and "read" not in results


def test_sound_paths_with_spaces_unicode_and_relative_to_the_blend(scene, tmp_path):
    compat = blender_env.extension().blender.compat
    project = tmp_path / "my project ünï 音"
    project.mkdir()
    inside = write_wav(project / "audio ü" / "song 音.wav", staircase(12, RATE, FPS, 480, STEP), RATE)
    outside = write_wav(tmp_path / "elsewhere ñ" / "other 音.wav", staircase(12, RATE, FPS, 480, 2 * STEP), RATE)
    _add(scene, "inside", inside, 1, 1)
    _add(scene, "outside", outside, 1, 2)
    bpy.ops.wm.save_as_mainfile(filepath=str(project / "video 音.blend"))
    bpy.ops.file.make_paths_relative()
    scene = bpy.context.scene
    sounds = {s.name: s.sound.filepath for s in compat.strips(scene)}
    assert sounds["inside"].startswith("//") and sounds["outside"].startswith("//..")
    expected = STEP * np.arange(1, 13) / np.sqrt(2)
    scene.bend.audio_bake.strip = "inside"
    assert _bake(scene) == pytest.approx(expected, rel=1e-3)
    scene.bend.audio_bake.strip = "outside"
    assert _bake(scene) == pytest.approx(2 * expected, rel=1e-3)
    assert _bake(scene, "MIXDOWN").min() > 0
