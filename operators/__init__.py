"""Operators under ``bpy.ops.bend``, one module per job; each module registers its own classes and menus."""

from . import bake, bends, dependencies, drive, export, preview, prompts, render, sweep

MODULES = (bends, prompts, bake, drive, render, preview, sweep, export, dependencies)
