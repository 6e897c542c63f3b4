"""Files saved by earlier versions open with every bend, LoRA, key and driver where this version keeps them: lists
on the Scene animated at index paths, baked features as custom properties of the Scene.

The fixtures in tests/data are real files saved by earlier versions with bpy 4.2 and 5.0:
- ``legacy_bends_*``: bends in ``scene.bend.bends`` keyed by name (``bend.bends["Add"].param``; one by index), the
  feature at ``bend.audio.rms`` (aeb6b8f; tests/data/make_legacy_stack.py);
- ``stack_bends_*``: the node-tree stack (``nodes["Add"].param`` on ``scene.bend.stack``), a keyed LoRA, prompts
  keyed by name, features at ``bend.audio.*``, and an object's drivers reading a node and a feature (18c419e;
  tests/data/make_stack_file.py).
The 5.0 files are read only by 5.0 and later.
"""

from __future__ import annotations

from pathlib import Path

import blender_env
import bpy
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
NEWER = pytest.mark.skipif(bpy.app.version < (5, 0, 0), reason="a 5.0 file is newer than this Blender")
FIXTURES = [
    pytest.param("legacy_bends_4_2.blend", id="list-saved-by-4.2"),
    pytest.param("legacy_bends_5_0.blend", id="list-saved-by-5.0", marks=NEWER),
    pytest.param("stack_bends_4_2.blend", id="tree-saved-by-4.2"),
    pytest.param("stack_bends_5_0.blend", id="tree-saved-by-5.0", marks=NEWER),
]
STACK_FIXTURES = [p for p in FIXTURES if p.values[0].startswith("stack")]
BENDS = ["R1", "Add", "Rotate Six", "Multiply", "Grit"]


def ext():
    return blender_env.extension()


def _curves(scene):
    return {(f.data_path, f.array_index): f for f in ext().blender.compat.action_fcurves(scene)}


def _drivers(scene):
    return {(d.data_path, d.array_index): d for d in scene.animation_data.drivers}


def _open(name, tmp_path):
    """The fixture, copied and opened with the current extension (the load handler migrates it)."""
    path = tmp_path / name
    path.write_bytes((DATA / name).read_bytes())
    bpy.ops.wm.open_mainfile(filepath=str(path))
    return bpy.context.scene


@pytest.fixture(params=FIXTURES)
def migrated(request, tmp_path):
    return _open(request.param, tmp_path)


@pytest.fixture(params=STACK_FIXTURES)
def migrated_stack(request, tmp_path):
    return _open(request.param, tmp_path)


def test_every_bend_moves_to_the_list_in_order_with_its_settings(migrated):
    scene = migrated
    bends = ext().blender.bend_stack.bends(scene)
    assert [(b.name, b.op) for b in bends] == list(
        zip(BENDS, ["rotate_r1", "add", "rotate_six", "multiply", "erode"], strict=True)
    )
    _, add, six, multiply, grit = bends
    assert (add.selection, add.fraction, add.selection_seed) == ("random", pytest.approx(0.25), 7)
    assert six.latent_layer == 3
    assert (multiply.place, multiply.unet_target, multiply.step_start, multiply.step_end) == (
        "UNET",
        "up_blocks.1",
        2,
        9,
    )
    assert (grit.normalize_dim, grit.enabled) == ("1", False)
    assert ext().blender.bend_stack.active_bend(scene) == six  # the active bend stays active
    assert scene.bend.stack is None
    assert not [t for t in bpy.data.node_groups if t.bl_idname == "BendStackTree"]


def test_every_key_moves_with_its_handles_interpolation_and_modifiers(migrated):
    scene = migrated
    curves = _curves(scene)
    bend_curves = {key for key in curves if key[0].startswith("bend.bends")}
    assert bend_curves == {
        ("bend.bends[1].param", 0),
        ("bend.bends[2].param_vector", 0),
        ("bend.bends[2].param_vector", 2),
        ("bend.bends[3].param", 0),  # keyed at its index path bend.bends[3] in the list file
        ("bend.bends[4].param", 0),  # keyed as "Erode", then renamed
    }
    add = curves["bend.bends[1].param", 0]
    keys = add.keyframe_points
    assert [tuple(k.co) for k in keys] == [(1.0, 0.0), (6.0, 1.5), (12.0, -0.5)]
    assert (keys[1].handle_left_type, keys[1].handle_right_type) == ("FREE", "FREE")
    assert tuple(keys[1].handle_left) == (4.0, 2.5) and tuple(keys[1].handle_right) == (8.0, 0.25)
    assert [k.interpolation for k in keys] == ["BEZIER", "BEZIER", "CONSTANT"]
    assert [m.type for m in add.modifiers] == ["CYCLES"]
    six = [[tuple(k.co) for k in curves["bend.bends[2].param_vector", i].keyframe_points] for i in (0, 2)]
    assert six == [[(1.0, 0.25), (12.0, 1.0)], [(1.0, -0.25), (12.0, -1.0)]]
    assert [tuple(k.co) for k in curves["bend.bends[3].param", 0].keyframe_points] == [(1.0, 1.0), (12.0, 3.0)]
    assert [tuple(k.co) for k in curves["bend.bends[4].param", 0].keyframe_points] == [(4.0, 3.0)]
    # The baked feature is a custom property now, with every key.
    assert "bend_rms" in scene and not any(path.startswith("bend.audio") for path, _ in curves)
    rms = curves['["bend_rms"]', 0]
    assert [k.co[0] for k in rms.keyframe_points] == list(range(1, 13))
    assert [k.co[1] for k in rms.keyframe_points] == pytest.approx([(f - 1) / 11 for f in range(1, 13)])
    # Each curve is where Blender's UI looks for the field it animates.
    bends = ext().blender.bend_stack.bends(scene)
    assert bends[1].path_from_id("param") == "bend.bends[1].param"


def test_every_driver_moves_with_its_variables_targets_and_modifiers(migrated):
    scene = migrated
    drivers = _drivers(scene)
    assert set(drivers) == {("bend.bends[0].param", 0), ("bend.bends[2].param_vector", 4)}
    r1 = drivers["bend.bends[0].param", 0]
    assert (r1.driver.type, r1.driver.expression) == ("SCRIPTED", "0.0 + 6.0 * feature")
    assert r1.driver.is_simple_expression and r1.driver.is_valid
    [variable] = r1.driver.variables
    target = variable.targets[0]
    assert (variable.name, variable.type, target.id_type, target.id, target.data_path) == (
        "feature",
        "SINGLE_PROP",
        "SCENE",
        scene,
        '["bend_rms"]',
    )
    [generator] = r1.modifiers
    assert generator.type == "GENERATOR" and tuple(generator.coefficients) == (0.5, 2.0)
    six = drivers["bend.bends[2].param_vector", 4]
    assert six.driver.type == "AVERAGE" and len(six.modifiers) == 0 and six.driver.is_valid
    feature = "onset" if ('["bend_onset"]', 0) in _curves(scene) else "rms"  # the tree fixture's reads the onsets
    assert [(v.name, v.targets[0].id, v.targets[0].data_path) for v in six.driver.variables] == [
        ("a", scene, f'["bend_{feature}"]'),
        ("b", scene, "frame_current"),
    ]


def test_the_migrated_stack_renders_what_the_old_file_animated(migrated):
    scene = migrated
    prefs = bpy.context.preferences.addons[blender_env.MODULE].preferences
    prefs.model_source = "tiny-random"
    (Path(bpy.data.filepath).parent / "style.safetensors").write_bytes(b"lora")  # the tree fixture's LoRA file
    curves = _curves(scene)
    rms = curves['["bend_rms"]', 0]
    averaged = curves.get(('["bend_onset"]', 0), rms)
    multiply = curves["bend.bends[3].param", 0]
    job = ext().blender.scene_job.build_job(scene, prefs)
    assert [b["name"] for b in job["bends"]] == ["R1", "Add", "Rotate Six", "Multiply"]  # Grit is disabled
    for record in job["frames"]:
        frame, bends = record["frame"], record["bends"]
        assert bends["R1"] == pytest.approx(0.5 + 2.0 * 6.0 * rms.evaluate(frame), abs=1e-5)  # driver + Generator
        assert bends["Rotate Six"][4] == pytest.approx((averaged.evaluate(frame) + frame) / 2, abs=1e-5)
        assert bends["Multiply"] == pytest.approx(multiply.evaluate(frame))
    assert job["frames"][5]["bends"]["Add"] == pytest.approx(1.5)
    assert (job["frames"][0]["bends"]["Multiply"], job["frames"][-1]["bends"]["Multiply"]) == (1.0, 3.0)
    if scene.bend.loras:
        assert [f["loras"]["Style"] for f in job["frames"]] == pytest.approx(
            [curves["bend.loras[0].weight", 0].evaluate(f) for f in range(1, 13)]
        )
        assert (job["frames"][0]["loras"]["Style"], job["frames"][-1]["loras"]["Style"]) == (0.0, 1.0)


def test_a_node_tree_stack_brings_its_lora_prompts_and_the_drivers_that_read_it(migrated_stack):
    scene = migrated_stack
    [lora] = ext().blender.bend_stack.loras(scene)
    assert (lora.name, lora.filepath) == ("Style", "//style.safetensors")
    curves = _curves(scene)
    assert [tuple(k.co) for k in curves["bend.loras[0].weight", 0].keyframe_points] == [(1.0, 0.0), (12.0, 1.0)]
    # The prompts' weights, keyed by name before, are on the paths their fields have.
    prompts = scene.bend.prompts
    assert [p.text for p in prompts] == ["a floating orb", "a gorgeous landscape"]
    for k, prompt in enumerate(prompts):
        keys = curves[prompt.path_from_id("weight"), 0].keyframe_points
        assert [tuple(key.co) for key in keys] == [(1.0, 1.0 - k), (12.0, float(k))]
    # An object's drivers that read R1's node and the baked RMS read R1's item and the custom property now.
    watcher = bpy.data.objects["Watcher"]
    reads = [
        (v.targets[0].id_type, v.targets[0].id, v.targets[0].data_path)
        for d in watcher.animation_data.drivers
        for v in d.driver.variables
    ]
    assert reads == [("SCENE", scene, "bend.bends[0].param"), ("SCENE", scene, '["bend_rms"]')]
    scene.frame_set(12)
    assert tuple(watcher.location[:2]) == pytest.approx((0.5 + 2.0 * 6.0, 1.0))
    assert lora.weight == pytest.approx(1.0)


def test_a_migrated_file_saves_and_reopens_without_migrating_again(migrated, tmp_path):
    path = tmp_path / "migrated.blend"
    before = set(_curves(migrated)), set(_drivers(migrated))
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    assert ext().blender.migration.migrate_all() == []
    bpy.ops.wm.open_mainfile(filepath=str(path))
    scene = bpy.context.scene
    assert [b.name for b in ext().blender.bend_stack.bends(scene)] == BENDS
    assert (set(_curves(scene)), set(_drivers(scene))) == before


def test_a_linked_scene_is_left_to_its_own_file(tmp_path):
    """A scene linked from an older file is read-only here: the migration skips it (and its tree) without error."""
    path = tmp_path / "stack_bends_4_2.blend"
    path.write_bytes((DATA / "stack_bends_4_2.blend").read_bytes())
    bpy.ops.wm.read_homefile(use_empty=True)
    with bpy.data.libraries.load(str(path), link=True) as (_, target):
        target.scenes = ["Scene"]
    [linked] = target.scenes
    assert linked.library is not None and linked.bend.stack is not None
    assert ext().blender.migration.migrate_all() == []
    assert linked.bend.stack is not None and len(linked.bend.bends) == 0
