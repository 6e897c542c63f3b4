"""Paths an artist uses: spaces and non-ASCII letters, ``//`` folders relative to the .blend, folders elsewhere.

"Elsewhere" stands for another drive: on POSIX, a folder outside the .blend's folder tree, which Blender's
"Make Paths Relative" still turns into ``//../..``; the render must treat that as the same folder.
"""

from __future__ import annotations

import json
import subprocess
import sys

import blender_env
import bpy
import pytest
from PIL import Image

UNICODE = "ünï 音"
READ_FRAMES = "import sys; from engine.job import load_job; print(len(load_job(sys.argv[1]).frames))"


def _prefs():
    return bpy.context.preferences.addons[blender_env.MODULE].preferences


@pytest.fixture
def project(scene, tmp_path):
    """The scene saved as "<tmp>/my project ünï 音/song ünï 音.blend"."""
    folder = tmp_path / f"my project {UNICODE}"
    folder.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / f"song {UNICODE}.blend"))
    return folder


@pytest.fixture
def elsewhere(tmp_path_factory):
    """A folder outside the project's tree, standing in for another drive."""
    return tmp_path_factory.mktemp("other drive") / f"renders {UNICODE}"


@pytest.mark.parametrize("where", ["absolute", "blend-relative", "blend-relative up", "elsewhere", "default"])
def test_the_job_goes_where_the_output_folder_says(project, elsewhere, where):
    ext = blender_env.extension()
    scene = bpy.context.scene
    scene.name = f"Szene {UNICODE}"
    settings = {
        "absolute": (str(project.parent / f"my renders/{UNICODE}"), project.parent / "my renders" / UNICODE),
        "blend-relative": (f"//my renders/{UNICODE}/", project / "my renders" / UNICODE),
        "blend-relative up": (f"//../out {UNICODE}/frames/", project.parent / f"out {UNICODE}" / "frames"),
        "elsewhere": (str(elsewhere), elsewhere),
        "default": ("", project / "bend" / bpy.path.clean_name(scene.name)),
    }
    scene.bend.output_folder, expected = settings[where]
    _prefs().model_source = "tiny-random"

    folder = ext.blender.scene_job.output_folder(scene)
    assert folder == expected.resolve() and folder.is_absolute() and ".." not in folder.parts
    path = ext.blender.scene_job.write_job(ext.blender.scene_job.build_job(scene, _prefs()), folder)
    assert path == folder / "job.json"
    # As the engine reads it: with its own parser, in the Engine Python (the 4.2/4.5 test venvs hold no torch).
    read = subprocess.run(
        [blender_env.ENGINE_PYTHON or sys.executable, "-c", READ_FRAMES, str(path)],
        cwd=blender_env.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert read.returncode == 0, read.stderr[-3000:]
    assert int(read.stdout) == scene.frame_end - scene.frame_start + 1
    assert json.loads(path.read_text(encoding="utf-8"))["model"]["source"] == "tiny-random"


def test_a_relative_folder_needs_a_saved_file(scene):
    scene.bend.output_folder = f"//renders {UNICODE}/"
    with pytest.raises(blender_env.extension().blender.scene_job.SceneJobError, match=r"Save the \.blend file first"):
        blender_env.extension().blender.scene_job.output_folder(scene)


def _frames(folder, frames) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for frame in frames:
        Image.new("RGB", (8, 8), (frame * 40, 0, 0)).save(folder / f"frame_{frame:05d}.png")


@pytest.mark.parametrize("where", ["inside", "elsewhere"])
def test_the_frame_strip_survives_make_paths_relative(project, elsewhere, where):
    """A re-render finds its strip again, whether its folder is absolute or was made ``//`` relative."""
    render = blender_env.extension().operators.render
    compat = blender_env.extension().blender.compat
    scene = bpy.context.scene
    scene.frame_end = 2
    folder = (project / f"frames {UNICODE}" if where == "inside" else elsewhere).resolve()
    _frames(folder, [1, 2])
    first = render.FrameStrip(scene, folder)
    first.show(2)
    first.strip.channel = 7  # the artist's own edit, which must survive a re-render
    assert not first.strip.directory.startswith("//")
    for relative in (False, True):  # as written (absolute), then as "Make Paths Relative" leaves it
        if relative:
            bpy.ops.file.make_paths_relative()
            assert first.strip.directory.startswith("//../" if where == "elsewhere" else "//frames")
        again = render.FrameStrip(scene, folder)
        again.show(2)
        assert again.strip.channel == 7 and len(compat.strips(scene)) == 1
        assert len(again.strip.elements) == 2


def test_render_and_export_through_spaces_and_unicode(project, tmp_path):
    """A tiny render into "//../my renders/ünï 音/", a resume after Make Paths Relative, an export to such a path."""
    av = pytest.importorskip("av")
    compat = blender_env.extension().blender.compat
    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = 32
    scene.frame_end = 2
    scene.bend.steps = 2
    scene.bend.output_folder = f"//../my renders/{UNICODE}/"  # beside the project's folder
    _prefs().model_source = "tiny-random"
    bpy.ops.bend.prompt_add()
    scene.bend.prompts[0].text = f"ein Würfel, {UNICODE}"  # non-ASCII reaches the engine too

    assert bpy.ops.bend.render() == {"FINISHED"}
    folder = project.parent / "my renders" / UNICODE
    assert sorted(p.name for p in folder.glob("frame_*.png")) == ["frame_00001.png", "frame_00002.png"]
    assert json.loads((folder / "job.json").read_text(encoding="utf-8"))["prompts"] == [f"ein Würfel, {UNICODE}"]
    strip = compat.strips(scene)[scene.name]
    strip.channel = 3
    bpy.ops.file.make_paths_relative()
    assert strip.directory == f"//../my renders/{UNICODE}/"
    bpy.ops.wm.save_mainfile()
    assert bpy.ops.bend.render() == {"FINISHED"}  # resumes: nothing left to render, the strip stays
    strip = compat.strips(scene)[scene.name]
    assert strip.channel == 3 and len(strip.elements) == 2

    video = tmp_path / f"exports {UNICODE}" / f"video {UNICODE}.mp4"
    assert bpy.ops.bend.export_video(filepath=str(video)) == {"FINISHED"}
    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 2
