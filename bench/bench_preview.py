"""Preview speed in one Blender session: the first ``bend.preview_frame`` against the ones after it.

Runs in the bpy module with this checkout loaded as the extension (``devtools.extension_session``), on a saved
scene (tiny-random, 64×64, 20 steps at 50% size, one R1 bend). The first preview starts the engine process
(Python, torch and diffusers imports) and loads the model; every later one reuses both. Each later preview turns
the bend's knob first, so it really renders a new frame rather than finding the last one on disk. The figure is
(first preview) / (median of the later ones); the goal is at least 3 (a second preview under a third of the first).
Then the process is released and the same is measured again, so the pair is measured twice side by side.

    python bench/bench_preview.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from devtools import extension_session  # noqa: E402

GOAL = 3.0


def timed_preview(bpy) -> float:
    started = time.perf_counter()
    assert bpy.ops.bend.preview_frame() == {"FINISHED"}
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="warm previews per round")
    args = parser.parse_args()
    extension_session.start()
    import bpy

    preview = extension_session.extension().operators.preview
    folder = Path(tempfile.mkdtemp(prefix="bench-preview-"))
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = 64
    scene.render.resolution_percentage = 100
    scene.frame_start, scene.frame_end = 1, 24
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "preview.blend"))
    bpy.context.preferences.addons[extension_session.MODULE].preferences.model_source = "tiny-random"
    scene.bend.steps = 20
    scene.bend.preview.steps, scene.bend.preview.scale = 0, 50
    bpy.ops.bend.bend_add(op="rotate_r1")
    bend = scene.bend.bends[0]
    print(
        f"bend.preview_frame, tiny-random 64×64 at 50%, {scene.bend.steps} steps; {args.repeats} warm previews "
        "per round"
    )
    ratios = []
    for round_number in (1, 2):
        preview.SERVER.release()
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
    preview.SERVER.release()
    worst = min(ratios)
    print(f"first/later ratio: {worst:.1f}x at worst (goal >= {GOAL:.0f}x): {'met' if worst >= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
