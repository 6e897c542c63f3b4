"""Errors an artist can hit: each is a clear message naming what to change, Blender stays up, nothing is lost."""

from __future__ import annotations

import gc
import hashlib
import json
import stat
import sys
import textwrap
import warnings

import blender_env
import bpy
import pytest
from helpers import write_song
from PIL import Image

needs_audio = pytest.mark.skipif(
    not blender_env.extension().blender.compat.has_audio(), reason="the PyPI bpy 4.2 module is built without Audaspace"
)


def _prefs():
    return bpy.context.preferences.addons[blender_env.MODULE].preferences


@pytest.fixture
def renderable(scene, tmp_path):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "song.blend"))
    _prefs().model_source = "tiny-random"
    scene.bend.steps = 2
    scene.frame_end = 4
    yield scene
    _prefs().engine_python = blender_env.ENGINE_PYTHON


@needs_audio
def test_unreadable_audio(scene, tmp_path):
    song = write_song(tmp_path / "song.wav")
    blender_env.extension().blender.compat.strips(scene).new_sound("song", str(song), 1, 1)
    song.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(RuntimeError, match="Could not read the sound of strip 'song'"):
        bpy.ops.bend.bake_audio()


def test_unwritable_output_folder(renderable, tmp_path):
    (tmp_path / "file").write_text("in the way")
    renderable.bend.output_folder = str(tmp_path / "file" / "frames")
    with pytest.raises(RuntimeError, match=r"Cannot write to the output folder.*Bend > Render > Output"):
        bpy.ops.bend.render()


def test_missing_dependencies(renderable, monkeypatch):
    monkeypatch.setattr(blender_env.extension().blender.dependencies, "missing", lambda: ["torch", "diffusers"])
    with pytest.raises(RuntimeError, match=r"dependencies are missing \(torch, diffusers\).*Preferences"):
        bpy.ops.bend.render()


def test_a_crashing_render_keeps_finished_frames_and_resumes(renderable, tmp_path):
    """The engine is killed (SIGKILL, as the kernel's out-of-memory killer does) after its first frame."""
    wrapper = tmp_path / "python-that-dies"
    engine = blender_env.ENGINE_PYTHON or sys.executable
    wrapper.write_text(
        textwrap.dedent(f"""\
        #!{sys.executable}
        import json, os, signal, subprocess, sys
        child = subprocess.Popen([{engine!r}, *sys.argv[1:]], stdout=subprocess.PIPE, text=True)
        for line in child.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if json.loads(line)["event"] == "frame":
                child.kill()
                os.kill(os.getpid(), signal.SIGKILL)
        """)
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    _prefs().engine_python = str(wrapper)
    with pytest.raises(RuntimeError, match=r"killed \(signal 9\).*Batch Size.*new frames are kept"):
        bpy.ops.bend.render()
    folder = tmp_path / "bend" / renderable.name
    # The kill lands while later frames may be in flight: whatever is on disk must be whole and consistent.
    kept = sorted(folder.glob("frame_*.png"))
    assert kept[0].name == "frame_00001.png" and len(kept) < 4
    for frame in kept:
        with Image.open(frame) as image:
            image.verify()
    for record in (json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()):
        assert hashlib.sha256((folder / record["file"]).read_bytes()).hexdigest() == record["sha256"]
    assert not list(folder.glob(".partial-*"))
    strip = blender_env.extension().blender.compat.strips(renderable)[renderable.name]
    assert len(strip.elements) >= 1

    _prefs().engine_python = blender_env.ENGINE_PYTHON
    assert bpy.ops.bend.render() == {"FINISHED"}  # Blender is still up, and the render resumes
    assert len(list(folder.glob("frame_*.png"))) == 4 and len(strip.elements) == 4


def test_an_engine_python_that_exits_without_rendering_is_an_error(renderable, tmp_path):
    """A wrapper that passes the Engine Python check but whose engine never starts still exits 0: no render."""
    wrapper = tmp_path / "python-that-forgets"
    engine = blender_env.ENGINE_PYTHON or sys.executable
    wrapper.write_text(
        textwrap.dedent(f"""\
        #!{engine}
        import os, sys
        if sys.argv[1:3] != ["-m", "engine"]:  # the preference's check runs a script: let it pass
            os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
        print("conda: environment not found", file=sys.stderr)
        """)
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    _prefs().engine_python = str(wrapper)
    with pytest.raises(RuntimeError, match=r"exited before the render was done.*environment not found.*Engine Python"):
        bpy.ops.bend.render()


def test_a_render_leaves_no_file_open(renderable, monkeypatch):
    """Real Blender printed two "ResourceWarning: unclosed file" after each render: the engine's pipes."""
    gc.collect()  # what earlier tests left for the collector is not this render's
    unclosed = []
    monkeypatch.setattr(sys, "unraisablehook", unclosed.append)  # where a warning raised in __del__ goes
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        assert bpy.ops.bend.render() == {"FINISHED"}
        gc.collect()
    assert [str(u.exc_value) for u in unclosed] == []


def test_an_engine_error_is_reported_with_its_message(renderable):
    renderable.bend.model_source = "no-such-folder/or-model.safetensors"
    with pytest.raises(RuntimeError, match=r"Render failed: model\.source"):
        bpy.ops.bend.render()
