"""Export Bent Video: the VSE rendered to an MP4 with H.264 video and AAC audio, the render settings untouched."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import bpy
import numpy as np
import pytest
from blender_env import extension

av = pytest.importorskip("av")
Image = pytest.importorskip("PIL.Image")
wavfile = pytest.importorskip("scipy.io.wavfile")

N_FRAMES = 12
FPS = 12
SIZE = 64
NO_AUDASPACE = "the PyPI bpy 4.2 module is built without Audaspace"


def compat():
    return extension().blender.compat


def frame_colour(i: int) -> tuple[int, int, int]:
    """A flat colour per frame, far from grey, so a tone-mapped or swapped frame shows."""
    return (40 + 15 * i, 200 - 10 * i, 90)


def write_frames(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(N_FRAMES):
        pixels = np.empty((SIZE, SIZE, 3), np.uint8)
        pixels[:] = frame_colour(i)
        pixels[:8, :8] = 255  # a corner mark, so frames are not entirely flat
        path = folder / f"frame_{i + 1:04d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def write_wav(path: Path, seconds: float = 1.0, rate: int = 48000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    for beat in range(4):  # clicks, so the audio is not a pure tone
        start = int(beat * rate / 4)
        tone[start : start + 64] += 0.5
    wavfile.write(path, rate, tone.astype(np.float32))
    return path


def add_strips(scene: bpy.types.Scene, folder: Path, with_sound: bool) -> None:
    frames = write_frames(folder / "frames")
    strips = compat().strips(scene)
    strip = strips.new_image("Bent Frames", str(frames[0]), 2, 1)
    for path in frames[1:]:
        strip.elements.append(path.name)
    if with_sound:
        strips.new_sound("Song", str(write_wav(folder / "song.wav")), 1, 1)


def _plain_settings(struct: bpy.types.bpy_struct) -> dict[str, object]:
    return {
        prop.identifier: getattr(struct, prop.identifier)
        for prop in struct.bl_rna.properties
        if prop.type in {"BOOLEAN", "INT", "FLOAT", "STRING", "ENUM"} and not getattr(prop, "array_length", 0)
    }


def render_settings(scene: bpy.types.Scene) -> dict[str, object]:
    """Every plain render, output, FFmpeg and colour setting of the scene."""
    render = scene.render
    parts = {
        "render": render,
        "image": render.image_settings,
        "ffmpeg": render.ffmpeg,
        "view": scene.view_settings,
        "display": scene.display_settings,
    }
    return {f"{part}.{key}": value for part, struct in parts.items() for key, value in _plain_settings(struct).items()}


def export(scene: bpy.types.Scene, path: Path) -> set[str]:
    return bpy.ops.bend.export_video("EXEC_DEFAULT", filepath=str(path))


def probe(path: Path) -> dict[str, object]:
    with av.open(str(path)) as container:
        video = [s for s in container.streams if s.type == "video"]
        audio = [s for s in container.streams if s.type == "audio"]
        info: dict[str, object] = {"video": video, "audio": audio}
        info["video_codec"] = video[0].codec_context.name if video else None
        info["audio_codec"] = audio[0].codec_context.name if audio else None
        info["audio_duration"] = (
            float(audio[0].duration * audio[0].time_base) if audio and audio[0].duration is not None else None
        )
        info["video_rate"] = Fraction(video[0].average_rate) if video else None
        frames = []
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
        info["frames"] = frames
    peak = 0.0
    if audio:
        with av.open(str(path)) as container:  # decoding the video consumed the packets of both streams
            for frame in container.decode(audio=0):
                peak = max(peak, float(np.abs(frame.to_ndarray()).max()))
    info["audio_peak"] = peak
    return info


@pytest.fixture
def artist_settings(scene):
    """The artist's own render settings, which the export must leave as they were."""
    scene.render.filepath = "//artist/frame_####"
    scene.view_settings.view_transform = "AgX"
    scene.view_settings.look = "AgX - Punchy"
    scene.render.dither_intensity = 0.5
    scene.render.use_sequencer = False
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.image_settings.color_depth = "16"
    before = render_settings(scene)
    assert before["image.file_format"] == "PNG"
    return before


def test_export_writes_h264_video_with_the_frames_and_restores_settings(scene, artist_settings, tmp_path):
    add_strips(scene, tmp_path, with_sound=compat().has_audio())
    out = tmp_path / "out" / "bent.mp4"

    assert export(scene, out) == {"FINISHED"}

    assert out.is_file()
    info = probe(out)
    assert len(info["video"]) == 1
    assert info["video_codec"] == "h264"
    assert info["video_rate"] == FPS
    assert len(info["frames"]) == N_FRAMES
    assert info["frames"][0].shape == (SIZE, SIZE, 3)
    # The flat part of each frame, away from the corner mark and its chroma bleed: the VSE passes frames through
    # unchanged (AgX would shift them by tens of levels), and H.264 with YUV 4:2:0 costs a few levels at most.
    for index in (0, N_FRAMES - 1):
        mean = info["frames"][index][16:, 16:].reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - np.array(frame_colour(index))).max() < 5, (index, mean)

    assert render_settings(scene) == artist_settings


@pytest.mark.skipif(not extension().blender.compat.has_audio(), reason=NO_AUDASPACE)
def test_export_has_aac_audio_as_long_as_the_video(scene, artist_settings, tmp_path):
    add_strips(scene, tmp_path, with_sound=True)
    out = tmp_path / "bent.mp4"

    assert export(scene, out) == {"FINISHED"}

    info = probe(out)
    assert len(info["audio"]) == 1
    assert info["audio_codec"] == "aac"
    assert info["audio_duration"] == pytest.approx(N_FRAMES / FPS, abs=1 / FPS)
    assert info["audio_peak"] > 0.2  # the tone made it into the mix, not silence
    assert render_settings(scene) == artist_settings


def test_default_path_is_next_to_the_blend_file(scene, tmp_path):
    add_strips(scene, tmp_path, with_sound=False)
    blend = tmp_path / "song.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    scene.name = "My Video"

    assert bpy.ops.bend.export_video("EXEC_DEFAULT") == {"FINISHED"}

    written = tmp_path / "bend" / "My Video.mp4"
    assert written.is_file()
    assert len(probe(written)["frames"]) == N_FRAMES


def test_empty_sequencer_is_cancelled_with_a_hint(scene, tmp_path):
    before = render_settings(scene)
    with pytest.raises(RuntimeError, match="Render Bent Frames first, or add strips"):
        export(scene, tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()
    assert render_settings(scene) == before


def test_unwritable_output_names_the_path_and_setting(scene, tmp_path):
    add_strips(scene, tmp_path, with_sound=False)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a regular file where the output folder should be")
    before = render_settings(scene)

    with pytest.raises(RuntimeError) as error:
        export(scene, blocker / "out.mp4")

    message = str(error.value)
    assert str(blocker) in message
    assert "filepath" in message
    assert render_settings(scene) == before


def test_registered_in_the_render_menu():
    draw_funcs = bpy.types.TOPBAR_MT_render._dyn_ui_initialize()
    export_module = extension().operators.export
    assert export_module.draw_menu in draw_funcs
