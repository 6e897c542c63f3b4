"""Load the real extension inside the bpy module, loaded as an extension (``bl_ext.dev.diffusion_bender``).

The user resources live in a temporary folder (set before bpy is imported), so tests never touch a real Blender
config. A dev extension repository points at a folder holding a link named after the extension id to this
checkout, so no build step is needed. Each test starts from an empty file with the extension enabled.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXTENSION_ID = "diffusion_bender"
MODULE = f"bl_ext.dev.{EXTENSION_ID}"

_home = Path(tempfile.mkdtemp(prefix="bend-blender-"))
os.environ["BLENDER_USER_RESOURCES"] = str(_home / "user")
(_repo := _home / "repo").mkdir()
(_repo / EXTENSION_ID).symlink_to(ROOT, target_is_directory=True)

# isort: off
import bpy  # noqa: E402  (after BLENDER_USER_RESOURCES is set)
import addon_utils  # noqa: E402  (importable only once bpy is)

# isort: on

bpy.context.preferences.extensions.repos.new(name="dev", module="dev", custom_directory=str(_repo), source="USER")


def enable() -> None:
    addon_utils.enable(MODULE, default_set=True, handle_error=_raise)


def disable() -> None:
    addon_utils.disable(MODULE, default_set=True, handle_error=_raise)


def _raise(exc: BaseException) -> None:
    raise exc


enable()


def extension():
    """The extension's package, as Blender imported it."""
    return sys.modules[MODULE]
