"""Fixtures for the Blender tests; importing blender_env loads bpy and enables the extension first."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import blender_env  # side effect: bpy imported with isolated user resources, extension enabled
import bpy
import pytest


@pytest.fixture(autouse=True)
def engine_python_preference():
    """Every test starts with the suite's Engine Python (blender_env.ENGINE_PYTHON); a test may change it."""
    addon = bpy.context.preferences.addons.get(blender_env.MODULE)
    if addon is not None:
        addon.preferences.engine_python = blender_env.ENGINE_PYTHON


@pytest.fixture
def scene():
    """A fresh, empty file; its one scene, 64×64 at 12 fps for frames 1..12."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x = 64
    scene.render.resolution_y = 64
    scene.render.resolution_percentage = 100
    scene.render.fps = 12
    scene.frame_start = 1
    scene.frame_end = 12
    return scene


@pytest.fixture
def vendor_setup():
    """The checkout's vendor_setup.py, loaded as a module (it is a script, not part of the extension)."""
    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("vendor_setup_under_test", root / "vendor_setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def blender_version() -> tuple[int, int]:
    return tuple(bpy.app.version[:2])


_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the process with the run's own status once pytest has reported everything.

    The PyPI bpy 4.2 module segfaults while Python shuts down whenever a registered property has a Python callback
    (any update, get or set function; a plain ``bpy`` script with one such property shows it). Real Blender
    binaries do not, and the tests have all run by now, so skipping the interpreter's teardown loses nothing.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)
