"""The artist's whole workflow, through the extension's own operators: song to exported video.

New scene, a synthesized song as a sound strip, bake, rotation R1 at layer 0 driven by RMS over 0..2π, render 12
frames with tiny-random, the image strip above the sound strip, export to MP4, and the file saved and reopened.
"""

from __future__ import annotations

import json
import math

import blender_env
import bpy
import pytest
from helpers import write_song

needs_audio = pytest.mark.skipif(
    not blender_env.extension().blender.compat.has_audio(), reason="the PyPI bpy 4.2 module is built without Audaspace"
)


def _prefs():
    return bpy.context.preferences.addons[blender_env.MODULE].preferences


def _setup_render(scene, tmp_path):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "song.blend"))
    _prefs().model_source = "tiny-random"
    scene.bend.steps = 3
    bpy.ops.bend.prompt_add()
    scene.bend.prompts[0].text = "a floating orb"
    bpy.ops.bend.bend_add(op="rotate_r1")


@needs_audio
def test_song_to_video(scene, tmp_path):
    import av

    compat = blender_env.extension().blender.compat
    song = write_song(tmp_path / "song.wav")
    compat.strips(scene).new_sound("song", str(song), 1, 1)
    _setup_render(scene, tmp_path)

    assert bpy.ops.bend.bake_audio() == {"FINISHED"}
    rms = compat.find_fcurve(scene, blender_env.extension().blender.audio_features.path("rms"))
    assert len(rms.keyframe_points) == 12 and all(k.interpolation == "LINEAR" for k in rms.keyframe_points)
    assert bpy.ops.bend.drive_from_feature(feature="rms", low=0.0, high=2 * math.pi) == {"FINISHED"}
    driver = scene.animation_data.drivers.find(scene.bend.bends["R1"].path_from_id("param"))
    assert driver.data_path == "bend.bends[0].param" and driver.driver.is_simple_expression

    assert bpy.ops.bend.render() == {"FINISHED"}
    folder = tmp_path / "bend" / scene.name
    assert sorted(p.name for p in folder.glob("frame_*.png")) == [f"frame_{f:05d}.png" for f in range(1, 13)]
    job = json.loads((folder / "job.json").read_text())
    angles = [frame["bends"]["R1"] for frame in job["frames"]]
    assert angles == pytest.approx([2 * math.pi * rms.evaluate(f) for f in range(1, 13)], abs=1e-5)
    assert len(set(round(a, 4) for a in angles)) > 3  # the song moves the bend

    strip = compat.strips(scene)[scene.name]
    sound = compat.strips(scene)["song"]
    assert strip.type == "IMAGE" and len(strip.elements) == 12 and strip.channel > sound.channel
    assert round(strip.frame_start) == 1

    video = tmp_path / "song.mp4"
    assert bpy.ops.bend.export_video(filepath=str(video)) == {"FINISHED"}
    with av.open(str(video)) as container:
        (v_stream,) = container.streams.video
        (a_stream,) = container.streams.audio
        assert v_stream.codec_context.name == "h264" and a_stream.codec_context.name == "aac"
        frames = sum(1 for _ in container.decode(video=0))
        assert frames == 12
        v_seconds = float(v_stream.duration * v_stream.time_base)
        a_seconds = float(a_stream.duration * a_stream.time_base)
    assert a_seconds == pytest.approx(v_seconds, abs=1.5 / 12)


def test_render_into_the_vse_without_sound(scene, tmp_path):
    """What 4.2's bpy module (no audio) can run: keyframed bend, render, strip, sub-range, resume."""
    compat = blender_env.extension().blender.compat
    _setup_render(scene, tmp_path)
    bend = scene.bend.bends["R1"]
    for frame, value in ((1, 0.0), (12, 3.0)):
        bend.param = value
        bend.keyframe_insert("param", frame=frame)  # what the I key does over the field
    assert bpy.ops.bend.render(frame_start=4, frame_end=6) == {"FINISHED"}
    folder = tmp_path / "bend" / scene.name
    assert sorted(p.name for p in folder.glob("frame_*.png")) == [f"frame_{f:05d}.png" for f in (4, 5, 6)]
    strip = compat.strips(scene)[scene.name]
    assert round(strip.frame_final_end) == 7 and strip.channel == 1
    assert bpy.ops.bend.render() == {"FINISHED"}
    assert len(list(folder.glob("frame_*.png"))) == 12 and len(strip.elements) == 12
    manifest = [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in manifest] == [4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 11, 12]
    job = json.loads((folder / "job.json").read_text())
    curve = compat.find_fcurve(scene, "bend.bends[0].param")
    assert [f["bends"]["R1"] for f in job["frames"]] == pytest.approx([curve.evaluate(f) for f in range(1, 13)])
    assert job["frames"][0]["bends"]["R1"] == 0.0 and job["frames"][-1]["bends"]["R1"] == pytest.approx(3.0)


def test_render_errors_name_the_setting(scene, tmp_path):
    _prefs().model_source = ""
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "x.blend"))
    with pytest.raises(RuntimeError, match="No model set"):
        bpy.ops.bend.render()
    _prefs().model_source = "tiny-random"
    with pytest.raises(RuntimeError, match="not inside the scene's range"):
        bpy.ops.bend.render(frame_start=5, frame_end=40)
    bend_add = bpy.ops.bend.bend_add
    bend_add(op="invert")
    with pytest.raises(RuntimeError, match=r"Invert.*frame 1.*r = 0"):
        bpy.ops.bend.render()


def test_settings_survive_save_and_reload(scene, tmp_path):
    compat = blender_env.extension().blender.compat
    _setup_render(scene, tmp_path)
    scene.bend.mode = "img2img"
    scene.bend.guidance = 5.5
    bend = scene.bend.bends["R1"]
    bend.place = "UNET"
    bend.unet_target = "up_blocks.1"
    features = blender_env.extension().blender.audio_features
    blender_env.extension().operators.drive.add_feature_driver(scene, "R1", "onset", 0.5, 2.0)
    features.ensure(scene)  # as a bake does
    blender_env.extension().blender.animation.write_keys(scene, features.path("rms"), [1, 2, 3], [0.1, 0.5, 0.2])
    path = tmp_path / "saved.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    scene = bpy.context.scene
    assert scene.bend.mode == "img2img" and scene.bend.guidance == pytest.approx(5.5)
    assert scene.bend.prompts[0].text == "a floating orb"
    bend = scene.bend.bends["R1"]
    assert (bend.op, bend.place, bend.unet_target) == ("rotate_r1", "UNET", "up_blocks.1")
    driver = scene.animation_data.drivers.find("bend.bends[0].param")
    assert driver.driver.expression == "0.5 + 1.5 * feature" and driver.driver.is_simple_expression
    target = driver.driver.variables[0].targets[0]
    assert (target.id, target.data_path) == (scene, '["bend_onset"]')
    assert features.present(scene)  # the features' properties are saved with the file
    rms = compat.find_fcurve(scene, features.path("rms"))
    assert [tuple(k.co) for k in rms.keyframe_points] == [(1, pytest.approx(0.1)), (2, 0.5), (3, pytest.approx(0.2))]
