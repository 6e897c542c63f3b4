"""A LoRA through Blender: its weight keyed like a bend's parameter, rendered per frame by the extension's own
Render operator. Weight 0 must give exactly the frame without the LoRA, and frames with different weights share
one batch. The LoRA is a random one for tiny-random, written by the engine suite's own writer in the Engine Python
(the 4.2 and 4.5 venvs hold no torch)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import blender_env
import bpy
import numpy as np
import pytest
from PIL import Image


def _prefs():
    return bpy.context.preferences.addons[blender_env.MODULE].preferences


@pytest.fixture(scope="module")
def style_lora(tmp_path_factory):
    path = tmp_path_factory.mktemp("lora") / "style.safetensors"
    script = (
        "import sys\nsys.path.insert(0, 'tests')\n"
        "from engine.tiny_random import build_tiny_components\n"
        "from pathlib import Path\n"
        "from test_lora import lora_tensors, write_lora\n"
        "write_lora(Path(sys.argv[1]), *lora_tensors(build_tiny_components(), 'kohya', alpha=4.0))\n"
    )
    subprocess.run(
        [blender_env.ENGINE_PYTHON or sys.executable, "-c", script, str(path)],
        cwd=blender_env.ROOT,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=600,
    )
    return path


def _render(scene, folder_name: str) -> tuple[dict, list[np.ndarray]]:
    scene.bend.output_folder = f"//{folder_name}/"
    assert bpy.ops.bend.render() == {"FINISHED"}
    folder = Path(bpy.path.abspath(scene.bend.output_folder))
    job = json.loads((folder / "job.json").read_text())
    frames = [np.asarray(Image.open(folder / f"frame_{f:05d}.png")) for f in range(1, 4)]
    return job, frames


def test_a_keyed_lora_weight_renders_per_frame_and_weight_zero_is_the_bare_model(scene, tmp_path, style_lora):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "lora.blend"))
    _prefs().model_source = "tiny-random"
    scene.frame_start, scene.frame_end = 1, 3
    scene.render.resolution_x = scene.render.resolution_y = 64
    scene.render.resolution_percentage = 100
    scene.bend.steps, scene.bend.batch_size = 2, 3  # the three frames, with three weights, in one U-Net batch
    bpy.ops.bend.prompt_add()
    scene.bend.prompts[0].text = "a floating orb"
    _, bare = _render(scene, "bare")

    assert bpy.ops.bend.lora_add(filepath=str(style_lora)) == {"FINISHED"}
    (lora,) = blender_env.extension().blender.bend_stack.loras(scene)
    assert lora.path_from_id("weight") == "bend.loras[0].weight"  # on the Scene, where the Graph Editor lists it
    for frame, weight in ((1, 0.0), (2, 1.0), (3, 2.5)):
        lora.weight = weight
        lora.keyframe_insert("weight", frame=frame)  # what the I key over the field does
    curve = blender_env.extension().blender.compat.find_fcurve(scene, "bend.loras[0].weight")
    assert [tuple(k.co) for k in curve.keyframe_points] == [(1.0, 0.0), (2.0, 1.0), (3.0, 2.5)]
    job, styled = _render(scene, "styled")

    assert [f["loras"][lora.name] for f in job["frames"]] == pytest.approx([0.0, 1.0, 2.5])
    assert np.array_equal(styled[0], bare[0])  # weight 0: exactly the model without it
    assert not np.array_equal(styled[1], bare[1]) and not np.array_equal(styled[2], styled[1])
