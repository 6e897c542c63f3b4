"""The Blender side for a 3-minute song at 20 fps (3,600 frames): baking the audio, and building the render job.

Runs in the bpy module with this checkout loaded as the extension (``devtools.extension_session``), on an empty
scene holding a synthesized 3-minute stereo 44.1 kHz song (bench_features' test song, as 16-bit WAV) as a sound
strip, frames 1-3600 at 20 fps.

(a) ``bpy.ops.bend.bake_audio()``, whole operator, against its goal of 1 s, with its parts (decode and place the
    strip's sound, analyse, post-process, write 10 F-curves) and, for the F-curve write, the straightforward
    alternative: one ``keyframe_points.insert`` per key instead of the bulk ``foreach_set``, for one feature.
(b) ``scene_job.build_job(scene, prefs)`` with two bends driven by features (``operators.drive.add_feature_driver``)
    and a keyframed two-prompt crossfade, against its goal of 10 s, and against its floor: the bare
    ``scene.frame_set`` loop over the same frames, which build_job cannot avoid since drivers must be evaluated.

Timed runs are interleaved and each figure is the median of its runs.

    python bench/bench_blender_side.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import numpy as np  # noqa: E402
from bench_features import SAMPLE_RATE, SECONDS, synthesise  # noqa: E402

from devtools import extension_session  # noqa: E402

FPS = 20
BAKE_GOAL_S = 1.0
BUILD_GOAL_S = 10.0


_TEMP_FOLDERS: list[Path] = []


def temp_folder(prefix: str) -> Path:
    """A temporary folder, removed when the benchmark ends."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    _TEMP_FOLDERS.append(folder)
    return folder


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each run over ``repeats`` rounds (after one warm-up round), the order rotating per round."""
    names = list(runs)
    for name in names:
        runs[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(runs[name]))
    return {name: statistics.median(values) for name, values in times.items()}


def new_scene(song: Path | None):
    import bpy

    ext = extension_session.extension()
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    scene.render.resolution_x = scene.render.resolution_y = 512
    scene.render.resolution_percentage = 100
    scene.frame_start, scene.frame_end = 1, SECONDS * FPS
    if song is not None:
        ext.blender.compat.strips(scene).new_sound("song", str(song), 1, 1)
    return scene


def line(label: str, seconds: float, goal: float | None = None, baseline: tuple[str, float] | None = None) -> None:
    text = f"  {label:<60} {seconds * 1000:9.1f} ms"
    if goal is not None:
        text += f"   time/goal {seconds / goal:6.3f} (goal < {goal:g} s)"
    if baseline is not None:
        text += f"   {baseline[1] / seconds:6.1f}x faster than {baseline[0]}"
    print(text)


def bench_bake(song: Path, repeats: int) -> None:
    import bpy

    from engine.features import compute_features
    from engine.postprocess import postprocess

    ext = extension_session.extension()
    scene = new_scene(song)
    n_frames = scene.frame_end - scene.frame_start + 1
    frames = list(range(scene.frame_start, scene.frame_end + 1))
    strip = ext.blender.audio_source.find_strip(scene, "")
    audio = ext.blender.audio_source.strip_audio(scene, strip)
    raw = compute_features(audio.samples, audio.rate, audio.fps, n_frames=audio.n_frames)
    values = postprocess(raw, audio.fps, normalization="minmax")
    rms = [float(v) for v in values["rms"]]
    names = list(values)
    features = ext.blender.audio_features
    features.ensure(scene)  # the properties a bake writes its curves on

    def bake() -> None:
        assert bpy.ops.bend.bake_audio() == {"FINISHED"}

    def write_all() -> None:
        for name in names:
            ext.blender.animation.write_keys(scene, features.path(name), frames, values[name])

    def write_one_bulk() -> None:
        ext.blender.animation.write_keys(scene, features.path("rms"), frames, rms)

    def write_one_insert() -> None:
        path = features.path("rms")
        ext.blender.animation.remove_animation(scene, path)
        scene.keyframe_insert(path, frame=frames[0])
        points = ext.blender.compat.find_fcurve(scene, path).keyframe_points
        for frame, value in zip(frames, rms, strict=True):
            points.insert(frame, value).interpolation = "LINEAR"

    medians = interleaved(
        {
            "bake": bake,
            "decode": lambda: ext.blender.audio_source.strip_audio(scene, strip),
            "analyse": lambda: compute_features(audio.samples, audio.rate, audio.fps, n_frames=audio.n_frames),
            "postprocess": lambda: postprocess(raw, audio.fps, normalization="minmax"),
            "write all": write_all,
            "write one bulk": write_one_bulk,
            "write one insert": write_one_insert,
        },
        repeats,
    )
    check = ext.blender.compat.find_fcurve(scene, features.path("rms"))
    assert len(check.keyframe_points) == n_frames
    print(
        f"(a) bake: {SECONDS // 60} min stereo {SAMPLE_RATE / 1000:g} kHz 16-bit WAV as a sound strip, "
        f"{n_frames} frames at {FPS} fps, {len(names)} features; median of {repeats} interleaved runs"
    )
    line("bpy.ops.bend.bake_audio(), whole operator", medians["bake"], goal=BAKE_GOAL_S)
    line("  decode + place the strip's sound (aud, numpy)", medians["decode"])
    line("  compute_features (vectorised)", medians["analyse"])
    line("  postprocess (minmax)", medians["postprocess"])
    line(f"  write {len(names)} F-curves x {n_frames} keys (foreach_set)", medians["write all"])
    baseline = (f"keyframe_points.insert x {n_frames}", medians["write one insert"])
    line(f"one F-curve, {n_frames} keys, bulk foreach_set (write_keys)", medians["write one bulk"], baseline=baseline)
    line(f"one F-curve, {n_frames} keys, keyframe_points.insert per key", medians["write one insert"])


def bench_build_job(song: Path | None, repeats: int) -> None:
    import bpy

    from engine.features import compute_features
    from engine.job import parse_job

    ext = extension_session.extension()
    scene = new_scene(song)
    if song is not None:
        assert bpy.ops.bend.bake_audio() == {"FINISHED"}
    else:  # no Audaspace in this bpy: write the features directly
        values = compute_features(synthesise(), SAMPLE_RATE, FPS, n_frames=SECONDS * FPS)
        frames = list(range(scene.frame_start, scene.frame_end + 1))
        ext.blender.audio_features.ensure(scene)  # as a bake does
        for name, curve in values.items():
            ext.blender.animation.write_keys(
                scene, ext.blender.audio_features.path(name), frames, curve / max(float(curve.max()), 1e-12)
            )
    prefs = bpy.context.preferences.addons[extension_session.MODULE].preferences
    prefs.model_source = "tiny-random"
    for text in ("a floating orb", "a gorgeous landscape"):
        bpy.ops.bend.prompt_add()
        scene.bend.prompts[-1].text = text
    ext.operators.prompts.key_crossfade(scene, [scene.frame_start, scene.frame_end])
    bpy.ops.bend.bend_add(op="rotate_r1")
    bpy.ops.bend.bend_add(op="add")
    rotation, sparkle = ext.blender.bend_stack.bends(scene)
    sparkle.selection = "random"
    drive = ext.operators.drive.add_feature_driver
    drive(scene, rotation.name, "rms", 0.0, 2 * math.pi)
    drive(scene, sparkle.name, "onset", 0.0, 1.0)
    first, last = scene.frame_start, scene.frame_end

    def frame_set_loop() -> None:
        current = scene.frame_current
        for frame in range(first, last + 1):
            scene.frame_set(frame)
        scene.frame_set(current)

    documents: list[dict] = []
    folder = temp_folder("bench-blender-job-")
    medians = interleaved(
        {
            "build": lambda: documents.append(ext.blender.scene_job.build_job(scene, prefs)),
            "frame_set": frame_set_loop,
        },
        repeats,
    )
    document = documents[-1]
    rms = ext.blender.compat.find_fcurve(scene, ext.blender.audio_features.path("rms"))
    angles = np.array([f["bends"][rotation.name] for f in document["frames"]])
    expected = np.array([2 * math.pi * rms.evaluate(f) for f in range(first, last + 1)])
    assert len(document["frames"]) == last - first + 1 and len(set(angles)) > 100  # the song drives the bend
    write_s = min(timed(lambda: ext.blender.scene_job.write_job(document, folder)) for _ in range(3))
    parse_s = min(timed(lambda: parse_job(document, folder)) for _ in range(3))
    hashes_s = min(timed(lambda: parse_job(document, folder).frame_hashes()) for _ in range(3)) - parse_s
    size = (folder / ext.blender.scene_job.JOB_NAME).stat().st_size
    print(
        f"(b) build the job: {last - first + 1} frames, 2 bends driven by features (rms, onset), a keyframed "
        f"2-prompt crossfade; median of {repeats} interleaved runs"
    )
    line("scene_job.build_job(scene, prefs)", medians["build"], goal=BUILD_GOAL_S)
    line("  its floor: the bare scene.frame_set loop over the frames", medians["frame_set"])
    print(
        f"  check: the driven R1 angle equals 2*pi*rms F-curve at every frame, max deviation "
        f"{float(np.abs(angles - expected).max()):.1e} rad"
    )
    print(
        f"  build_job / bare frame_set loop: {medians['build'] / medians['frame_set']:.2f}; "
        f"{1e6 * medians['build'] / (last - first + 1):.0f} us per frame"
    )
    line(f"write_job (JSON, {size / 1e6:.1f} MB), best of 3", write_s)
    line("engine parse_job (the engine process validating it), best of 3", parse_s)
    line("engine Job.frame_hashes (resume check), best of 3", max(hashes_s, 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from scipy.io import wavfile

    started = time.perf_counter()
    extension_session.start()
    import bpy

    start_s = time.perf_counter() - started
    ext = extension_session.extension()
    print(f"Blender side, bpy {bpy.app.version_string} module, extension loaded in {start_s:.2f} s")
    folder = temp_folder("bench-blender-")
    song = folder / "song.wav"
    wavfile.write(song, SAMPLE_RATE, (np.clip(synthesise(), -1, 1) * 32767).astype(np.int16))
    if ext.blender.compat.has_audio():
        bench_bake(song, args.repeats)
    else:
        print("(a) bake: not measured: this bpy module is built without audio (Audaspace)")
        song = None
    bench_build_job(song, args.repeats)


if __name__ == "__main__":
    try:
        main()
    finally:
        for temp in _TEMP_FOLDERS:
            shutil.rmtree(temp, ignore_errors=True)
    # Skip the interpreter's teardown, as tests/blender/conftest.py does: the PyPI bpy 4.2 module segfaults while
    # Python shuts down once an extension with Python property callbacks is registered.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
