"""What differs between Blender versions and builds: a Blender without numpy, 5.1's strip timing names,
deprecations raised from the extension's own code, FFmpeg settings never set up, and the shared status bar.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import blender_env
import bpy
import pytest
from blender_env import extension

HERE = Path(__file__).resolve().parent
INSTALL_HINT = "Install Dependencies in Preferences > Add-ons > Diffusion Bender"


def module(name: str):
    return sys.modules[f"{blender_env.MODULE}.{name}"]


# --- a Blender without numpy (Debian's 5.2) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def numpy_free_blender(tmp_path_factory) -> dict:
    """What ``no_numpy_blender.py`` saw in a Python with the bpy module and nothing else installed."""
    # The bpy module's own folder (bpy.__file__ is Blender's Python package of the same name, loaded by it).
    package = next(Path(p) / "bpy" for p in sys.path if p and any((Path(p) / "bpy").glob("__init__.*[!p][!y]")))
    folder = tmp_path_factory.mktemp("bpy-only")
    (folder / "bpy").symlink_to(package, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "BLENDER_USER"))}
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(blender_env.ROOT)])
    env["OMP_NUM_THREADS"] = "1"
    # -S: no site-packages, so numpy, scipy, torch and PIL cannot be found, as in a Blender that lacks them.
    result = subprocess.run(
        [sys.executable, "-S", str(HERE / "no_numpy_blender.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0 and lines, f"exit code {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(lines[-1])


def test_the_extension_enables_without_numpy_and_imports_nothing_heavy(numpy_free_blender):
    assert numpy_free_blender["heavy_modules"] == []
    assert {"Model", "Audio", "Render", "Preview", "Preferences"} <= set(numpy_free_blender["panels"])


@pytest.mark.parametrize("panel", ["Audio", "Render", "Preview"])
def test_panels_that_need_the_dependencies_say_how_to_install_them(numpy_free_blender, panel):
    labels = numpy_free_blender["panels"][panel]["labels"]
    assert INSTALL_HINT in labels
    assert any(label.startswith("Missing: ") for label in labels)


def test_the_preferences_offer_install_dependencies_without_numpy(numpy_free_blender):
    assert "bend.install_dependencies" in numpy_free_blender["panels"]["Preferences"]["operators"]


def test_bake_and_render_refuse_with_one_line_naming_the_fix(numpy_free_blender):
    bake = numpy_free_blender["bake"]
    assert INSTALL_HINT in bake and "numpy" in bake and "\n" not in bake.strip()
    render = numpy_free_blender["render"]
    assert render.startswith("Error: ") and "Diffusion Bender" in render and "\n" not in render.strip()


def test_bake_refuses_before_anything_when_numpy_is_missing(scene, monkeypatch):
    bake = module("operators.bake")
    monkeypatch.setattr(bake, "missing_bake_modules", lambda: ["numpy", "scipy"])
    with pytest.raises(RuntimeError, match=r"Missing numpy, scipy: Install Dependencies in Preferences > Add-ons"):
        bpy.ops.bend.bake_audio()


# --- deprecations from the extension's own modules ----------------------------------------------------------------


def test_a_deprecation_warning_from_an_extension_module_is_an_error():
    """pyproject's filterwarnings: raised from ``bl_ext.*`` it fails the test, from anywhere else it stays a warning."""
    with pytest.raises(DeprecationWarning):
        warnings.warn_explicit(
            "old API", DeprecationWarning, "x.py", 1, module=f"{blender_env.MODULE}.blender.audio_source"
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn_explicit("old API", DeprecationWarning, "x.py", 1, module="bpy_types")
    assert [str(w.message) for w in caught] == ["old API"]


def _strip_type() -> type:
    return getattr(bpy.types, "Strip", None) or bpy.types.Sequence


def test_compat_reads_strip_timing_under_names_this_blender_does_not_deprecate():
    compat = extension().blender.compat
    new = ("content_start", "left_handle", "right_handle", "duration")
    old = ("frame_start", "frame_final_start", "frame_final_end", "frame_final_duration")
    props = _strip_type().bl_rna.properties
    names = new if compat._HANDLES else old
    assert all(name in props for name in names)
    assert not [name for name in names if getattr(props[name], "is_deprecated", False)]
    if compat._HANDLES:  # 5.1+: every old name is deprecated, so compat must not be reading it
        assert all(getattr(props[name], "is_deprecated", False) for name in old)


def test_strip_timing_accessors(scene, tmp_path):
    compat = extension().blender.compat
    strip = compat.strips(scene).new_image("Frames", str(tmp_path / "frame_00001.png"), 2, 5)
    for i in range(2, 11):
        strip.elements.append(f"frame_{i:05d}.png")
    assert (compat.strip_content_start(strip), compat.strip_left_handle(strip)) == (5, 5)
    assert (compat.strip_right_handle(strip), compat.strip_duration(strip)) == (15, 10)
    assert compat.strip_trim_start(strip) == 0

    compat.set_strip_content_start(strip, 8)
    assert (compat.strip_left_handle(strip), compat.strip_right_handle(strip)) == (8, 18)

    trim = "content_trim_start" if compat._HANDLES else "animation_offset_start"
    setattr(strip, trim, 3)  # the first three images are cut: image 4 shows at frame 8, the strip ends sooner
    assert compat.strip_trim_start(strip) == 3
    assert compat.strip_content_start(strip) == 8
    handles = compat.strip_left_handle(strip), compat.strip_right_handle(strip)
    assert handles == (8, 15) and compat.strip_duration(strip) == 7


# --- FFmpeg settings of a scene that never had FFmpeg set up ------------------------------------------------------


def test_export_settings_of_a_new_scene_read_no_unset_enum(tmp_path, capfd):
    """``bpy.data.scenes.new`` leaves the FFmpeg preset at 0, which matches no enum item; reading it prints a
    warning ("current value '0' matches no enum"), so the export must not read it."""
    scene = bpy.data.scenes.new("Never Exported")
    try:
        ffmpeg = scene.render.ffmpeg
        assert ffmpeg.codec == "NONE"
        capfd.readouterr()
        with module("operators.export").video_settings(scene, str(tmp_path / "out.mp4")):
            assert scene.render.image_settings.file_format == "FFMPEG"
            assert (ffmpeg.codec, ffmpeg.ffmpeg_preset) == ("H264", "GOOD")
        out, err = capfd.readouterr()
        assert "matches no enum" not in out + err
        assert ffmpeg.codec == "NONE" and scene.render.image_settings.file_format == "PNG"
    finally:
        bpy.data.scenes.remove(scene)


# --- the status bar -----------------------------------------------------------------------------------------------


@pytest.fixture
def board():
    shown: list[str | None] = []
    return module("blender.status_bar").StatusBoard(shown.append), shown


def test_a_render_ending_keeps_a_running_preview_in_the_status_bar(board):
    status, shown = board
    status.post("render", "Bend: loading model sd... — Esc to stop")
    status.post("preview", "Bend: previewing frame 3... Esc to stop")
    assert status.text() == "Bend: loading model sd... — Esc to stop  |  Bend: previewing frame 3... Esc to stop"
    status.post("render", "Bend: 1/4 frames (25%) — Esc to stop")  # an update keeps its place
    assert status.text().startswith("Bend: 1/4 frames")

    status.remove("render")
    assert shown[-1] == "Bend: previewing frame 3... Esc to stop"
    assert None not in shown
    status.remove("preview")
    assert shown[-1] is None and shown.count(None) == 1


def test_the_status_bar_is_cleared_only_when_a_line_of_ours_was_shown(board):
    status, shown = board
    status.remove("never posted")
    assert shown == []
    status.post("render", "Bend: 0/2 frames (0%)")
    status.remove("render")
    status.remove("render")
    assert shown == ["Bend: 0/2 frames (0%)", None]


def test_model_name_for_the_status_bar(tmp_path):
    name = module("blender.status_bar").model_name
    checkpoint = tmp_path / "sd-v1-4.safetensors"
    checkpoint.touch()
    assert name(str(checkpoint)) == "sd-v1-4.safetensors"
    assert name(str(tmp_path / "folder") + os.sep) == "folder"
    assert name("CompVis/stable-diffusion-v1-4") == "CompVis/stable-diffusion-v1-4"


def test_render_status_says_the_model_is_loading_until_it_is(scene, tmp_path):
    session = module("operators.render").RenderSession(scene, tmp_path, None, model="CompVis/stable-diffusion-v1-4")
    assert session.status() == "Bend: loading model CompVis/stable-diffusion-v1-4..."
    session.handle({"event": "start", "frames": 3, "todo": 3, "skipped": 0})
    assert session.status() == "Bend: loading model CompVis/stable-diffusion-v1-4..."
    session.handle({"event": "loaded", "model": "x", "device": "cpu", "dtype": "float32", "seconds": 1.5})
    assert session.status() == "Bend: 0/3 frames (0%)"
    session.handle({"event": "step", "frames": [1, 2], "step": 5, "steps": 10})
    assert session.status() == "Bend: 0/3 frames (33%)"


def test_render_status_of_a_finished_job_loads_nothing(scene, tmp_path):
    session = module("operators.render").RenderSession(scene, tmp_path, None, model="tiny-random")
    session.handle({"event": "start", "frames": 2, "todo": 0, "skipped": 2})
    assert "loading" not in session.status()


def test_rendered_frames_grow_the_image_strip(scene, tmp_path):
    compat = extension().blender.compat
    session = module("operators.render").RenderSession(scene, tmp_path, None, model="tiny-random")
    session.handle({"event": "start", "frames": 3, "todo": 3, "skipped": 0})
    session.handle({"event": "loaded", "model": "x", "device": "cpu", "dtype": "float32", "seconds": 1.5})
    session.handle({"event": "frame", "frame": 1, "file": "", "seconds": 0.1})
    session.handle({"event": "frame", "frame": 3, "file": "", "seconds": 0.1})
    strip = compat.strips(scene)[scene.name]
    assert [e.filename for e in strip.elements] == ["frame_00001.png", "frame_00002.png", "frame_00003.png"]
    assert (compat.strip_left_handle(strip), compat.strip_right_handle(strip)) == (1, 4)
    assert session.status() == "Bend: 2/3 frames (67%)"


@pytest.mark.skipif(
    not extension().blender.compat.has_audio(), reason="the PyPI bpy 4.2 module is built without Audaspace"
)
def test_aud_is_imported_when_needed_so_installing_numpy_later_brings_sound(monkeypatch):
    compat = extension().blender.compat
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "aud", None)  # importing aud fails, as Debian's does without numpy
        assert not compat.has_audio() and compat.audio_unavailable()
        with pytest.raises(RuntimeError, match="audio"):
            compat.probe_sound("/nonexistent.wav")
    # Install Dependencies has put numpy on the path: the same session now reads sound, no restart needed.
    assert compat.has_audio() and compat.audio_unavailable() is None


def test_a_missing_numpy_behind_aud_names_install_dependencies():
    compat = extension().blender.compat
    assert "Install Dependencies" in compat.why_no_aud(ImportError("numpy._core.multiarray failed to import"))
    assert compat.why_no_aud(ImportError("No module named 'aud'", name="aud")) == compat.NO_AUDASPACE
