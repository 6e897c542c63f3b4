"""Blender 5's Sequencer shows the workspace's sequencer scene, which need not be the window's scene.

The extension works on the scene the Sequencer shows, as Blender's own Sequencer panels and operators do: the song,
the bends, the bake, the rendered strip and the export all belong to it, and the window's scene is left as it was.
"""

from __future__ import annotations

import json
import re

import blender_env
import bpy
import pytest
from helpers import write_song
from test_panels import deps, draw_panel, panel  # noqa: F401 (deps is a fixture)

pytestmark = pytest.mark.skipif(
    "sequencer_scene" not in bpy.types.WorkSpace.bl_rna.properties,
    reason="before 5.0 the Sequencer shows the window's scene",
)


def _compat():
    return blender_env.extension().blender.compat


@pytest.fixture
def edit(scene):
    """A second scene, "Edit", shown by the workspace's Sequencer while the window shows the fixture's scene."""
    edit = bpy.data.scenes.new("Edit")
    edit.render.resolution_x = edit.render.resolution_y = 64
    edit.render.resolution_percentage = 100
    edit.render.fps = 12
    edit.frame_start, edit.frame_end = 1, 12
    bpy.context.workspace.sequencer_scene = edit
    assert bpy.context.scene == scene and bpy.context.sequencer_scene == edit
    return edit


def test_without_a_sequencer_scene_the_window_scene(scene):
    assert bpy.context.workspace.sequencer_scene is None  # a file made in background mode, a new empty file
    assert _compat().sequencer_scene(bpy.context) == scene
    bpy.ops.bend.bend_add(op="threshold")
    assert len(scene.bend.bends) == 1


def test_the_workflow_acts_on_the_sequencer_scene(scene, edit, tmp_path):
    import av

    compat = _compat()
    features = blender_env.extension().blender.audio_features
    compat.strips(edit).new_sound("song", str(write_song(tmp_path / "song.wav")), 1, 1)
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "two-scenes.blend"))
    bpy.context.preferences.addons[blender_env.MODULE].preferences.model_source = "tiny-random"
    edit.bend.steps = 2

    assert bpy.ops.bend.prompt_add() == {"FINISHED"}
    assert bpy.ops.bend.bend_add(op="rotate_r1") == {"FINISHED"}
    assert bpy.ops.bend.bake_audio() == {"FINISHED"}
    assert bpy.ops.bend.drive_from_feature(feature="rms", low=0.0, high=3.0) == {"FINISHED"}
    assert bpy.ops.bend.render(frame_end=3) == {"FINISHED"}

    assert (len(edit.bend.prompts), len(edit.bend.bends)) == (1, 1) and features.present(edit)
    assert edit.animation_data.drivers.find(edit.bend.bends[0].path_from_id("param")) is not None
    strip = compat.strips(edit)[edit.name]
    assert strip.type == "IMAGE" and len(strip.elements) == 3 and strip.channel > compat.strips(edit)["song"].channel
    job = json.loads((tmp_path / "bend" / "Edit" / "job.json").read_text())
    assert len({frame["bends"]["R1"] for frame in job["frames"]}) > 1  # the song drives the Sequencer scene's bend

    video = tmp_path / "edit.mp4"
    assert bpy.ops.bend.export_video(filepath=str(video)) == {"FINISHED"}
    with av.open(str(video)) as container:
        assert len(container.streams.audio) == 1 and sum(1 for _ in container.decode(video=0)) == 12

    # The window's scene is as it was.
    assert (len(scene.bend.prompts), len(scene.bend.bends)) == (0, 0) and not features.present(scene)
    assert not list(compat.all_strips(scene)) and scene.animation_data is None


def _animate_stack(edit, tmp_path):
    """On ``edit``: a disabled bend, one without a parameter, two keyed ones, a crossfade, keyed strength and a
    keyed LoRA, each keyed from frame 1 to 12."""
    for op in ("threshold", "negate", "rotate_r1", "add"):
        assert bpy.ops.bend.bend_add(op=op) == {"FINISHED"}
    bends = edit.bend.bends
    bends[0].enabled = False
    lora_file = tmp_path / "style.safetensors"
    lora_file.write_bytes(b"")  # the job names the file; only the engine reads it
    assert bpy.ops.bend.lora_add(filepath=str(lora_file)) == {"FINISHED"}
    for _ in range(2):
        bpy.ops.bend.prompt_add()
    keyed = [(bends[2], "param", 0.0, 3.0), (bends[3], "param", 1.0, -1.0), (edit.bend, "strength", 0.2, 0.9)]
    keyed += [(edit.bend.loras[0], "weight", 0.0, 1.0), (edit.bend.prompts[0], "weight", 1.0, 0.0)]
    keyed += [(edit.bend.prompts[1], "weight", 0.0, 1.0)]
    for owner, name, first, last in keyed:
        for frame, value in ((1, first), (12, last)):
            setattr(owner, name, value)
            owner.keyframe_insert(name, frame=frame)


def _curve(scene, owner, name: str) -> list[float]:
    """The keyed curve of ``owner.name`` at frames 1 to 12, evaluated from the F-curve itself."""
    fcurve = _compat().find_fcurve(scene, owner.path_from_id(name))
    return [fcurve.evaluate(frame) for frame in range(1, 13)]


def _job(scene) -> dict:
    ext = blender_env.extension()
    return ext.blender.scene_job.build_job(scene, ext.blender.preferences.get(bpy.context))


def test_the_job_reads_the_animation_of_a_scene_only_the_sequencer_shows(scene, edit, tmp_path):
    """Every animated value a frame record holds, evaluated for a scene only the Sequencer shows, is what the same
    scene gives when the window shows it."""
    _animate_stack(edit, tmp_path)
    edit.bend.model_source = "tiny-random"
    edit.bend.mode = "img2img"
    shown_in_sequencer = _job(edit)["frames"]
    bpy.context.window.scene = edit
    shown_in_window = _job(edit)["frames"]
    assert shown_in_sequencer == shown_in_window
    assert set(shown_in_sequencer[0]["bends"]) == {"R1", "Add"}  # the disabled bend and Negate take no value
    r1, lora = _curve(edit, edit.bend.bends["R1"], "param"), _curve(edit, edit.bend.loras["style"], "weight")
    assert [f["bends"]["R1"] for f in shown_in_sequencer] == pytest.approx(r1)
    assert [f["loras"]["style"] for f in shown_in_sequencer] == pytest.approx(lora)
    assert len(set(r1)) == len(set(lora)) == 12
    assert shown_in_sequencer[-1]["prompt_weights"] == pytest.approx([0.0, 1.0])
    assert shown_in_sequencer[-1]["strength"] == pytest.approx(0.9)


def test_the_job_sees_changes_made_since_the_last_one(scene, edit, tmp_path):
    _animate_stack(edit, tmp_path)
    edit.bend.model_source = "tiny-random"
    edit.bend.phase_mode = "CUSTOM"
    assert {f["phase"] for f in _job(edit)["frames"]} == {0.0}
    edit.bend["noise_phase"] = 0.5  # written as a script may, past Blender's update of the property
    assert {f["phase"] for f in _job(edit)["frames"]} == {0.5}
    edit.bend.bend_index = 2
    assert bpy.ops.bend.bend_remove() == {"FINISHED"}  # R1: Add moves up to its place
    frames = _job(edit)["frames"]
    assert set(frames[0]["bends"]) == {"Add"}
    assert [f["bends"]["Add"] for f in frames] == pytest.approx(_curve(edit, edit.bend.bends["Add"], "param"))


def test_the_sidebars_show_the_sequencer_scene(scene, edit, deps):  # noqa: F811
    bpy.ops.bend.bend_add(op="threshold")
    [stack] = [c for c in draw_panel(panel("BEND_PT_bends")).named("template_list") if c["propname"] == "bends"]
    assert stack["dataptr"] == edit.bend

    # The Graph Editor lists the window scene's curves: its Bends panel says whose bends it shows.
    graph = draw_panel(panel("BEND_PT_graph_bends"))
    [stack] = [c for c in graph.named("template_list") if c["propname"] == "bends"]
    assert stack["dataptr"] == edit.bend
    assert any("'Edit'" in label for label in graph.labels()) and any("'Scene'" in label for label in graph.labels())
    bpy.context.window.scene = edit
    assert not any("'Edit'" in label for label in draw_panel(panel("BEND_PT_graph_bends")).labels())


def test_a_bends_target_menu_is_its_own_scenes_family(scene, edit):
    """The U-Net Target menu lists the blocks of the model of the scene that owns the bend, whichever scene the
    window or the Sequencer shows: SDXL's U-Net has three down blocks, SD 1.x's four."""
    scene.bend.model_source = edit.bend.model_source = "tiny-random"
    edit.bend.model_family = "sdxl"
    stack = blender_env.extension().blender.bend_stack
    for owner in (scene, edit):
        stack.bends(owner).add().place = "UNET"
    for shown in (scene, edit):
        bpy.context.workspace.sequencer_scene = shown
        scene.bend.bends[0].unet_target = "down_blocks.3"
        with pytest.raises(TypeError):
            edit.bend.bends[0].unet_target = "down_blocks.3"


def test_a_farm_job_reads_the_range_and_mode_of_the_scene_the_sequencer_shows(scene, edit):
    """The Flamenco job type's submission expressions, evaluated as the Flamenco add-on does (``C`` the context)."""
    source = (blender_env.ROOT / "flamenco" / "diffusion_bender.js").read_text()
    frames, mode = (json.loads(m) for m in re.findall(r'^\s*eval: ("(?:[^"\\]|\\.)*"),$', source, re.MULTILINE))
    scene.frame_start, scene.frame_end = 1, 250
    edit.frame_start, edit.frame_end = 5, 40
    edit.bend.mode = "img2img"
    assert (eval(frames, {"C": bpy.context}), eval(mode, {"C": bpy.context})) == ("5-40", "img2img")
    bpy.context.workspace.sequencer_scene = None
    assert (eval(frames, {"C": bpy.context}), eval(mode, {"C": bpy.context})) == ("1-250", "txt2img")


def test_no_operator_or_panel_reads_the_window_scene_directly():
    """Each goes through compat.sequencer_scene; the Graph Editor's panel and the job's evaluation compare the
    scene with the window's on purpose."""
    pattern = re.compile(r"(?<![\w.])(?:bpy\.)?context\.scene\b")
    allowed = {"blender/compat.py", "blender/scene_job.py", "panels/graph.py"}
    found = [
        f"{path.relative_to(blender_env.ROOT)}:{number}"
        for folder in ("blender", "operators", "panels")
        for path in sorted((blender_env.ROOT / folder).glob("*.py"))
        if str(path.relative_to(blender_env.ROOT)) not in allowed
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
