"""What the extension must never do behind the artist's back, and what must keep working when Blender is locked down.

- Feature drivers keep working in a file opened with "Auto Run Python Scripts" off.
- A render may download a model only when the artist allows downloads *and* Blender's Online Access is on.
- "Install Dependencies" asks pip for exactly the pinned versions, and only with Online Access on.
"""

from __future__ import annotations

import re
import types

import blender_env
import bpy
import pytest


def _prefs():
    return bpy.context.preferences.addons[blender_env.MODULE].preferences


# Drivers with Auto Run off.

LOW, HIGH = -1.0, 3.0
FEATURE = [0.0, 0.25, 1.0, 0.5, 0.75, 0.1]  # baked values on frames 1..6


def test_feature_drivers_evaluate_with_auto_run_off(scene, tmp_path):
    """The driver "Drive from Feature" makes is a simple expression: Blender evaluates it without Python.

    Beside it, a control driver with the same mapping as a Python expression (``(…).real``): in the same file it
    must stay unevaluated, which shows that scripts really are off while the feature driver is checked.
    """
    ext = blender_env.extension()
    frames = list(range(1, len(FEATURE) + 1))
    features = ext.blender.audio_features
    features.ensure(scene)  # as a bake writes them
    ext.blender.animation.write_keys(scene, features.path("rms"), frames, FEATURE)
    bpy.ops.bend.bend_add(op="add")
    bpy.ops.bend.bend_add(op="multiply")
    driven, control = ext.blender.bend_stack.bends(scene)
    assert bpy.ops.bend.drive_from_feature(index=0, feature="rms", low=LOW, high=HIGH) == {"FINISHED"}
    python = ext.operators.drive.add_feature_driver(scene, control.name, "rms", LOW, HIGH)
    python.driver.expression = f"({python.driver.expression}).real"
    assert not python.driver.is_simple_expression
    path = tmp_path / "drivers.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))

    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False, use_scripts=False)
    try:
        assert bpy.context.preferences.filepaths.use_scripts_auto_execute is False
        scene = bpy.context.scene
        driven, control = ext.blender.bend_stack.bends(scene)
        fcurve = scene.animation_data.drivers.find(driven.path_from_id("param"))
        assert fcurve.driver.is_simple_expression
        rms = ext.blender.compat.find_fcurve(scene, features.path("rms"))
        for frame in (4, 1, 6, 2, 5, 3):  # out of order: each value comes from its own frame
            scene.frame_set(frame)
            assert driven.param == pytest.approx(LOW + (HIGH - LOW) * rms.evaluate(frame), abs=1e-6)
            assert control.param == 0.0  # the Python driver was refused, not evaluated
        assert bpy.app.autoexec_fail  # Blender noted the refused Python driver

        _prefs().model_source = "tiny-random"
        job = ext.blender.scene_job.build_job(scene, _prefs())  # what a render reads, frame by frame
        assert [f["bends"][driven.name] for f in job["frames"][: len(FEATURE)]] == pytest.approx(
            [LOW + (HIGH - LOW) * v for v in FEATURE], abs=1e-6
        )
    finally:
        bpy.ops.wm.read_homefile(use_empty=True)  # leave no file with a failed driver behind


# Model downloads.


class _BpyWithOnlineAccess:
    """The bpy module as scene_job sees it, but with ``bpy.app.online_access`` chosen by the test."""

    def __init__(self, online: bool) -> None:
        self.app = types.SimpleNamespace(online_access=online)

    def __getattr__(self, name: str):
        return getattr(bpy, name)


@pytest.mark.parametrize(
    ("allowed", "online", "download"),
    [(False, False, False), (True, False, False), (False, True, False), (True, True, True)],
)
def test_downloads_need_the_preference_and_online_access(scene, monkeypatch, allowed, online, download):
    scene_job = blender_env.extension().blender.scene_job
    prefs = _prefs()
    monkeypatch.setattr(scene_job, "bpy", _BpyWithOnlineAccess(online))
    saved = prefs.allow_download, prefs.model_source
    prefs.allow_download, prefs.model_source = allowed, "some-owner/some-model"
    try:
        model = scene_job.build_job(scene, prefs)["model"]
    finally:
        prefs.allow_download, prefs.model_source = saved
    assert model["allow_download"] is download
    assert model["source"] == "some-owner/some-model"


def test_blender_starts_offline():
    """The default the tests above rely on: a fresh Blender (here the bpy module) has Online Access off."""
    assert bpy.app.online_access is False
    prefs = _prefs()
    prefs.model_source = "tiny-random"
    try:
        prefs.allow_download = True
        bpy.ops.wm.read_homefile(use_empty=True)
        assert (
            blender_env.extension().blender.scene_job.build_job(bpy.context.scene, prefs)["model"]["allow_download"]
            is False
        )
    finally:
        prefs.allow_download = False


# Dependencies: pinned versions only.

EXACT_VERSION = re.compile(r"\d+(\.\d+)*")


def test_every_engine_dependency_is_pinned_to_one_exact_version(vendor_setup):
    pins = vendor_setup.read_pins()
    assert pins["engine"], "no engine pins"
    for group in ("engine", "host", "dev"):
        for name, version in pins[group].items():
            assert EXACT_VERSION.fullmatch(version), f"[{group}] {name} = {version!r} is not one exact version"
    assert vendor_setup.requirements(pins, ["engine"]) == [f"{n}=={v}" for n, v in pins["engine"].items()]


def test_the_target_install_asks_pip_for_exactly_the_pins(vendor_setup, monkeypatch, tmp_path):
    """Every requirement pip is given is a pin, every pin is given, and nothing points pip at another source."""
    calls = []
    monkeypatch.setattr(vendor_setup, "_pip", lambda python, args: calls.append(list(args)))
    monkeypatch.setattr(vendor_setup, "this_os", lambda: "linux")
    pins = vendor_setup.read_pins()
    vendor_setup.install_target(tmp_path / "site-packages", pins, "cuda")  # PyPI's own torch build
    (args,) = calls
    takes_value = {"--target", "--constraint", "-c"}
    positional = [a for i, a in enumerate(args) if not a.startswith("-") and args[i - 1] not in takes_value]
    assert positional[0] == "install"
    assert sorted(positional[1:]) == sorted(f"{n}=={v}" for n, v in pins["engine"].items())
    forbidden = (
        "--pre",
        "--index-url",
        "-i",
        "--extra-index-url",
        "--find-links",
        "-f",
        "--editable",
        "-e",
        "--no-index",
        "--upgrade-strategy",
    )
    assert not [a for a in args if a.split("=")[0] in forbidden]
    assert not [a for a in args if "://" in a or a.startswith(("git+", "file:"))]
    # The other compute choices add PyTorch's own index (over HTTPS) for torch, and nothing else.
    for entry in vendor_setup.read_compute().values():
        for build in (entry[os_name] for os_name in ("linux", "windows", "macos") if os_name in entry):
            assert build["index"] == "" or build["index"].startswith("https://download.pytorch.org/whl/")


def test_install_dependencies_refuses_with_blenders_own_online_access_off(monkeypatch):
    """test_dependencies.py stubs online_access(); here the real flag, as a fresh Blender has it, must refuse."""
    module = blender_env.extension().blender.installer
    started = []
    monkeypatch.setattr(module.subprocess, "Popen", lambda *a, **k: started.append(a))
    assert bpy.app.online_access is False
    with pytest.raises(RuntimeError, match="Allow Online Access in Preferences > System"):
        bpy.ops.bend.install_dependencies()
    assert started == []
