"""Diffusion Bender: music videos from Stable Diffusion with audio-driven network bending.

The Blender side registers here: scene properties (``properties.py``), operators under ``bpy.ops.bend``
(``operators/``), the "Bend" sidebar panels (``panels/``) and the preferences. The numeric work lives in
``engine/``, which never imports Blender and renders in a child process.
"""

from __future__ import annotations

from .blender import dependencies, legacy_stack, migration, preferences, properties
from .operators import MODULES as OPERATOR_MODULES
from .panels import MODULES as PANEL_MODULES

_MODULES = (preferences, properties, legacy_stack, migration, *OPERATOR_MODULES, *PANEL_MODULES)


def register() -> None:
    dependencies.add_to_path()
    for module in _MODULES:
        module.register()


def unregister() -> None:
    for module in reversed(_MODULES):
        module.unregister()
    dependencies.remove_from_path()
