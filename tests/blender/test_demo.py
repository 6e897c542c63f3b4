"""``make demo``, shortened: scripts/demo.py in a subprocess on a 1.5 s clip at 8 fps, then its outputs checked.

The demo runs in its own process, as ``make demo`` runs it, and the saved .blend is reopened in a second one, so
nothing the demo left in memory can stand in for what is in the file. The picture helpers are tested directly.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import blender_env
import numpy as np
import pytest
from PIL import Image

from engine.catalog import FEATURE_NAMES
from scripts import demo

demo_pictures = demo.demo_pictures  # the module demo.py draws with (imported by its own name)

ROOT = blender_env.ROOT
DEMO = ROOT / "scripts" / "demo.py"
SECONDS, FPS, FRAMES = 1.5, 8, 12
TIMEOUT = 600

has_audio = blender_env.extension().blender.compat.has_audio()
needs_audio = pytest.mark.skipif(not has_audio, reason="the PyPI bpy 4.2 module is built without Audaspace")


def _run_demo(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("BEND_MODEL", None)
    env["BEND_ENGINE_PYTHON"] = blender_env.ENGINE_PYTHON  # the 4.5 test venv holds no torch
    return subprocess.run(
        [sys.executable, str(DEMO), "--seconds", str(SECONDS), "--fps", str(FPS), "--out", str(out), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


# Reopens the demo's .blend with the extension enabled and prints what an artist would find in it, as JSON.
SUMMARY_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    from devtools.extension_session import start
    extension = start()
    import bpy
    bpy.ops.wm.open_mainfile(filepath=sys.argv[2])
    scene, compat = bpy.context.scene, extension.blender.compat
    frames = list(range(scene.frame_start, scene.frame_end + 1))
    strips = []
    for strip in compat.strips(scene):
        record = {"name": strip.name, "type": strip.type, "channel": strip.channel,
                  "frame_start": strip.frame_start, "frame_final_end": strip.frame_final_end}
        if strip.type == "IMAGE":
            folder = bpy.path.abspath(strip.directory)
            record["files"] = [os.path.join(folder, e.filename) for e in strip.elements]
        if strip.type == "SOUND":
            record["sound"] = bpy.path.abspath(strip.sound.filepath)
        strips.append(record)
    fcurves = {f.data_path: len(f.keyframe_points) for f in compat.action_fcurves(scene)}
    audio = extension.blender.audio_features
    features = {name: [compat.find_fcurve(scene, audio.path(name)).evaluate(f) for f in frames]
                for name in ("rms", "onset")}
    drivers = [{"path": d.data_path, "expression": d.driver.expression, "simple": d.driver.is_simple_expression,
                "valid": d.driver.is_valid, "target": d.driver.variables[0].targets[0].data_path,
                "reads_scene": d.driver.variables[0].targets[0].id == scene}
               for d in scene.animation_data.drivers]
    bends = [{"name": b.name, "op": b.op, "place": b.place, "layer": b.latent_layer, "selection": b.selection,
              "fraction": b.fraction} for b in extension.blender.bend_stack.bends(scene)]
    summary = {"fps": scene.render.fps, "frames": frames, "strips": strips, "fcurves": fcurves,
               "features": features, "drivers": drivers, "bends": bends, "model": scene.bend.model_source,
               "prompts": [p.text for p in scene.bend.prompts],
               "version": list(bpy.app.version[:2]),
               "sequencer_scenes": [getattr(w.sequencer_scene, "name", None) for w in bpy.data.workspaces
                                    if hasattr(w, "sequencer_scene")]}
    print("SUMMARY " + json.dumps(summary), flush=True)
    os._exit(0)
    """
)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("demo")
    return out, _run_demo(out)


@pytest.fixture(scope="module")
def blend_summary(demo_run) -> dict:
    out, _ = demo_run
    done = subprocess.run(
        [sys.executable, "-c", SUMMARY_SCRIPT, str(ROOT), str(out / "demo.blend")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert done.returncode == 0 and lines, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(lines[-1].removeprefix("SUMMARY "))


@needs_audio
def test_demo_runs_and_says_what_it_did(demo_run):
    _, done = demo_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert demo.NO_MODEL in done.stdout  # no model configured: says so plainly
    for expected in ("toy-shapes", f"{FRAMES} at 64×64, 20 steps", "per frame", "demo.blend", "demo.mp4"):
        assert expected in done.stdout


@needs_audio
def test_demo_video_is_playable_with_sound(demo_run):
    import av

    out, done = demo_run
    assert done.returncode == 0
    with av.open(str(out / "demo.mp4")) as container:
        (video,) = container.streams.video
        (audio,) = container.streams.audio
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        assert sum(1 for _ in container.decode(video=0)) == FRAMES
        v_seconds = float(video.duration * video.time_base)
        a_seconds = float(audio.duration * audio.time_base)
    assert v_seconds == pytest.approx(SECONDS, abs=1 / FPS)
    assert a_seconds == pytest.approx(v_seconds, abs=1 / FPS)


@needs_audio
def test_demo_blend_reopens_with_strips_curves_and_drivers(demo_run, blend_summary):
    out, _ = demo_run
    summary = blend_summary
    assert summary["fps"] == FPS and summary["frames"] == list(range(1, FRAMES + 1))
    assert summary["model"] == "toy-shapes"
    assert summary["prompts"] == ["a floating orb", "a gorgeous landscape"]
    # Blender 5 shows each workspace's sequencer scene in the Sequencer: the demo's, not none (4.x has no such
    # setting and shows the window's scene).
    assert all(name == "demo" for name in summary["sequencer_scenes"])
    assert summary["sequencer_scenes"] or tuple(summary["version"]) < (5, 0)

    strips = {s["name"]: s for s in summary["strips"]}
    sound, frames = strips["song"], strips["demo"]
    assert sound["type"] == "SOUND" and Path(sound["sound"]).is_file()
    assert frames["type"] == "IMAGE" and frames["channel"] > sound["channel"]
    assert round(frames["frame_start"]) == 1 and round(frames["frame_final_end"]) == FRAMES + 1
    assert [Path(f).name for f in frames["files"]] == [f"frame_{n:05d}.png" for n in range(1, FRAMES + 1)]
    assert all(Path(f).is_file() for f in frames["files"])

    for feature in FEATURE_NAMES:  # the baked features: custom properties of the Scene
        assert summary["fcurves"][f'["bend_{feature}"]'] == FRAMES
    assert sum(1 for path in summary["fcurves"] if path.startswith("bend.prompts[")) == 2

    drivers = {d["path"]: d for d in summary["drivers"]}
    assert set(drivers) == {"bend.bends[0].param", "bend.bends[1].param"}  # on the Scene, at R1's and Add's paths
    assert all(d["simple"] and d["valid"] and d["reads_scene"] for d in drivers.values())
    assert drivers["bend.bends[0].param"]["target"] == '["bend_rms"]'
    assert drivers["bend.bends[1].param"]["target"] == '["bend_onset"]'
    rotation, sparkle = summary["bends"]
    assert (rotation["name"], sparkle["name"]) == ("R1", "Add")
    layer = demo.render_settings(None).bend_layer  # 10 of toy-shapes' 20 steps
    assert layer == 10
    assert (rotation["op"], rotation["place"], rotation["layer"]) == ("rotate_r1", "LATENT", layer)
    assert (sparkle["op"], sparkle["place"], sparkle["layer"], sparkle["selection"]) == (
        "add",
        "LATENT",
        layer,
        "random",
    )
    assert sparkle["fraction"] == pytest.approx(0.05)

    # What was rendered is what the drivers say: 2π × RMS and 2 × onset, frame by frame, and the song moves them.
    job = json.loads((out / "bend" / "demo" / "job.json").read_text())
    angles = [f["bends"]["R1"] for f in job["frames"]]
    amounts = [f["bends"]["Add"] for f in job["frames"]]
    assert angles == pytest.approx([2 * math.pi * v for v in summary["features"]["rms"]], abs=1e-5)
    assert amounts == pytest.approx([demo.ONSET_HIGH * v for v in summary["features"]["onset"]], abs=1e-5)
    assert len({round(a, 3) for a in angles}) > 3 and max(amounts) > 1.0
    # The orb holds until its marker (40 % of the song: frame 5 of 12), the landscape from its own (70 %: frame 9).
    weights = [f["prompt_weights"] for f in job["frames"]]
    assert weights[:5] == [[1.0, 0.0]] * 5 and weights[8:] == [[0.0, 1.0]] * 4
    assert all(0.0 < w[1] < 1.0 for w in weights[5:8])


@needs_audio
def test_demo_pictures_are_readable_pngs(demo_run):
    out, done = demo_run
    assert done.returncode == 0
    for name, min_height in (("contact_sheet.png", 300), ("curves.png", 600)):
        with Image.open(out / name) as image:
            assert image.format == "PNG"
            image.verify()
        with Image.open(out / name) as image:
            assert image.width == demo_pictures.WIDTH and image.height >= min_height
            pixels = np.asarray(image.convert("L"))
            assert pixels.std() > 10  # something is drawn


@needs_audio
def test_demo_failure_is_one_line(tmp_path):
    done = _run_demo(tmp_path, "--model", str(tmp_path / "missing.safetensors"), "--seconds", "0.5", "--fps", "4")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("demo: bpy.ops.bend.render() failed:") and "missing.safetensors" in last


@pytest.mark.skipif(has_audio, reason="only a bpy module without audio refuses to run the demo")
def test_demo_refuses_without_audio(tmp_path):
    done = _run_demo(tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == f"demo: {demo.NO_AUDIO}"


# ---------------------------------------------------------------------------------------------------------------
# The pieces, without Blender


def test_song_is_deterministic_with_sharp_onsets():
    song = demo.synthesize_song(2.0)
    assert len(song) == 2 * demo.SAMPLE_RATE and np.abs(song).max() == pytest.approx(0.89)
    assert np.array_equal(song, demo.synthesize_song(2.0))
    # The plucked notes start within a sample or two: the loudest jump between 1 ms windows is large.
    windows = np.abs(song[: len(song) // 22 * 22].reshape(-1, 22)).max(axis=1)
    assert np.max(np.diff(windows)) > 0.2


def test_render_settings_real_model_toy_and_tiny():
    assert demo.render_settings(None) == demo.RenderSettings("toy-shapes", 64, 20, 4)  # the project's own model
    assert demo.render_settings(" ") == demo.render_settings("toy-shapes")
    assert demo.render_settings("tiny-random") == demo.RenderSettings("tiny-random", 64, 8, 4)
    real = demo.render_settings("runwayml/stable-diffusion-v1-5")
    assert (real.size, real.steps, real.is_tiny) == (512, 50, False)
    assert demo.render_settings("x.safetensors", size=256, steps=20).size == 256


def test_operator_message_is_one_line():
    message = demo.operator_message(RuntimeError("Error: Render failed: model.source: nope\n"))
    assert message == "Render failed: model.source: nope"


def test_ticks_and_labels():
    assert demo_pictures.nice_ticks(0, 10, 10) == list(range(11))
    assert demo_pictures.nice_ticks(0, 1.375, 10) == pytest.approx([0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2])
    assert demo_pictures.nice_ticks(0, 2 * math.pi * 1.05, 4) == [0, 2, 4, 6]
    assert [demo_pictures.tick_label(v, s) for v, s in ((0.25, 0.25), (2.5, 2.5), (4.0, 2.0))] == ["0.25", "2.5", "4"]


def test_sheet_frames_every_tenth_and_the_last():
    assert demo_pictures.every_for(200) == 10 and demo_pictures.every_for(12) == 1
    assert demo_pictures.sheet_frames(1, 200, 10) == [*range(1, 200, 10), 200]
    assert demo_pictures.sheet_frames(1, 12, 1) == list(range(1, 13))


def test_pictures_from_plain_data(tmp_path):
    files = []
    for frame in (1, 11, 21):
        path = tmp_path / f"frame_{frame:05d}.png"
        Image.fromarray(np.full((64, 64, 3), frame * 10, dtype=np.uint8)).save(path)
        files.append((frame, path))
    sheet = demo_pictures.contact_sheet(files, 20.0, tmp_path / "sheet.png", "three frames")
    with Image.open(sheet) as image:
        assert image.width == demo_pictures.WIDTH and image.height > 150
    times = [i / 20 for i in range(40)]
    panels = [
        demo_pictures.Panel("a", [demo_pictures.Series("sin", [math.sin(t) for t in times])]),
        demo_pictures.Panel("b", [demo_pictures.Series("flat", [1.0] * 40)], y_range=(0, 2), y_label="r"),
    ]
    curves = demo_pictures.plot_curves(times, panels, tmp_path / "curves.png", "two panels")
    with Image.open(curves) as image:
        assert image.width == demo_pictures.WIDTH and image.height > 400
