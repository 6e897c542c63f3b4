"""Every catalog operator from the Bends panel to a job the engine accepts; vector parameters keyed and driven.

The engine validates jobs in a child process (``engine.job.load_job`` under the suite's Engine Python), as a render
does: the 4.2 and 4.5 test venvs have no torch, and the job file is the contract between the two sides anyway.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import blender_env
import bpy
import pytest
from helpers import write_song

needs_audio = pytest.mark.skipif(
    not blender_env.extension().blender.compat.has_audio(), reason="the PyPI bpy 4.2 module is built without Audaspace"
)

# Reads each job with the engine's own parser and prints what it understood: per bend its op, options and selection,
# per frame its parameters and phase, and the noise mode with the phases the engine would give the frames itself.
_VALIDATE = """
import json, sys
from engine.job import load_job
from engine.noise import default_phases
for path in sys.argv[1:]:
    job = load_job(path)
    print(json.dumps({
        "bends": {p.bend.name: [p.bend.op, dict(p.bend.options), vars(p.bend.selection)] for p in job.bends},
        "params": [{name: value for name, value in f.params.items()} for f in job.frames],
        "phases": [f.phase for f in job.frames],
        "noise_mode": job.noise_mode,
        "default_phases": default_phases(job.noise_mode, len(job.frames)),
    }))
"""


def ext():
    return blender_env.extension()


def _bends(scene):
    """The scene's bends in stack order."""
    return ext().blender.bend_stack.bends(scene)


def _prefs():
    return bpy.context.preferences.addons[blender_env.MODULE].preferences


def _build(scene) -> dict:
    _prefs().model_source = "tiny-random"
    return ext().blender.scene_job.build_job(scene, _prefs())


def _engine_reads(tmp_path, *documents) -> list[dict]:
    """What the engine's job parser makes of each document (it raises on any it refuses)."""
    paths = []
    for i, document in enumerate(documents):
        paths.append(ext().blender.scene_job.write_job(document, tmp_path / f"job{i}"))
    result = subprocess.run(
        [blender_env.ENGINE_PYTHON or sys.executable, "-c", _VALIDATE, *map(str, paths)],
        cwd=blender_env.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


def _valid_value(spec):
    """A value inside the parameter's domain that is not its default, so a lost value shows."""
    param = spec.param
    if param.is_vector:
        return [d + 0.25 * (i + 1) for i, d in enumerate(param.default)]  # increasing: clamp's low ≤ high holds
    for candidate in (param.default + 0.5, param.default + 2.0):
        if param.domain.problem(candidate) is None:
            return candidate
    raise AssertionError(f"no valid value for {spec.name}")


def _option_values(spec) -> dict:
    """A non-default value for each of the operator's options, set through the generated BendItem properties."""
    chosen = {}
    for option in spec.option_specs:
        if option.kind == "choice":
            chosen[option.name] = option.choices[-1]
        elif option.nullable:
            chosen[option.name] = option.high
        elif option.size > 1:
            chosen[option.name] = [0, 3]
        else:
            chosen[option.name] = 3 if option.channel_index else 12345
    return chosen


def _set_option(bend, option, value):
    if option.kind == "choice" or option.nullable:
        setattr(bend, option.name, str(value))
    else:
        setattr(bend, option.name, value)


def test_every_operator_in_the_catalog_goes_through_the_panel_into_a_job_the_engine_accepts(scene, tmp_path):
    catalog = ext().engine.catalog
    expected = {}
    for i, (op, spec) in enumerate(catalog.OPERATORS.items()):
        assert bpy.ops.bend.bend_add(op=op) == {"FINISHED"}
        bend = _bends(scene)[-1]
        options = _option_values(spec)
        for option in spec.option_specs:
            _set_option(bend, option, options[option.name])
        # every selection kind, spread over the operators
        bend.selection = catalog.SELECTIONS[i % len(catalog.SELECTIONS)]
        bend.fraction, bend.selection_seed, bend.selection_index = 0.25, 7, 1
        value = None
        if spec.takes_param:
            value = _valid_value(spec)
            if spec.param.is_vector:
                bend.param_vector[: spec.param.length] = value
            else:
                bend.param = value
        expected[bend.name] = (op, options, bend.selection, value)
    job = _build(scene)
    [seen] = _engine_reads(tmp_path, job)

    assert set(seen["bends"]) == set(expected)
    for name, (op, options, selection, value) in expected.items():
        seen_op, seen_options, seen_selection = seen["bends"][name]
        assert (seen_op, seen_options) == (op, options), name
        assert seen_selection["kind"] == selection
        if selection.startswith("random"):
            assert (seen_selection["fraction"], seen_selection["seed"]) == (0.25, 7)
        elif selection in ("channel", "row", "column"):
            assert seen_selection["index"] == 1
        if value is None:
            assert name not in seen["params"][0]
        else:
            # a list exactly as long as the operator's vector, or one number
            assert seen["params"][0][name] == pytest.approx(value, abs=1e-6), name
            assert isinstance(job["frames"][0]["bends"][name], list) is catalog.OPERATORS[op].param.is_vector


def test_an_option_outside_the_catalog_range_is_clamped_by_its_property(scene):
    bpy.ops.bend.bend_add(op="gaussian_noise")
    bend = _bends(scene)[0]
    bend.seed = -5  # the catalog's lower bound 0 is the property's
    assert bend.seed == 0 and bend.operator_options() == {"seed": 0}
    bend.seed = 41
    assert bend.operator_options() == {"seed": 41}


def test_adding_a_vector_bend_starts_at_its_neutral_value(scene):
    bpy.ops.bend.bend_add(op="contract")
    bpy.ops.bend.bend_add(op="clamp")
    contract, clamp = _bends(scene)
    assert contract.param_value() == [1.0 if i == j else 0.0 for i in range(4) for j in range(4)]
    assert clamp.param_value() == [-1.0, 1.0]


def test_a_keyed_vector_component_lands_in_the_job_per_frame(scene, tmp_path):
    bpy.ops.bend.bend_add(op="add")
    bpy.ops.bend.bend_add(op="rotate_six")
    bend = scene.bend.bends["Rotate Six"]
    # Keyed as the Graph Editor keys it: one component, with its array index.
    for frame, value in ((1, 0.0), (5, 1.0), (12, -0.5)):
        bend.param_vector[2] = value
        assert bend.keyframe_insert("param_vector", index=2, frame=frame)
    curves = [f for f in ext().blender.compat.action_fcurves(scene) if f.data_path.endswith("param_vector")]
    assert [(f.data_path, f.array_index) for f in curves] == [("bend.bends[1].param_vector", 2)]  # that component
    scene.bend.bend_index = 1
    bpy.ops.bend.bend_move(direction="UP")  # the animation stays with its bend
    assert [b.name for b in _bends(scene)] == ["Rotate Six", "Add"]
    curves = [f for f in ext().blender.compat.action_fcurves(scene) if f.data_path.endswith("param_vector")]
    assert [(f.data_path, f.array_index) for f in curves] == [("bend.bends[0].param_vector", 2)]

    job = _build(scene)
    angles = [frame["bends"]["Rotate Six"] for frame in job["frames"]]
    assert all(len(a) == 6 for a in angles)
    a03 = [a[2] for a in angles]
    assert a03[0] == pytest.approx(0.0) and a03[4] == pytest.approx(1.0) and a03[11] == pytest.approx(-0.5)
    assert 0.0 < a03[2] < 1.0  # interpolated between the keys
    assert all(a[:2] + a[3:] == [0.0] * 5 for a in angles)
    [seen] = _engine_reads(tmp_path, job)
    assert [p["Rotate Six"][2] for p in seen["params"]] == pytest.approx(a03, abs=1e-6)


def test_a_non_finite_component_names_the_bend_the_frame_and_the_component(scene):
    bpy.ops.bend.bend_add(op="contract")
    bend = _bends(scene)[0]
    bend.keyframe_insert("param_vector", index=5, frame=1)
    [fcurve] = ext().blender.compat.action_fcurves(scene)
    fcurve.keyframe_points[0].co = (1.0, math.nan)  # a broken key; the field itself clamps to finite numbers
    with pytest.raises(ext().blender.scene_job.SceneJobError, match=r"Bend 'Contract' at frame 1: m11 is nan"):
        _build(scene)


def test_duplicating_a_vector_bend_copies_each_components_keys_and_drivers(scene):
    bpy.ops.bend.bend_add(op="rotate_six")
    bend = _bends(scene)[0]
    for frame, value in ((1, 0.5), (9, 2.0)):
        bend.param_vector[4] = value
        bend.keyframe_insert("param_vector", index=4, frame=frame)
    ext().operators.drive.add_feature_driver(scene, bend.name, "embed_1", 0.0, 3.0, "param_vector", 1)
    bpy.ops.bend.bend_duplicate()
    copy_path = "bend.bends[1].param_vector"
    assert scene.bend.bends["Rotate Six.001"].path_from_id("param_vector") == copy_path
    for path in ("bend.bends[0].param_vector", copy_path):  # the source keeps its own, the copy has the same
        keyed = [f for f in ext().blender.compat.action_fcurves(scene) if f.data_path == path]
        keys = [(f.array_index, [tuple(k.co) for k in f.keyframe_points]) for f in keyed]
        assert keys == [(4, [(1.0, 0.5), (9.0, 2.0)])], path
        driven = [d for d in scene.animation_data.drivers if d.data_path == path]
        assert [(d.array_index, d.driver.expression) for d in driven] == [(1, "0.0 + 3.0 * feature")], path


def test_drive_from_feature_drives_one_component_of_a_vector(scene):
    bpy.ops.bend.bend_add(op="clamp")
    with pytest.raises(RuntimeError, match=r"components 0 to 1 \(low, high\): set Component below 2"):
        bpy.ops.bend.drive_from_feature(feature="rms", component=2)
    assert bpy.ops.bend.drive_from_feature(feature="rms", low=1.0, high=2.0, component=1) == {"FINISHED"}
    [driver] = scene.animation_data.drivers
    assert (driver.data_path, driver.array_index) == ("bend.bends[0].param_vector", 1)
    features = ext().blender.audio_features
    features.ensure(scene)  # as a bake does
    ext().blender.animation.write_keys(scene, features.path("rms"), [1, 2], [0.5, 0.75])
    scene.frame_set(1)
    assert _bends(scene)[0].param_value() == pytest.approx([-1.0, 1.5])


def test_remove_driver_also_finds_drivers_the_ui_added(scene):
    bpy.ops.bend.bend_add(op="rotate_six")
    bend = _bends(scene)[0]
    bend.driver_add("param_vector", 3)  # what the UI's Add Driver makes
    assert bpy.ops.bend.remove_feature_driver() == {"FINISHED"}
    assert len(scene.animation_data.drivers) == 0


@needs_audio
def test_drive_from_embedding_drives_every_component_after_a_bake(scene, tmp_path):
    catalog = ext().engine.catalog
    song = write_song(tmp_path / "song.wav", seconds=2.0)
    ext().blender.compat.strips(scene).new_sound("song", str(song), 1, 1)
    scene.frame_end = 24
    assert bpy.ops.bend.bake_audio() == {"FINISHED"}
    bpy.ops.bend.bend_add(op="rotate_six")
    bpy.ops.bend.bend_add(op="contract")
    bpy.ops.bend.bend_add(op="multiply")
    six, contract, multiply = _bends(scene)
    for index in range(3):
        assert bpy.ops.bend.drive_from_embedding(index=index, low=-1.0, high=2.0, around_default=index == 1) == {
            "FINISHED"
        }
    drivers = scene.animation_data.drivers
    assert len(drivers) == 6 + catalog.EMBEDDING_COMPONENTS + 1
    assert all(d.driver.is_simple_expression and d.driver.is_valid for d in drivers)
    contract.param_vector[15] = 0.5  # past the embedding's 8 curves: the artist's own value stays

    identity = [1.0 if i == j else 0.0 for i in range(4) for j in range(4)]
    moved = set()
    for frame in (3, 11, 20):
        scene.frame_set(frame)
        embed = [ext().blender.audio_features.value(scene, f"embed_{i}") for i in range(catalog.EMBEDDING_COMPONENTS)]
        moved.update(round(e, 3) for e in embed)
        assert six.param_value() == pytest.approx([-1.0 + 3.0 * e for e in embed[:6]], abs=1e-5)
        assert contract.param_value()[:8] == pytest.approx(
            [d - 1.0 + 3.0 * e for d, e in zip(identity, embed, strict=False)]
        )
        assert contract.param_value()[8:] == pytest.approx([*identity[8:15], 0.5])
        assert multiply.param == pytest.approx(-1.0 + 3.0 * embed[0], abs=1e-5)
    assert len(moved) > 8  # the curves differ from each other and over time, so a crossed wire would show

    job = _build(scene)
    scene.frame_set(11)
    assert job["frames"][10]["bends"]["Rotate Six"] == pytest.approx(six.param_value(), abs=1e-6)

    scene.bend.bend_index = 0
    assert bpy.ops.bend.remove_feature_driver() == {"FINISHED"}
    assert len(drivers) == catalog.EMBEDDING_COMPONENTS + 1  # all six of that bend, and only those


def test_drive_from_embedding_refuses_a_bend_without_a_parameter(scene):
    bpy.ops.bend.bend_add(op="hadamard_channels")
    with pytest.raises(RuntimeError, match=r"Bend 'Hadamard Channels' \(hadamard_channels\) has no parameter"):
        bpy.ops.bend.drive_from_embedding()


@pytest.mark.parametrize("mode", ["paper", "dafx"])
def test_the_noise_mode_reaches_the_job_with_its_loop(scene, tmp_path, mode):
    scene.bend.noise_mode = mode
    job = _build(scene)
    assert job["noise"]["mode"] == mode
    [seen] = _engine_reads(tmp_path, job)
    assert seen["noise_mode"] == mode
    # The loop the scene writes is the one the engine would draw for this mode by itself.
    assert seen["phases"] == pytest.approx(seen["default_phases"])
    assert (seen["phases"][-1] == pytest.approx(2 * math.pi)) is (mode == "dafx")


def test_a_vector_bend_renders(scene, tmp_path):
    """A short tiny-random render, 64×64, 2 steps, of a keyed six-plane rotation: frames and their recorded angles."""
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "song.blend"))
    _prefs().model_source = "tiny-random"
    scene.bend.steps = 2
    scene.frame_end = 2
    bpy.ops.bend.bend_add(op="rotate_six")
    bend = _bends(scene)[0]
    for frame, value in ((1, 0.0), (2, 1.5)):
        bend.param_vector[0] = value
        bend.keyframe_insert("param_vector", index=0, frame=frame)
    assert bpy.ops.bend.render() == {"FINISHED"}
    folder = tmp_path / "bend" / scene.name
    assert sorted(p.name for p in folder.glob("frame_*.png")) == ["frame_00001.png", "frame_00002.png"]
    job = json.loads((folder / "job.json").read_text())
    assert [f["bends"]["Rotate Six"] for f in job["frames"]] == [[0.0] * 6, [1.5] + [0.0] * 5]
