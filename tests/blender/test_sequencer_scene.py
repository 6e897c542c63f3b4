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
