"""Where the engine's dependencies live for Blender, and whether they are there.

"Install Dependencies" puts them in the extension's user folder (``<user extensions>/.user/<repo>/<id>/
site-packages``), which survives extension updates. That folder is appended to ``sys.path`` on register, after
Blender's own site-packages, so Blender's numpy always wins. With an Engine Python set (``engine_python.py``),
renders, previews and sweeps need none of them in Blender's Python (the bake still analyses the sound there and
asks for numpy and scipy itself: ``missing_bake_modules``).

The compute choices (which torch build Install Dependencies fetches, and its size) come from dependencies.toml
through ``vendor_setup``, which is stdlib only and so cheap to import here.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import bpy

from .. import vendor_setup
from . import EXTENSION_PACKAGE, preferences

# The import names of what vendor_setup.py installs for the engine (numpy only where Blender has none).
ENGINE_MODULES = ("numpy", "torch", "diffusers", "transformers", "kornia", "scipy", "safetensors", "PIL")
INSTALL_HINT = "Install Dependencies in Preferences > Add-ons > Diffusion Bender"
# The bake analyses the sound in Blender's own Python. Blender may come without numpy (Debian's does); Install
# Dependencies adds it and scipy to the extension's folder.
BAKE_MODULES = ("numpy", "scipy")


def missing_bake_modules() -> list[str]:
    """What the bake needs and this Blender cannot import; found without importing anything."""
    return [name for name in BAKE_MODULES if importlib.util.find_spec(name) is None]


def missing_message(missing: list[str]) -> str:
    return f"Missing {', '.join(missing)}: {INSTALL_HINT}"


def site_packages() -> Path:
    return Path(bpy.utils.extension_path_user(EXTENSION_PACKAGE, path="site-packages", create=True))


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
    """The engine's dependencies this Blender cannot import; none when an Engine Python brings its own."""
    if preferences.get().engine_python:
        return []
    return [name for name in ENGINE_MODULES if importlib.util.find_spec(name) is None]


@functools.cache
def compute_choices() -> dict[str, dict]:
    """``[compute.*]`` of dependencies.toml: label, description and the torch build per OS."""
    return vendor_setup.read_compute()


def resolve_compute(choice: str) -> str:
    """The preference's compute choice with "auto" resolved for this machine."""
    return vendor_setup.default_compute() if choice == "auto" else choice


def compute_build(choice: str) -> dict | None:
    """The torch build of a compute choice on this OS (index, sizes), or None when it has none here."""
    return compute_choices()[resolve_compute(choice)].get(vendor_setup.this_os())


def compute_summary(choice: str) -> str:
    """What Install Dependencies will fetch for this choice, with its size, shown before it starts."""
    resolved = resolve_compute(choice)
    label = compute_choices()[resolved]["label"]
    build = compute_build(choice)
    if build is None:
        return f"{label} has no torch build for {vendor_setup.this_os()}: choose another Compute"
    return f"{label}: {vendor_setup.size_text(build)}"
