"""Where the engine's dependencies live for Blender, and whether they are there.

"Install Dependencies" puts them in the extension's user folder (``<user extensions>/.user/<repo>/<id>/
site-packages``), which survives extension updates. That folder is appended to ``sys.path`` on register, after
Blender's own site-packages, so Blender's numpy always wins.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import bpy

# The import names of what vendor_setup.py installs for the engine.
ENGINE_MODULES = ("torch", "diffusers", "transformers", "kornia", "scipy", "safetensors", "PIL")


def site_packages() -> Path:
    return Path(bpy.utils.extension_path_user(__package__, path="site-packages", create=True))


def add_to_path() -> None:
    folder = str(site_packages())
    if folder not in sys.path:
        sys.path.append(folder)
    importlib.invalidate_caches()


def remove_from_path() -> None:
    folder = str(site_packages())
    while folder in sys.path:
        sys.path.remove(folder)


def missing() -> list[str]:
    """The engine's dependencies this Blender cannot import."""
    return [name for name in ENGINE_MODULES if importlib.util.find_spec(name) is None]
