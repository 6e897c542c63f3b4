"""Every model family through Blender: the Model panel names the family, the Target menu offers that family's
U-Net blocks, and a render with a latent bend and a U-Net bend runs through the extension's own operators.

The tiny models are written by the Engine Python (the 4.2 and 4.5 venvs hold no torch), once per session.
"""

from __future__ import annotations

import json
import subprocess
import sys

import blender_env
import bpy
import pytest

FAMILIES = ("sd2", "sd2-v", "sdxl")


def _prefs():
    return bpy.context.preferences.addons[blender_env.MODULE].preferences


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    script = (
        "import sys\nfrom engine.tiny_random import write_tiny_model\n"
        "for name in sys.argv[2:]:\n    write_tiny_model(name, sys.argv[1] + '/' + name)\n"
    )
    subprocess.run(
        [blender_env.ENGINE_PYTHON or sys.executable, "-c", script, str(root), *FAMILIES],
        cwd=blender_env.ROOT,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=600,
    )
    return {name: root / name for name in FAMILIES}


def _family(scene):
    return blender_env.extension().blender.properties.scene_model_family(scene)


def _target_menu(bend):
    """The targets the menu accepts: Blender refuses to set an enum to an identifier its items lack."""
    accepted = []
    for target in blender_env.extension().blender.model_family.ALL_UNET_TARGETS:
        try:
            bend.unet_target = target
        except TypeError:
            continue
        accepted.append(target)
    return accepted


@pytest.mark.parametrize("name", FAMILIES)
def test_the_panel_names_the_family_and_the_menu_offers_its_blocks(scene, tiny_models, name):
    scene.bend.model_source = str(tiny_models[name])
    family = _family(scene)
    assert family.name == name
    bpy.ops.bend.bend_add(op="add")
    bend = blender_env.extension().blender.bend_stack.bends(scene)[-1]
    blocks = 3 if name == "sdxl" else 4
    assert _target_menu(bend) == [
        "conv_in",
        *(f"down_blocks.{i}" for i in range(blocks)),
        "mid_block",
        *(f"up_blocks.{i}" for i in range(blocks)),
        "conv_out",
    ]


def test_a_target_the_family_lacks_is_refused_naming_the_setting(scene, tiny_models, tmp_path):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "f.blend"))
    scene.bend.model_source = "tiny-random"  # SD 1.x: four down blocks
    bpy.ops.bend.bend_add(op="add")
    bend = blender_env.extension().blender.bend_stack.bends(scene)[-1]
    bend.place, bend.unet_target = "UNET", "down_blocks.3"
    scene.bend.model_source = str(tiny_models["sdxl"])  # three
    with pytest.raises(RuntimeError, match=r"Bend 'Add': this model's U-Net has no such block.*Bend > Target"):
        bpy.ops.bend.render()


def test_sdxl_below_its_native_size_warns_naming_the_resolution(scene, tiny_models):
    scene.bend.model_source = str(tiny_models["sdxl"])
    scene.render.resolution_x = scene.render.resolution_y = 512
    scene.render.resolution_percentage = 100
    (note,) = _family(scene).advice(512, 512, scene.bend.guidance)
    assert "1024×1024" in note and "Output Properties > Format > Resolution" in note


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_renders_with_a_latent_and_a_unet_bend(scene, tiny_models, tmp_path, name):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "f.blend"))
    _prefs().model_source = "tiny-random"
    scene.bend.model_source = str(tiny_models[name])
    scene.frame_start, scene.frame_end = 1, 2
    scene.render.resolution_x = scene.render.resolution_y = 64
    scene.render.resolution_percentage = 100
    scene.bend.steps = 2
    bpy.ops.bend.prompt_add()
    scene.bend.prompts[0].text = "a floating orb"
    bpy.ops.bend.bend_add(op="rotate_r1")
    bpy.ops.bend.bend_add(op="multiply")
    stack = blender_env.extension().blender.bend_stack.bends(scene)
    stack[0].param = 1.0
    stack[1].place, stack[1].unet_target, stack[1].param = "UNET", "up_blocks.1", 0.5
    assert bpy.ops.bend.render() == {"FINISHED"}
    folder = tmp_path / "bend" / scene.name
    assert sorted(p.name for p in folder.glob("frame_*.png")) == ["frame_00001.png", "frame_00002.png"]
    job = json.loads((folder / "job.json").read_text())
    assert [b.get("unet", {}).get("target") for b in job["bends"]] == [None, "up_blocks.1"]
