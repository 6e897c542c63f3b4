"""The bend stack's operators in Blender: list operations keep each bend's animation, drivers are simple expressions.

The stack itself (paths, cycles, appending) is tests/blender/test_bend_stack.py.
"""

from __future__ import annotations

import blender_env
import bpy
import pytest


def _bends(scene):
    return blender_env.extension().blender.bend_stack.bends(scene)


def _curve_value(scene, name, frame):
    scene.frame_set(frame)
    return scene.bend.bends[name].param


def test_reordering_renaming_and_removing_keep_animation_with_its_bend(scene):
    for op in ("add", "multiply", "rotate_r1"):
        bpy.ops.bend.bend_add(op=op)
    assert [b.name for b in _bends(scene)] == ["Add", "Multiply", "R1"]
    # Keyed the way the I key keys them, at the field's own path.
    for bend, value in zip(_bends(scene), (1.0, 2.0, 3.0), strict=True):
        bend.param = value
        bend.keyframe_insert("param", frame=5)
    scene.bend.bend_index = 0
    bpy.ops.bend.bend_move(direction="DOWN")
    bpy.ops.bend.bend_move(direction="DOWN")
    assert [b.name for b in _bends(scene)] == ["Multiply", "R1", "Add"]
    assert scene.bend.bend_index == 2  # the moved bend stays the active one
    assert bpy.ops.bend.bend_move(direction="DOWN") == {"CANCELLED"}  # already last
    assert [b.name for b in _bends(scene)] == ["Multiply", "R1", "Add"] and scene.bend.bend_index == 2
    for b in _bends(scene):
        b.param = 0.0
    assert [_curve_value(scene, n, 5) for n in ("Add", "Multiply", "R1")] == [1.0, 2.0, 3.0]

    scene.bend.bends["Multiply"].name = "Gain"
    assert _curve_value(scene, "Gain", 5) == 2.0
    scene.bend.bends["R1"].name = "Gain"  # names stay unique
    assert [b.name for b in _bends(scene)] == ["Gain", "Gain.001", "Add"]
    assert _curve_value(scene, "Gain.001", 5) == 3.0

    scene.bend.bend_index = 0
    bpy.ops.bend.bend_remove()
    assert [b.name for b in _bends(scene)] == ["Gain.001", "Add"] and scene.bend.bend_index == 0
    assert [_curve_value(scene, n, 5) for n in ("Gain.001", "Add")] == [3.0, 1.0]
    # The removed bend's curve went with it; the others' follow their bends' new positions.
    paths = {f.data_path for f in blender_env.extension().blender.compat.action_fcurves(scene)}
    assert paths == {"bend.bends[0].param", "bend.bends[1].param"}


def test_duplicate_copies_settings_keys_and_driver(scene):
    ext = blender_env.extension()
    bpy.ops.bend.bend_add(op="erode")
    bpy.ops.bend.bend_add(op="add")
    scene.bend.bend_index = 0
    bend = _bends(scene)[0]
    bend.normalize_dim = "1"
    bend.param = 4.0
    bend.keyframe_insert("param", frame=3)
    ext.operators.drive.add_feature_driver(scene, bend.name, "rms", 1.0, 5.0)
    add = _bends(scene)[1]
    add.param = 7.0
    add.keyframe_insert("param", frame=3)
    bpy.ops.bend.bend_duplicate()
    assert [b.name for b in _bends(scene)] == ["Erode", "Erode.001", "Add"]  # right after its source
    copy = _bends(scene)[1]
    assert copy.op == "erode" and copy.normalize_dim == "1" and scene.bend.bend_index == 1
    assert copy.path_from_id("param") == "bend.bends[1].param"
    keys = ext.blender.compat.find_fcurve(scene, "bend.bends[1].param").keyframe_points
    assert [tuple(k.co) for k in keys] == [(3.0, 4.0)]
    assert scene.animation_data.drivers.find("bend.bends[1].param").driver.expression == "1.0 + 4.0 * feature"
    # The source keeps its own curves: a copy, not a move.
    assert ext.blender.compat.find_fcurve(scene, "bend.bends[0].param") is not None
    assert scene.animation_data.drivers.find("bend.bends[0].param") is not None
    # The bend after the copy moved one place down with its keys, and has no driver.
    assert [tuple(k.co) for k in ext.blender.compat.find_fcurve(scene, "bend.bends[2].param").keyframe_points] == [
        (3.0, 7.0)
    ]
    assert scene.animation_data.drivers.find("bend.bends[2].param") is None


def test_feature_driver_is_simple_and_removable(scene):
    bpy.ops.bend.bend_add(op="add")
    bend = _bends(scene)[0]
    bend.param = 0.25
    bend.keyframe_insert("param", frame=1)
    assert bpy.ops.bend.drive_from_feature(feature="onset", low=-1.0, high=3.0) == {"FINISHED"}
    fcurve = scene.animation_data.drivers.find(bend.path_from_id("param"))
    assert fcurve.driver.is_simple_expression and len(fcurve.modifiers) == 0
    features = blender_env.extension().blender.audio_features
    features.ensure(scene)  # as a bake does
    blender_env.extension().blender.animation.write_keys(scene, features.path("onset"), [1, 2], [0.5, 0.75])
    scene.frame_set(1)
    assert bend.param == pytest.approx(1.0)
    assert bpy.ops.bend.remove_feature_driver() == {"FINISHED"}
    scene.frame_set(2)
    scene.frame_set(1)
    assert bend.param == pytest.approx(0.25)  # the keyframes are back in charge
    with pytest.raises(RuntimeError, match="no driver"):
        bpy.ops.bend.remove_feature_driver()


def test_driving_a_bend_without_a_parameter_is_refused(scene):
    bpy.ops.bend.bend_add(op="ablate")
    with pytest.raises(RuntimeError, match="has no parameter"):
        bpy.ops.bend.drive_from_feature(feature="rms")


def test_crossfade_at_markers(scene):
    with pytest.raises(RuntimeError, match="at least two prompts"):
        bpy.ops.bend.crossfade_at_markers()
    for _ in range(3):
        bpy.ops.bend.prompt_add()
    with pytest.raises(RuntimeError, match="needs 3 timeline markers"):
        bpy.ops.bend.crossfade_at_markers()
    for frame in (1, 5, 9):
        scene.timeline_markers.new(f"m{frame}", frame=frame)
    assert bpy.ops.bend.crossfade_at_markers() == {"FINISHED"}
    weights = []
    for frame in (1, 3, 5, 9):
        scene.frame_set(frame)
        weights.append([round(p.weight, 3) for p in scene.bend.prompts])
    assert weights == [[1, 0, 0], [0.5, 0.5, 0], [0, 1, 0], [0, 0, 1]]
    scene.bend.prompt_index = 0
    bpy.ops.bend.prompt_remove()
    scene.frame_set(9)
    assert [round(p.weight, 3) for p in scene.bend.prompts] == [0, 1]  # the others kept their own curves
