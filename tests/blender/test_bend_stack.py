"""The bend stack as a node tree: one path for the UI, the drivers and the job; no depsgraph cycle; appendable stacks;
LoRAs with animatable weights in the job."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import blender_env
import bpy
import pytest

RMS = [0.0, 0.25, 1.0, 0.5, 0.75, 0.1]  # baked values on frames 1..6
CYCLE = "Dependency cycle detected"


def ext():
    return blender_env.extension()


def _prefs():
    prefs = bpy.context.preferences.addons[blender_env.MODULE].preferences
    prefs.model_source = "tiny-random"
    return prefs


def _bake(scene):
    """Write the RMS curve the way a bake does, on frames 1..6."""
    scene.frame_start, scene.frame_end = 1, len(RMS)
    ext().blender.animation.write_keys(scene, "bend.audio.rms", list(range(1, len(RMS) + 1)), RMS)


def test_the_ui_path_is_the_driver_path_and_the_path_the_job_reads(scene):
    _bake(scene)
    bpy.ops.bend.bend_add(op="rotate_r1")
    bpy.ops.bend.bend_add(op="clamp")
    r1, clamp = ext().blender.bend_stack.bends(scene)
    assert bpy.ops.bend.drive_from_feature(index=0, feature="rms", low=0.0, high=2.0) == {"FINISHED"}
    assert bpy.ops.bend.drive_from_feature(index=1, feature="rms", low=1.0, high=3.0, component=1) == {"FINISHED"}
    tree = scene.bend.stack
    # What Blender's UI uses for the field (Copy Data Path, Add Driver, the purple colour) is where the driver is.
    assert r1.path_from_id("param") == 'nodes["R1"].param'
    assert {(d.data_path, d.array_index) for d in tree.animation_data.drivers} == {
        (r1.path_from_id("param"), 0),
        (clamp.path_from_id("param_vector"), 1),
    }
    assert not (scene.animation_data and scene.animation_data.drivers)  # nothing on the Scene
    job = ext().blender.scene_job.build_job(scene, _prefs())
    assert [f["bends"]["R1"] for f in job["frames"]] == pytest.approx([2.0 * v for v in RMS], abs=1e-6)
    assert [f["bends"]["Clamp"][0] for f in job["frames"]] == [-1.0] * len(RMS)
    assert [f["bends"]["Clamp"][1] for f in job["frames"]] == pytest.approx([1.0 + 2.0 * v for v in RMS], abs=1e-6)


def test_the_i_key_lands_on_the_curve_the_job_reads(scene):
    scene.frame_start, scene.frame_end = 1, 9
    bpy.ops.bend.bend_add(op="add")
    bpy.ops.bend.bend_add(op="rotate_six")
    add, six = ext().blender.bend_stack.bends(scene)
    for frame, value in ((1, 0.0), (9, 4.0)):
        add.param = value
        assert add.keyframe_insert("param", frame=frame)  # what the I key does over the field
        six.param_vector[3] = -value
        assert six.keyframe_insert("param_vector", index=3, frame=frame)
    tree = scene.bend.stack
    curves = {(f.data_path, f.array_index): f for f in ext().blender.compat.action_fcurves(tree)}
    assert set(curves) == {('nodes["Add"].param', 0), ('nodes["Rotate Six"].param_vector', 3)}
    job = ext().blender.scene_job.build_job(scene, _prefs())
    add_curve = curves[add.path_from_id("param"), 0]
    six_curve = curves[six.path_from_id("param_vector"), 3]
    assert [f["bends"]["Add"] for f in job["frames"]] == pytest.approx([add_curve.evaluate(f) for f in range(1, 10)])
    assert [f["bends"]["Rotate Six"][3] for f in job["frames"]] == pytest.approx(
        [six_curve.evaluate(f) for f in range(1, 10)]
    )
    assert 0.0 < job["frames"][4]["bends"]["Add"] < 4.0  # interpolated between the keys


def test_rename_reorder_duplicate_and_remove_keep_keys_and_drivers(scene):
    _bake(scene)
    stack = ext().blender.bend_stack
    for op in ("add", "multiply", "rotate_six"):
        bpy.ops.bend.bend_add(op=op)
    add, multiply, _ = stack.bends(scene)
    add.keyframe_insert("param", frame=2)
    multiply.driver_add("param")  # the UI's Add Driver, then Drive from Feature replaces it
    ext().operators.drive.add_feature_driver(scene, "Multiply", "rms", 1.0, 2.0)
    ext().operators.drive.add_feature_driver(scene, "Rotate Six", "rms", 0.0, 4.0, "param_vector", 5)

    def state():
        scene.frame_set(3)
        return {b.name: b.param_value() for b in stack.bends(scene)}

    before = state()
    multiply.name = "Gain"
    scene.bend.stack.active_bend = 2
    bpy.ops.bend.bend_move(direction="UP")
    bpy.ops.bend.bend_move(direction="UP")
    assert [b.name for b in stack.bends(scene)] == ["Rotate Six", "Add", "Gain"]
    after = state()
    assert after["Gain"] == before["Multiply"] == pytest.approx(1.0 + RMS[2])
    assert after["Rotate Six"] == before["Rotate Six"]
    assert after["Rotate Six"] == pytest.approx([0.0] * 5 + [4.0 * RMS[2]])
    assert after["Add"] == before["Add"]

    scene.bend.stack.active_bend = 2
    bpy.ops.bend.bend_duplicate()
    assert state()["Gain.001"] == pytest.approx(1.0 + RMS[2])
    scene.bend.stack.active_bend = 0
    bpy.ops.bend.bend_remove()
    assert [b.name for b in stack.bends(scene)] == ["Add", "Gain", "Gain.001"]
    drivers = {d.data_path for d in scene.bend.stack.animation_data.drivers}
    assert drivers == {'nodes["Gain"].param', 'nodes["Gain.001"].param'}


# A child bpy process: drive a bend from RMS, change frames, build a render job, save, reload, build again. It
# prints every value it built; Blender prints its depsgraph warnings on the same stdout/stderr.
_WORKFLOW = textwrap.dedent(
    """
    import ctypes, json, os, sys
    sys.path.insert(0, sys.argv[1])
    from devtools.extension_session import MODULE, start
    ext = start()
    import bpy
    path, design = sys.argv[2], sys.argv[3]
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 6
    ext.blender.animation.write_keys(scene, "bend.audio.rms", [1, 2, 3, 4, 5, 6], [0.0, 0.25, 1.0, 0.5, 0.75, 0.1])
    bpy.ops.bend.bend_add(op="add")
    assert bpy.ops.bend.drive_from_feature(feature="rms", low=0.0, high=2.0) == {"FINISHED"}
    if design == "scene-driver":  # the previous design: a driver on the Scene that reads the Scene
        fcurve = scene.driver_add("bend.noise_phase")
        variable = fcurve.driver.variables.new()
        variable.targets[0].id_type, variable.targets[0].id = "SCENE", scene
        variable.targets[0].data_path = "bend.audio.rms"
        fcurve.driver.expression = variable.name
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.model_source = "tiny-random"
    values = []
    for frame in (2, 3, 5):
        scene.frame_set(frame)
        values.append(ext.blender.bend_stack.bends(scene)[0].param)
    values += [f["bends"]["Add"] for f in ext.blender.scene_job.build_job(scene, prefs)["frames"]]
    bpy.ops.wm.save_as_mainfile(filepath=path)
    bpy.ops.wm.open_mainfile(filepath=path)
    scene = bpy.context.scene
    scene.frame_set(4)
    values.append(ext.blender.bend_stack.bends(scene)[0].param)
    values += [f["bends"]["Add"] for f in ext.blender.scene_job.build_job(scene, prefs)["frames"]]
    print("VALUES " + json.dumps(values), flush=True)
    ctypes.CDLL(None).fflush(None)  # Blender's C output, before skipping the 4.2 module's teardown (conftest.py)
    os._exit(0)
    """
)


def _workflow(tmp_path, design: str) -> tuple[list[float], str]:
    result = subprocess.run(
        [sys.executable, "-c", _WORKFLOW, str(blender_env.ROOT), str(tmp_path / f"{design}.blend"), design],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith("VALUES ")]
    return json.loads(line[len("VALUES ") :]), output


def test_no_dependency_cycle_from_drive_to_render_job_to_reload(tmp_path):
    values, output = _workflow(tmp_path, "stack")
    assert CYCLE not in output
    driven = [2.0 * v for v in RMS]
    assert values == pytest.approx([driven[1], driven[2], driven[4], *driven, driven[3], *driven], abs=1e-6)


def test_the_cycle_check_sees_a_driver_on_the_scene_that_reads_the_scene(tmp_path):
    """The previous design (drivers on the Scene reading the Scene): the same run reports the cycle."""
    _, output = _workflow(tmp_path, "scene-driver")
    assert CYCLE in output


def test_a_stack_appended_from_another_file_brings_its_bends_and_animation(scene, tmp_path):
    stack = ext().blender.bend_stack
    _bake(scene)
    bpy.ops.bend.bend_add(op="rotate_r1")
    bpy.ops.bend.bend_add(op="erode")
    _, erode = stack.bends(scene)
    erode.normalize_dim, erode.selection = "2", "random"
    for frame, value in ((1, 1.0), (6, 6.0)):
        erode.param = value
        erode.keyframe_insert("param", frame=frame)
    ext().operators.drive.add_feature_driver(scene, "R1", "rms", 0.0, 3.0)
    scene.bend.stack.name = "Chorus Stack"
    library = tmp_path / "stacks.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(library))

    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    rms_here = [1.0 - v for v in RMS]  # this scene's own song
    scene.frame_start, scene.frame_end = 1, len(RMS)
    ext().blender.animation.write_keys(scene, "bend.audio.rms", list(range(1, 7)), rms_here)
    with bpy.data.libraries.load(str(library), link=False) as (source, target):
        assert "Chorus Stack" in source.node_groups
        target.node_groups = ["Chorus Stack"]
    scene.bend.stack = target.node_groups[0]
    assert [(b.name, b.op) for b in stack.bends(scene)] == [("R1", "rotate_r1"), ("Erode", "erode")]
    assert (stack.bends(scene)[1].normalize_dim, stack.bends(scene)[1].selection) == ("2", "random")
    [driver] = scene.bend.stack.animation_data.drivers
    assert driver.driver.variables[0].targets[0].id == scene  # reads this scene's features, not the library's
    job = ext().blender.scene_job.build_job(scene, _prefs())
    assert [f["bends"]["R1"] for f in job["frames"]] == pytest.approx([3.0 * v for v in rms_here], abs=1e-6)
    assert job["frames"][0]["bends"]["Erode"] == pytest.approx(1.0)
    assert job["frames"][-1]["bends"]["Erode"] == pytest.approx(6.0)


def test_a_node_tree_of_another_kind_is_not_a_stack(scene):
    shader = bpy.data.node_groups.new("Shader", "ShaderNodeTree")
    prop = scene.bend.bl_rna.properties["stack"]
    assert prop.fixed_type.identifier == "NodeTree"
    scene.bend.stack = shader  # Python skips the chooser's poll; the stack functions do not
    assert ext().blender.bend_stack.bends(scene) == []
    bpy.ops.bend.bend_add(op="add")
    assert scene.bend.stack != shader and scene.bend.stack.bl_idname == "BendStackTree"


# --- LoRAs ----------------------------------------------------------------------------------------------------


def test_loras_reach_the_job_with_absolute_paths_and_a_weight_per_frame(scene, tmp_path):
    _bake(scene)
    style = tmp_path / "loras" / "Style.safetensors"
    style.parent.mkdir()
    style.write_bytes(b"lora")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "song.blend"))
    assert bpy.ops.bend.lora_add(filepath=str(style)) == {"FINISHED"}
    assert bpy.ops.bend.lora_add(filepath=str(style)) == {"FINISHED"}
    style_node, other = ext().blender.bend_stack.loras(scene)
    assert (style_node.name, other.name) == ("Style", "Style.001")
    assert style_node.filepath == "//loras/Style.safetensors" and style_node.weight == 1.0
    # The artist's chorus: the weight swells with the music through one driver.
    fcurve = style_node.driver_add("weight")
    variable = fcurve.driver.variables.new()
    variable.targets[0].id_type, variable.targets[0].id = "SCENE", scene
    variable.targets[0].data_path = "bend.audio.rms"
    fcurve.driver.expression = f"0.5 * {variable.name}"
    other.weight = 0.3

    job = ext().blender.scene_job.build_job(scene, _prefs())
    assert job["loras"] == [{"name": "Style", "path": str(style)}, {"name": "Style.001", "path": str(style)}]
    assert [f["loras"]["Style"] for f in job["frames"]] == pytest.approx([0.5 * v for v in RMS], abs=1e-6)
    assert [f["loras"]["Style.001"] for f in job["frames"]] == pytest.approx([0.3] * len(RMS))

    scene.bend.stack.active_lora = 1
    assert bpy.ops.bend.lora_remove() == {"FINISHED"}
    assert [lora.name for lora in ext().blender.bend_stack.loras(scene)] == ["Style"]
    assert len(scene.bend.stack.animation_data.drivers) == 1  # the remaining LoRA keeps its driver


def test_a_job_without_loras_has_no_lora_keys(scene):
    bpy.ops.bend.bend_add(op="add")
    job = ext().blender.scene_job.build_job(scene, _prefs())
    assert "loras" not in job and all("loras" not in f for f in job["frames"])


def test_a_missing_lora_file_names_the_lora_and_the_setting(scene, tmp_path):
    error = ext().blender.scene_job.SceneJobError
    assert bpy.ops.bend.lora_add(filepath=str(tmp_path / "gone.safetensors")) == {"FINISHED"}
    with pytest.raises(error, match=r"LoRA 'gone': .*gone\.safetensors does not exist; fix Bend > LoRAs > gone > File"):
        ext().blender.scene_job.build_job(scene, _prefs())
    ext().blender.bend_stack.loras(scene)[0].filepath = ""
    with pytest.raises(error, match=r"LoRA 'gone' has no file: choose its \.safetensors in Bend > LoRAs"):
        ext().blender.scene_job.build_job(scene, _prefs())
