"""Artist iteration in Blender: ``bend.preview_frame`` (a warm engine process), ``bend.sweep`` (the paper's grids)."""

from __future__ import annotations

import math

import blender_env
import bpy
import numpy as np
import pytest
from PIL import Image


def _prefs():
    return bpy.context.preferences.addons[blender_env.MODULE].preferences


def _engine():
    return blender_env.extension().blender.warm_engine.ENGINE


def _read(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture
def bent_scene(scene, tmp_path):
    """A saved tiny-random scene (64×64, 2 steps) with R1 at layer 0; the engine process is released after."""
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "bent.blend"))
    _prefs().model_source = "tiny-random"
    scene.bend.steps = 2
    scene.bend.batch_size = 1
    bpy.ops.bend.bend_add(op="rotate_r1")
    scene.bend.bends["R1"].param = 1.0
    scene.frame_set(3)
    yield scene
    _engine().release()


def test_preview_shows_the_frame_keeps_the_process_warm_and_touches_no_output(bent_scene, tmp_path):
    server = _engine()
    bent_scene.bend.preview.scale = 50
    assert bpy.ops.bend.preview_frame() == {"FINISHED"}
    image = bpy.data.images["Bend Preview"]
    assert tuple(image.size) == (32, 32)  # 50% of 64×64
    pid = server.engine.process.pid

    bent_scene.bend.bends["R1"].param = 2.0  # the artist turns the knob: the model stays loaded
    bent_scene.bend.preview.compare = True
    assert bpy.ops.bend.preview_frame() == {"FINISHED"}
    assert server.engine.process.pid == pid
    image = bpy.data.images["Bend Preview"]
    assert image.size[0] > 2 * 32  # unbent | bent, side by side with labels
    preview = _read(bpy.path.abspath(image.filepath))
    assert preview.shape[1] == image.size[0]

    # Nothing reached the Sequencer or the render output.
    assert not [s for s in blender_env.extension().blender.compat.all_strips(bent_scene) if s.type == "IMAGE"]
    assert not (tmp_path / "bend").exists()

    assert bpy.ops.bend.preview_release() == {"FINISHED"}
    assert not server.running
    with pytest.raises(RuntimeError):  # nothing left to release: the button is greyed out
        bpy.ops.bend.preview_release()


def test_the_preview_process_is_released_after_the_idle_time(bent_scene):
    server = _engine()
    assert bpy.ops.bend.preview_frame() == {"FINISHED"}
    assert server.release_if_idle(600) is not None and server.running
    assert server.release_if_idle(0) is None and not server.running
    assert bpy.ops.bend.preview_frame() == {"FINISHED"}  # and starts again on the next preview


def test_preview_errors_name_the_setting_and_keep_the_server(bent_scene):
    bent_scene.frame_set(40)
    with pytest.raises(RuntimeError, match="Frame 40 is outside the scene's range 1-12"):
        bpy.ops.bend.preview_frame()
    bent_scene.frame_set(3)
    bent_scene.bend.bends["R1"].op = "invert"
    bent_scene.bend.bends["R1"].param = 0.0
    with pytest.raises(RuntimeError, match=r"Preview failed: .*'R1' \(invert\) at frame 3: .* divides by zero"):
        bpy.ops.bend.preview_frame()
    assert _engine().running  # a bad setting does not cost the warm model


def test_sweep_writes_a_labelled_sheet_beside_the_blend_whose_tiles_are_renders(bent_scene, tmp_path):
    sweep = bent_scene.bend.sweep
    sweep.columns, sweep.layers = 4, "0, 2"
    assert bpy.ops.bend.sweep() == {"FINISHED"}
    sheet = tmp_path / "bent_R1_sweep.png"
    assert sheet.is_file() and bpy.data.images[sheet.name].size[0] > 4 * 64
    rows = tmp_path / "bend" / bent_scene.name / "sweeps" / "R1"
    assert sorted(p.name for p in rows.glob("row_*")) == ["row_00-sweep", "row_01-sweep"]

    # Tile (layer 2, angle π/2) is the frame an ordinary render makes with those settings.
    bend = bent_scene.bend.bends["R1"]
    bend.latent_layer, bend.param = 2, math.pi / 2
    assert bpy.ops.bend.render(frame_start=3, frame_end=3) == {"FINISHED"}
    rendered = _read(tmp_path / "bend" / bent_scene.name / "frame_00003.png")
    assert np.array_equal(_read(rows / "row_01-sweep" / "frame_00001.png"), rendered)


def test_sweep_settings_errors(bent_scene, tmp_path):
    bent_scene.bend.sweep.layers = "0, middle"
    with pytest.raises(RuntimeError, match=r"Bend > Sweep > Layers: 'middle' is neither"):
        bpy.ops.bend.sweep()
    bpy.ops.bend.bend_add(op="contract")
    with pytest.raises(RuntimeError, match=r"takes 16 numbers and a sweep varies one"):
        bpy.ops.bend.sweep()
    bpy.ops.wm.read_homefile(use_empty=True)  # unsaved: there is no "beside the .blend"
    bpy.ops.bend.bend_add(op="rotate_r1")
    with pytest.raises(RuntimeError, match=r"Save the \.blend file first"):
        bpy.ops.bend.sweep()
