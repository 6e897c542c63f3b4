"""The bend stack as lists on the Scene: one path for the UI, the animation editors, the drivers and the job; list
operations keep every item's animation; no depsgraph cycle; LoRAs with animatable weights in the job."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import blender_env
import bpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

RMS = [0.0, 0.25, 1.0, 0.5, 0.75, 0.1]  # baked values on frames 1..6
CYCLE = "Dependency cycle detected"


def ext():
    return blender_env.extension()


def _prefs():
    prefs = bpy.context.preferences.addons[blender_env.MODULE].preferences
    prefs.model_source = "tiny-random"
    return prefs


def _bake(scene, values=RMS):
    """Write the RMS feature the way a bake does, on frames 1..6."""
    scene.frame_start, scene.frame_end = 1, len(values)
    features = ext().blender.audio_features
    features.ensure(scene)
    ext().blender.animation.write_keys(scene, features.path("rms"), list(range(1, len(values) + 1)), values)


def _paths(scene):
    """(data path, component) of the scene's keyed curves and of its drivers."""
    keyed = {(f.data_path, f.array_index) for f in ext().blender.compat.action_fcurves(scene)}
    drivers = {(d.data_path, d.array_index) for d in (scene.animation_data.drivers if scene.animation_data else [])}
    return keyed, drivers


def test_the_ui_path_is_the_driver_path_and_the_path_the_job_reads(scene):
    _bake(scene)
    bpy.ops.bend.bend_add(op="rotate_r1")
    bpy.ops.bend.bend_add(op="clamp")
    r1, clamp = ext().blender.bend_stack.bends(scene)
    assert bpy.ops.bend.drive_from_feature(index=0, feature="rms", low=0.0, high=2.0) == {"FINISHED"}
    assert bpy.ops.bend.drive_from_feature(index=1, feature="rms", low=1.0, high=3.0, component=1) == {"FINISHED"}
    # What Blender's UI uses for the field (Copy Data Path, Add Driver, the purple colour) is where the driver is.
    assert r1.path_from_id("param") == "bend.bends[0].param"
    assert _paths(scene)[1] == {(r1.path_from_id("param"), 0), (clamp.path_from_id("param_vector"), 1)}
    variable = scene.animation_data.drivers.find("bend.bends[0].param").driver.variables[0]
    assert (variable.targets[0].id, variable.targets[0].data_path) == (scene, '["bend_rms"]')
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
    curves = {(f.data_path, f.array_index): f for f in ext().blender.compat.action_fcurves(scene)}
    assert set(curves) == {("bend.bends[0].param", 0), ("bend.bends[1].param_vector", 3)}
    job = ext().blender.scene_job.build_job(scene, _prefs())
    add_curve = curves[add.path_from_id("param"), 0]
    six_curve = curves[six.path_from_id("param_vector"), 3]
    assert [f["bends"]["Add"] for f in job["frames"]] == pytest.approx([add_curve.evaluate(f) for f in range(1, 10)])
    assert [f["bends"]["Rotate Six"][3] for f in job["frames"]] == pytest.approx(
        [six_curve.evaluate(f) for f in range(1, 10)]
    )
    assert 0.0 < job["frames"][4]["bends"]["Add"] < 4.0  # interpolated between the keys


def test_the_graph_editor_and_drivers_editor_list_the_bends_and_features(scene):
    """The animation editors show what the artist animated: a Scene's curves (not a node tree's) are listed."""
    _bake(scene)
    bpy.ops.bend.bend_add(op="add")
    bpy.ops.bend.bend_add(op="rotate_six")
    assert bpy.ops.bend.drive_from_feature(index=0, feature="rms") == {"FINISHED"}
    six = ext().blender.bend_stack.bends(scene)[1]
    six.keyframe_insert("param_vector", index=2, frame=3)
    window = bpy.context.window_manager.windows[0]
    area = window.screen.areas[0]
    area.type = "GRAPH_EDITOR"
    space = area.spaces.active
    space.dopesheet.show_only_selected = False
    region = next(r for r in area.regions if r.type == "WINDOW")
    listed = {}
    for mode in ("FCURVES", "DRIVERS"):
        space.mode = mode
        with bpy.context.temp_override(window=window, area=area, region=region):
            listed[mode] = {(f.data_path, f.array_index) for f in bpy.context.visible_fcurves}
    assert listed["FCURVES"] == {('["bend_rms"]', 0), (six.path_from_id("param_vector"), 2)}
    assert listed["DRIVERS"] == {("bend.bends[0].param", 0)}


def test_rename_reorder_duplicate_and_remove_keep_keys_and_drivers(scene):
    _bake(scene)
    stack = ext().blender.bend_stack
    for op in ("add", "multiply", "rotate_six"):
        bpy.ops.bend.bend_add(op=op)
    add, multiply, _ = stack.bends(scene)
    for frame, value in ((1, 0.5), (6, 3.0)):
        add.param = value
        add.keyframe_insert("param", frame=frame)
    multiply.driver_add("param")  # the UI's Add Driver, then Drive from Feature replaces it
    ext().operators.drive.add_feature_driver(scene, "Multiply", "rms", 1.0, 2.0)
    ext().operators.drive.add_feature_driver(scene, "Rotate Six", "rms", 0.0, 4.0, "param_vector", 5)
    # An object whose driver reads Multiply's parameter follows it through the list changes.
    watcher = bpy.data.objects.new("Watcher", None)
    scene.collection.objects.link(watcher)
    reader = watcher.driver_add("location", 0)
    variable = reader.driver.variables.new()
    variable.targets[0].id_type, variable.targets[0].id = "SCENE", scene
    variable.targets[0].data_path = multiply.path_from_id("param")
    reader.driver.expression = variable.name

    def state():
        scene.frame_set(3)
        return {b.name: b.param_value() for b in stack.bends(scene)}

    before = state()
    multiply.name = "Gain"  # renaming moves no path
    scene.bend.bend_index = 2
    assert bpy.ops.bend.bend_move(direction="UP") == {"FINISHED"}
    assert bpy.ops.bend.bend_move(direction="UP") == {"FINISHED"}
    assert bpy.ops.bend.bend_move(direction="UP") == {"CANCELLED"}  # already first
    assert scene.bend.bend_index == 0  # the moved bend stays the active one
    assert [b.name for b in stack.bends(scene)] == ["Rotate Six", "Add", "Gain"]
    after = state()
    assert after["Gain"] == before["Multiply"] == pytest.approx(1.0 + RMS[2])
    assert after["Rotate Six"] == before["Rotate Six"]
    assert after["Rotate Six"] == pytest.approx([0.0] * 5 + [4.0 * RMS[2]])
    assert after["Add"] == before["Add"]
    assert variable.targets[0].data_path == "bend.bends[2].param"
    assert watcher.location[0] == pytest.approx(1.0 + RMS[2])

    scene.bend.bend_index = 1
    assert bpy.ops.bend.bend_duplicate() == {"FINISHED"}
    assert [b.name for b in stack.bends(scene)] == ["Rotate Six", "Add", "Add.001", "Gain"]
    assert scene.bend.bend_index == 2
    assert state()["Add.001"] == state()["Add"] == before["Add"]
    assert variable.targets[0].data_path == "bend.bends[3].param"
    scene.bend.bend_index = 0
    assert bpy.ops.bend.bend_remove() == {"FINISHED"}
    assert [b.name for b in stack.bends(scene)] == ["Add", "Add.001", "Gain"]
    assert state() == pytest.approx({"Add": before["Add"], "Add.001": before["Add"], "Gain": 1.0 + RMS[2]})
    assert _paths(scene) == (
        {('["bend_rms"]', 0), ("bend.bends[0].param", 0), ("bend.bends[1].param", 0)},
        {("bend.bends[2].param", 0)},
    )
    assert variable.targets[0].data_path == "bend.bends[2].param"


def test_names_stay_unique_in_each_list(scene):
    for _ in range(3):
        bpy.ops.bend.bend_add(op="rotate_r1")
    bends = ext().blender.bend_stack.bends(scene)
    assert [b.name for b in bends] == ["R1", "R1.001", "R1.002"]
    bends[0].name = "R1.002"  # the job keys values by name: a clash is renamed as Blender renames its own
    assert [b.name for b in bends] == ["R1.003", "R1.001", "R1.002"]
    bends[1].name = "Chorus"
    assert bends[1].name == "Chorus"


def test_removing_a_prompt_keeps_the_others_weights_on_their_fields(scene):
    for _ in range(3):
        bpy.ops.bend.prompt_add()
    scene.timeline_markers.new("a", frame=1)
    scene.timeline_markers.new("b", frame=6)
    scene.timeline_markers.new("c", frame=12)
    assert bpy.ops.bend.crossfade_at_markers() == {"FINISHED"}
    prompts = scene.bend.prompts
    assert {f.data_path for f in ext().blender.compat.action_fcurves(scene)} == {
        p.path_from_id("weight") for p in prompts
    }
    scene.bend.prompt_index = 0
    assert bpy.ops.bend.prompt_remove() == {"FINISHED"}
    assert [p.name for p in prompts] == ["Prompt 2", "Prompt 3"]
    scene.frame_set(6)
    assert [p.weight for p in prompts] == pytest.approx([1.0, 0.0])
    scene.frame_set(12)
    assert [p.weight for p in prompts] == pytest.approx([0.0, 1.0])


# A child bpy process: drive a bend from RMS, key a LoRA, change frames, build a render job, save, reload, build
# again. It prints every value it built; Blender prints its depsgraph warnings on the same stdout/stderr.
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
    ext.blender.audio_features.ensure(scene)
    rms = ext.blender.audio_features.path("rms")
    ext.blender.animation.write_keys(scene, rms, [1, 2, 3, 4, 5, 6], [0.0, 0.25, 1.0, 0.5, 0.75, 0.1])
    bpy.ops.bend.bend_add(op="add")
    assert bpy.ops.bend.drive_from_feature(feature="rms", low=0.0, high=2.0) == {"FINISHED"}
    bpy.ops.bend.prompt_add()
    scene.bend.prompts[0].keyframe_insert("weight", frame=1)
    if design == "rna-read":  # a driver on the Scene that reads an RNA property of the same Scene
        fcurve = scene.driver_add("bend.noise_phase")
        variable = fcurve.driver.variables.new()
        variable.targets[0].id_type, variable.targets[0].id = "SCENE", scene
        variable.targets[0].data_path = "bend.guidance"
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


def test_the_cycle_check_sees_a_driver_on_the_scene_that_reads_an_rna_property_of_the_scene(tmp_path):
    """Why the features are custom properties: reading an RNA property of the same Scene is reported as a cycle."""
    _, output = _workflow(tmp_path, "rna-read")
    assert CYCLE in output


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
    assert style_node.path_from_id("weight") == "bend.loras[0].weight"
    assert (style_node.name, other.name) == ("Style", "Style.001")
    assert style_node.filepath == "//loras/Style.safetensors" and style_node.weight == 1.0
    # The artist's chorus: the weight swells with the music through one driver.
    fcurve = style_node.driver_add("weight")
    variable = fcurve.driver.variables.new()
    variable.targets[0].id_type, variable.targets[0].id = "SCENE", scene
    variable.targets[0].data_path = ext().blender.audio_features.path("rms")
    fcurve.driver.expression = f"0.5 * {variable.name}"
    other.weight = 0.3

    job = ext().blender.scene_job.build_job(scene, _prefs())
    assert job["loras"] == [{"name": "Style", "path": str(style)}, {"name": "Style.001", "path": str(style)}]
    assert [f["loras"]["Style"] for f in job["frames"]] == pytest.approx([0.5 * v for v in RMS], abs=1e-6)
    assert [f["loras"]["Style.001"] for f in job["frames"]] == pytest.approx([0.3] * len(RMS))

    scene.bend.lora_index = 0
    assert bpy.ops.bend.lora_remove() == {"FINISHED"}
    assert [lora.name for lora in ext().blender.bend_stack.loras(scene)] == ["Style.001"]
    assert len(scene.animation_data.drivers) == 0  # Style's driver went with it
    assert bpy.ops.bend.lora_add(filepath=str(style)) == {"FINISHED"}  # the name is free again
    assert [lora.name for lora in ext().blender.bend_stack.loras(scene)] == ["Style.001", "Style"]


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


# --- list operations, fuzzed -------------------------------------------------------------------------------------

_OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "up", "down", "duplicate"]), st.integers(0, 7)), max_size=12
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=_OPERATIONS)
def test_any_sequence_of_list_operations_keeps_each_bends_own_animation(scene, operations):
    """Every bend carries its identity in its name (``B3``, a copy ``B3.001``) and in its animation: keys to 3 at
    frame 1 and -3 at frame 2 on odd ones, a driver "3" on even ones. After any sequence of Add, Remove, Move Up,
    Move Down and Duplicate through the operators, each bend's value is its own, and no curve is left over."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    settings_ = scene.bend
    made = 0

    def add():
        nonlocal made
        made += 1
        bpy.ops.bend.bend_add(op="add")
        bend = settings_.bends[-1]
        bend.name = f"B{made}"
        if made % 2:
            for frame, value in ((1, made), (2, -made)):
                bend.param = value
                bend.keyframe_insert("param", frame=frame)
        else:
            bend.driver_add("param").driver.expression = f"{made}.0"

    for _ in range(3):
        add()
    for operation, index in operations:
        if operation == "add":
            add()
            continue
        if not settings_.bends:
            continue
        settings_.bend_index = index % len(settings_.bends)
        if operation == "remove":
            bpy.ops.bend.bend_remove()
        elif operation == "duplicate":
            bpy.ops.bend.bend_duplicate()
        else:
            bpy.ops.bend.bend_move(direction=operation.upper())

    uids = [int(b.name[1:].split(".")[0]) for b in settings_.bends]
    for frame, sign in ((1, 1), (2, -1)):
        scene.frame_set(frame)
        expected = [uid * sign if uid % 2 else uid for uid in uids]
        assert [b.param for b in settings_.bends] == pytest.approx(expected), (operations, frame)
    keyed, drivers = _paths(scene)
    assert keyed == {(f"bend.bends[{i}].param", 0) for i, uid in enumerate(uids) if uid % 2}
    assert drivers == {(f"bend.bends[{i}].param", 0) for i, uid in enumerate(uids) if not uid % 2}
