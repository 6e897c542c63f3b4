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


# Single files are named as artists' files are: the name tells SD 2.x's v-prediction (768) from ε.
SINGLE_FILES = {"sd2": "sd2-base-512.safetensors", "sd2-v": "sd2-768-v.safetensors", "sdxl": "sdxl-base.safetensors"}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Each family's tiny model as a diffusers folder, as an original-layout single file beside it (written by the
    engine suite's own writer), and as a repo in a Hugging Face cache of its own."""
    root = tmp_path_factory.mktemp("families")
    script = (
        "import sys\nsys.path.insert(0, 'tests')\n"
        "from engine.tiny_random import build_tiny_family, write_tiny_model\n"
        "from hf_cache import cache_repo\n"
        "from test_families import save_family_checkpoint\n"
        "from pathlib import Path\n"
        f"files = {SINGLE_FILES!r}\n"
        "root = Path(sys.argv[1])\n"
        "for name in sys.argv[2:]:\n"
        "    folder = write_tiny_model(name, root / name)\n"
        "    save_family_checkpoint(name, build_tiny_family(name), root / files[name])\n"
        "    cache_repo(root / 'hf' / 'hub', 'tiny/' + name, folder)\n"
    )
    subprocess.run(
        [blender_env.ENGINE_PYTHON or sys.executable, "-c", script, str(root), *FAMILIES],
        cwd=blender_env.ROOT,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=600,
    )
    return {name: root / name for name in FAMILIES} | {"root": root}


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
    scene.bend.model_source = str(tiny_models[name])
    job = _render_two_frames(scene, tmp_path)
    assert [b.get("unet", {}).get("target") for b in job["bends"]] == [None, "up_blocks.1"]


@pytest.mark.parametrize("name", FAMILIES)
def test_a_single_file_of_each_family_renders_with_its_config_folder(scene, tiny_models, tmp_path, name):
    """An original-layout .safetensors: the family from its keys and name; the tiny architecture needs its own
    config (Config Folder), as any checkpoint that is not its family's standard one does."""
    single = tiny_models["root"] / SINGLE_FILES[name]
    scene.bend.model_source = str(single)
    assert _family(scene).name == name
    scene.bend.model_config = str(tiny_models[name])
    _render_two_frames(scene, tmp_path)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_cached_repo_id_of_each_family_renders_offline(scene, tiny_models, tmp_path, monkeypatch, name):
    monkeypatch.setenv("HF_HUB_CACHE", str(tiny_models["root"] / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the engine process inherits both
    scene.bend.model_source = f"tiny/{name}"
    if name == "sd2-v":
        scene.bend.model_family = "sd2-v"  # a repo named "tiny/sd2-v" says nothing the detection reads
    assert _family(scene).name == name
    _render_two_frames(scene, tmp_path)


def _render_two_frames(scene, tmp_path):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "f.blend"))
    _prefs().model_source = "tiny-random"
    scene.frame_start, scene.frame_end = 1, 2
    scene.render.resolution_x = scene.render.resolution_y = 64
    scene.render.resolution_percentage = 100
    scene.bend.steps = 2
    bpy.ops.bend.prompt_add()
    scene.bend.prompts[0].text = "a floating orb"
    bpy.ops.bend.bend_add(op="rotate_r1")
    bpy.ops.bend.bend_add(op="multiply")
    bends = blender_env.extension().blender.bend_stack.bends(scene)
    bends[0].param = 1.0
    bends[1].place, bends[1].unet_target, bends[1].param = "UNET", "up_blocks.1", 0.5
    assert bpy.ops.bend.render() == {"FINISHED"}
    folder = tmp_path / "bend" / scene.name
    assert sorted(p.name for p in folder.glob("frame_*.png")) == ["frame_00001.png", "frame_00002.png"]
    return json.loads((folder / "job.json").read_text())
