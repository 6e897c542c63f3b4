"""Files saved by the previous version (bends in ``scene.bend.bends``, animation on the Scene) open with every bend,
key and driver on the scene's bend stack.

The fixtures in tests/data are real files saved by the previous extension (aeb6b8f) with bpy 4.2 and 5.0: how they
were made is tests/data/make_legacy_stack.py. The 5.0 file is read only by 5.0 and later.
"""

from __future__ import annotations

from pathlib import Path

import blender_env
import bpy
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
FIXTURES = [
    pytest.param("legacy_bends_4_2.blend", id="saved-by-4.2"),
    pytest.param(
        "legacy_bends_5_0.blend",
        id="saved-by-5.0",
        marks=pytest.mark.skipif(bpy.app.version < (5, 0, 0), reason="a 5.0 file is newer than this Blender"),
    ),
]


def ext():
    return blender_env.extension()


def _curves(tree):
    return {(f.data_path, f.array_index): f for f in ext().blender.compat.action_fcurves(tree)}


def _drivers(tree):
    return {(d.data_path, d.array_index): d for d in tree.animation_data.drivers}


@pytest.fixture(params=FIXTURES)
def migrated(request, tmp_path):
    """The fixture, copied and opened with the current extension (the load handler migrates it)."""
    path = tmp_path / request.param
    path.write_bytes((DATA / request.param).read_bytes())
    bpy.ops.wm.open_mainfile(filepath=str(path))
    return bpy.context.scene


def test_every_bend_moves_to_the_stack_in_order_with_its_settings(migrated):
    scene = migrated
    bends = ext().blender.bend_stack.bends(scene)
    assert [(b.name, b.op, b.position) for b in bends] == [
        ("R1", "rotate_r1", 0),
        ("Add", "add", 1),
        ("Rotate Six", "rotate_six", 2),
        ("Multiply", "multiply", 3),
        ("Grit", "erode", 4),
    ]
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
    assert len(scene.bend.bends) == 0  # the legacy list is cleared


def test_every_key_moves_with_its_handles_interpolation_and_modifiers(migrated):
    scene = migrated
    curves = _curves(scene.bend.stack)
    assert set(curves) == {
        ('nodes["Add"].param', 0),
        ('nodes["Rotate Six"].param_vector', 0),
        ('nodes["Rotate Six"].param_vector', 2),
        ('nodes["Multiply"].param', 0),  # keyed at its index path bend.bends[3] in the old file
        ('nodes["Grit"].param', 0),  # keyed as "Erode", then renamed
    }
    add = curves['nodes["Add"].param', 0]
    keys = add.keyframe_points
    assert [tuple(k.co) for k in keys] == [(1.0, 0.0), (6.0, 1.5), (12.0, -0.5)]
    assert (keys[1].handle_left_type, keys[1].handle_right_type) == ("FREE", "FREE")
    assert tuple(keys[1].handle_left) == (4.0, 2.5) and tuple(keys[1].handle_right) == (8.0, 0.25)
    assert [k.interpolation for k in keys] == ["BEZIER", "BEZIER", "CONSTANT"]
    assert [m.type for m in add.modifiers] == ["CYCLES"]
    six = [[tuple(k.co) for k in curves['nodes["Rotate Six"].param_vector', i].keyframe_points] for i in (0, 2)]
    assert six == [[(1.0, 0.25), (12.0, 1.0)], [(1.0, -0.25), (12.0, -1.0)]]
    assert [tuple(k.co) for k in curves['nodes["Multiply"].param', 0].keyframe_points] == [(1.0, 1.0), (12.0, 3.0)]
    assert [tuple(k.co) for k in curves['nodes["Grit"].param', 0].keyframe_points] == [(4.0, 3.0)]
    # The Scene keeps only what is its own: the baked feature.
    assert [f.data_path for f in ext().blender.animation.animation_curves(scene)] == ["bend.audio.rms"]


def test_every_driver_moves_with_its_variables_targets_and_modifiers(migrated):
    scene = migrated
    drivers = _drivers(scene.bend.stack)
    assert set(drivers) == {('nodes["R1"].param', 0), ('nodes["Rotate Six"].param_vector', 4)}
    r1 = drivers['nodes["R1"].param', 0]
    assert (r1.driver.type, r1.driver.expression) == ("SCRIPTED", "0.0 + 6.0 * feature")
    assert r1.driver.is_simple_expression and r1.driver.is_valid
    [variable] = r1.driver.variables
    target = variable.targets[0]
    assert (variable.name, variable.type, target.id_type, target.id, target.data_path) == (
        "feature",
        "SINGLE_PROP",
        "SCENE",
        scene,
        "bend.audio.rms",
    )
    [generator] = r1.modifiers
    assert generator.type == "GENERATOR" and tuple(generator.coefficients) == (0.5, 2.0)
    six = drivers['nodes["Rotate Six"].param_vector', 4]
    assert six.driver.type == "AVERAGE" and len(six.modifiers) == 0
    assert [(v.name, v.targets[0].id, v.targets[0].data_path) for v in six.driver.variables] == [
        ("a", scene, "bend.audio.rms"),
        ("b", scene, "frame_current"),
    ]


def test_the_migrated_stack_renders_what_the_old_file_animated(migrated):
    scene = migrated
    prefs = bpy.context.preferences.addons[blender_env.MODULE].preferences
    prefs.model_source = "tiny-random"
    rms = ext().blender.compat.find_fcurve(scene, "bend.audio.rms")
    multiply = _curves(scene.bend.stack)['nodes["Multiply"].param', 0]
    job = ext().blender.scene_job.build_job(scene, prefs)
    assert [b["name"] for b in job["bends"]] == ["R1", "Add", "Rotate Six", "Multiply"]  # Grit is disabled
    for record in job["frames"]:
        frame, bends = record["frame"], record["bends"]
        assert bends["R1"] == pytest.approx(0.5 + 2.0 * 6.0 * rms.evaluate(frame), abs=1e-5)  # driver + Generator
        assert bends["Rotate Six"][4] == pytest.approx((rms.evaluate(frame) + frame) / 2, abs=1e-5)
        assert bends["Multiply"] == pytest.approx(multiply.evaluate(frame))
    assert job["frames"][5]["bends"]["Add"] == pytest.approx(1.5)
    assert (job["frames"][0]["bends"]["Multiply"], job["frames"][-1]["bends"]["Multiply"]) == (1.0, 3.0)


def test_a_migrated_file_saves_and_reopens_without_migrating_again(migrated, tmp_path):
    path = tmp_path / "migrated.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    assert ext().blender.migration.migrate_all() == []
    bpy.ops.wm.open_mainfile(filepath=str(path))
    scene = bpy.context.scene
    assert [b.name for b in ext().blender.bend_stack.bends(scene)] == ["R1", "Add", "Rotate Six", "Multiply", "Grit"]
    assert len(_curves(scene.bend.stack)) == 5 and len(_drivers(scene.bend.stack)) == 2
    assert len([t for t in bpy.data.node_groups if t.bl_idname == "BendStackTree"]) == 1
