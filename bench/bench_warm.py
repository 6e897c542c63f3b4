"""A warm re-render against a cold one: *Render Bent Frames* with the warm engine against a process of its own.

Runs in the bpy module with this checkout loaded as the extension (``devtools.extension_session``), on a saved
scene: tiny-random, one frame, 64×64, 2 DDIM steps, one R1 bend, one CPU thread (the job's threads and
``OMP_NUM_THREADS=1``). Before every timed render the bend's value changes, so the frame really renders again.

- cold: ``BEND_WARM_ENGINE=0``, what ``blender -b`` does: each render starts ``python -m engine render``, which
  imports torch and diffusers and loads the model;
- warm: ``BEND_WARM_ENGINE=1``, what the UI does: the render is a request to the warm engine, loaded once before
  the timed runs.

Both are timed around ``bpy.ops.bend.render()`` (job written, engine run, frame in the Sequencer), interleaved
and rotating which goes first; the figures are medians. Then, on an 8-frame scene with the warm engine, a full
render against a re-render after changing one frame's key (which renders that frame alone).

    python bench/bench_warm.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before anything imports torch (the bpy module does not)
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from devtools import extension_session  # noqa: E402

WARM = "BEND_WARM_ENGINE"


def _bend(scene):
    return scene.bend.bends["R1"]


def _scene(bpy, folder: Path, frames: int):
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = 64
    scene.render.resolution_percentage = 100
    scene.frame_start, scene.frame_end = 1, frames
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / f"warm{frames}.blend"))
    prefs = bpy.context.preferences.addons[extension_session.MODULE].preferences
    prefs.model_source, prefs.cpu_threads = "tiny-random", 1
    scene.bend.steps, scene.bend.batch_size = 2, 1
    bpy.ops.bend.bend_add(op="rotate_r1")
    return scene


def timed_render(bpy, warm: bool) -> float:
    os.environ[WARM] = "1" if warm else "0"
    started = time.perf_counter()
    assert bpy.ops.bend.render() == {"FINISHED"}
    return time.perf_counter() - started


def manifest_lines(folder: Path) -> int:
    path = folder / "manifest.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed renders of each kind")
    args = parser.parse_args()
    extension_session.start()
    import bpy

    engine = extension_session.extension().blender.warm_engine.ENGINE
    folder = Path(tempfile.mkdtemp(prefix="bench-warm-"))
    scene = _scene(bpy, folder, 1)
    bend = _bend(scene)
    print(
        "bend.render, tiny-random, 1 frame 64×64, 2 DDIM steps, 1 thread; the bend changes before every render; "
        f"median of {args.repeats}"
    )
    bend.param = 0.05
    timed_render(bpy, warm=True)  # the warm engine starts and loads the model: untimed
    times: dict[bool, list[float]] = {True: [], False: []}
    for i in range(args.repeats):
        for j, warm in enumerate((True, False) if i % 2 == 0 else (False, True)):
            bend.param = 0.1 * (2 * i + j + 1)
            times[warm].append(timed_render(bpy, warm))
    cold, warm = statistics.median(times[False]), statistics.median(times[True])
    print(f"  cold (a process per render): {cold:.2f} s (min {min(times[False]):.2f}, max {max(times[False]):.2f})")
    print(f"  warm (the warm engine):      {warm:.3f} s (min {min(times[True]):.3f}, max {max(times[True]):.3f})")
    print(f"  warm re-render: {cold / warm:.1f}x faster than a cold one")

    engine.release()
    scene = _scene(bpy, folder, 8)
    bend = _bend(scene)
    for frame in range(1, 9):
        bend.param = 0.3 * frame
        bend.keyframe_insert("param", frame=frame)
    output = folder / "bend" / scene.name
    os.environ[WARM] = "1"
    assert bpy.ops.bend.preview_frame() == {"FINISHED"}  # starts the engine and loads the model: untimed
    before = manifest_lines(output)
    full = timed_render(bpy, warm=True)
    full_frames = manifest_lines(output) - before
    scene.frame_set(5)
    bend.param = 4.0
    bend.keyframe_insert("param", frame=5)
    before = manifest_lines(output)
    again = timed_render(bpy, warm=True)
    again_frames = manifest_lines(output) - before
    print("8 frames, warm engine: a render, then a re-render after changing the key of frame 5")
    print(f"  render:    {full:.2f} s, {full_frames} frames rendered")
    print(f"  re-render: {again:.2f} s, {again_frames} frame(s) rendered")
    engine.release()


if __name__ == "__main__":
    main()
