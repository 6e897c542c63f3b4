"""Preview speed in one Blender session: the first ``bend.preview_frame`` against the ones after it.

Runs in the bpy module with this checkout loaded as the extension (``devtools.extension_session``), on a saved
scene (tiny-random, 64×64, 20 steps at 50% size, one R1 bend). The first preview starts the engine process
(Python, torch and diffusers imports) and loads the model; every later one reuses both. Each later preview turns
the bend's knob first, so it really renders a new frame rather than finding the last one on disk. The figure is
(first preview) / (median of the later ones); the goal is at least 3 (a second preview under a third of the first).
Then the process is released and the same is measured again, so the pair is measured twice side by side.

Then the warm round trip of Live Preview at 64² (100 % of a 64×64 scene) with 1 to 4 steps: from the change (the
bend's knob turned, then Live Preview's ``update``, which builds the request and sends it to the warm engine) to
the image loaded in Blender (its ``receive``). Goal: under 0.3 s. Run with ``OMP_NUM_THREADS=1`` (set here unless
the environment says otherwise), as the engine's own threads are 1 in this scene's model settings.

    python bench/bench_preview.py [--repeats 5] [--round-trips 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before anything imports torch
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from devtools import extension_session  # noqa: E402

GOAL = 3.0
ROUND_TRIP_GOAL = 0.3  # seconds, at 64² with 1-4 steps


def timed_preview(bpy) -> float:
    started = time.perf_counter()
    assert bpy.ops.bend.preview_frame() == {"FINISHED"}
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="warm previews per round")
    parser.add_argument("--round-trips", type=int, default=7, help="Live Preview round trips per step count")
    args = parser.parse_args()
    extension_session.start()
    import bpy

    preview = extension_session.extension().operators.preview
    engine = extension_session.extension().blender.warm_engine.ENGINE
    folder = Path(tempfile.mkdtemp(prefix="bench-preview-"))
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = 64
    scene.render.resolution_percentage = 100
    scene.frame_start, scene.frame_end = 1, 24
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "preview.blend"))
    prefs = bpy.context.preferences.addons[extension_session.MODULE].preferences
    prefs.model_source, prefs.cpu_threads = "tiny-random", 1
    scene.bend.steps = 20
    scene.bend.preview.steps, scene.bend.preview.scale = 0, 50
    bpy.ops.bend.bend_add(op="rotate_r1")
    bend = scene.bend.bends["R1"]
    print(
        f"bend.preview_frame, tiny-random 64×64 at 50%, {scene.bend.steps} steps; {args.repeats} warm previews "
        "per round"
    )
    ratios = []
    for round_number in (1, 2):
        engine.release()
        bend.param = 0.0
        first = timed_preview(bpy)
        warm = []
        for i in range(args.repeats):
            bend.param = 0.1 * (i + 1) + round_number  # a new frame every time
            warm.append(timed_preview(bpy))
        later = statistics.median(warm)
        ratios.append(first / later)
        print(
            f"  round {round_number}: first {first:.2f} s, later median {later:.3f} s "
            f"(min {min(warm):.3f}, max {max(warm):.3f}) -> first/later = {first / later:.1f}x"
        )
    engine.release()
    worst = min(ratios)
    print(f"first/later ratio: {worst:.1f}x at worst (goal >= {GOAL:.0f}x): {'met' if worst >= GOAL else 'NOT met'}")
    live_round_trips(bpy, preview.LIVE, scene, bend, args.round_trips)


def live_round_trips(bpy, live, scene, bend, repeats: int) -> None:
    """Live Preview's round trip, change to image in Blender, at 64² on a warm engine, for 1 to 4 steps."""
    scene.bend.preview.scale, scene.bend.preview.compare = 100, False
    print(f"Live Preview round trip (change -> image in Blender), 64×64, warm engine; median of {repeats}")
    live.start()
    try:
        live.update(bpy.context)  # starts the engine and loads the model: untimed
        settle(bpy, live)
        worst = 0.0
        for steps in (1, 2, 3, 4):
            scene.bend.preview.steps = steps
            times = []
            for i in range(repeats + 1):
                bend.param = 3.0 + steps + 0.01 * i  # a new frame every time
                started = time.perf_counter()
                live.dirty = True  # what the depsgraph handler does after a change in the UI
                settle(bpy, live)
                if i:  # the first one of each step count is a warm-up
                    times.append(time.perf_counter() - started)
            median = statistics.median(times)
            worst = max(worst, median)
            print(
                f"  {steps} step(s): {median * 1000:.0f} ms (min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})"
            )
        met = "met" if worst < ROUND_TRIP_GOAL else "NOT met"
        print(f"round trip: {worst * 1000:.0f} ms at worst (goal < {ROUND_TRIP_GOAL * 1000:.0f} ms): {met}")
    finally:
        live.stop()
        extension_session.extension().blender.warm_engine.ENGINE.release()


def settle(bpy, live) -> None:
    live.update(bpy.context)
    while not live.idle:
        live.receive(timeout=120)
        live.update(bpy.context)
    assert live.shown and live.shown[-1][0] == live.serial, live.status  # the newest request was shown


if __name__ == "__main__":
    main()
