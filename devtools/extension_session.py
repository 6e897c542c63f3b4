"""Load this checkout as a Blender extension inside the bpy module: for the tests, the demo and the benchmarks.

The user resources go to a temporary folder (set before bpy is imported), so nothing touches a real Blender
config. A dev extension repository points at a folder holding a link named after the extension id to this
checkout, so no build step is needed, and the extension is enabled as ``bl_ext.dev.diffusion_bender``, exactly
as Blender loads an installed extension.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
EXTENSION_ID = "diffusion_bender"
MODULE = f"bl_ext.dev.{EXTENSION_ID}"


def _raise(exc: BaseException) -> None:
    raise exc


def start() -> ModuleType:
    """Import bpy with isolated user resources and enable the extension; returns the extension's package."""
    if MODULE in sys.modules:
        return sys.modules[MODULE]
    home = Path(tempfile.mkdtemp(prefix="bend-blender-"))
    os.environ["BLENDER_USER_RESOURCES"] = str(home / "user")
    repo = home / "repo"
    repo.mkdir()
    (repo / EXTENSION_ID).symlink_to(ROOT, target_is_directory=True)
    import bpy

    bpy.context.preferences.extensions.repos.new(name="dev", module="dev", custom_directory=str(repo), source="USER")
    enable()
    return sys.modules[MODULE]


def enable() -> None:
    import addon_utils  # importable only once bpy is

    addon_utils.enable(MODULE, default_set=True, handle_error=_raise)


def disable() -> None:
    import addon_utils

    addon_utils.disable(MODULE, default_set=True, handle_error=_raise)


def extension() -> ModuleType:
    """The extension's package, as Blender imported it."""
    return sys.modules[MODULE]
