"""Operators under ``bpy.ops.bend``, one module per job; each module registers its own classes and menus."""

from . import bake, bends, dependencies, drive, export, prompts, render

MODULES = (bends, prompts, bake, drive, render, export, dependencies)
