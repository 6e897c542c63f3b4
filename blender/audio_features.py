"""The baked audio features: custom properties of the Scene, one F-curve each (``scene["bend_rms"]``).

Why custom properties and not RNA properties under ``scene.bend``: drivers that read the features live on the
same Scene (on the bends' parameters, ``bend.bends[0].param``). A driver on a Scene that reads an RNA property of
that Scene is a dependency cycle in Blender's depsgraph ("Dependency cycle detected": the driver waits for the
Scene's parameters, which wait for the driver); a custom property is a depsgraph node of its own, so reading one
is not (checked in Blender 4.2, 4.5, 5.0 and 5.2; tests/blender/test_bend_stack.py). They show in the Graph
Editor with the bends' curves, and in Scene Properties > Custom Properties.
"""

from __future__ import annotations

import bpy

from ..engine.catalog import FEATURE_NAMES, FEATURES

PREFIX = "bend_"


def key(name: str) -> str:
    """The custom property of feature ``name`` (``bend_rms``)."""
    return PREFIX + name


def path(name: str) -> str:
    """The Scene's data path of feature ``name``, as Blender writes a custom property's path (``["bend_rms"]``)."""
    return f'["{bpy.utils.escape_identifier(key(name))}"]'


def ensure(scene: bpy.types.Scene) -> bool:
    """Give the scene every feature's property (0 until baked), with its label, units and range for the UI.

    Returns whether any was missing. Drivers that read a property before it existed were marked invalid by Blender
    and their depsgraph relations lack it: those of the scene are revived, so a bake brings them to life.
    """
    missing = [name for name in FEATURE_NAMES if key(name) not in scene]
    for name in missing:
        scene[key(name)] = 0.0
        spec = FEATURES[name]
        # Normalised features are 0..1; raw ones (Normalize: Raw) may leave it, so only the slider is bounded.
        scene.id_properties_ui(key(name)).update(
            description=f"{spec.label}: {spec.description} ({spec.units})", soft_min=0.0, soft_max=1.0
        )
    if missing and scene.animation_data is not None:
        paths = {path(name) for name in missing}
        for fcurve in scene.animation_data.drivers:
            driver = fcurve.driver
            if any(t.id == scene and t.data_path in paths for v in driver.variables for t in v.targets):
                driver.is_valid = True
                driver.expression = driver.expression  # rebuilds the depsgraph's relations for this driver
    return bool(missing)


def present(scene: bpy.types.Scene) -> bool:
    """Whether the scene has the features' properties (a bake, or a feature driver, made them)."""
    return all(key(name) in scene for name in FEATURE_NAMES)


def value(scene: bpy.types.Scene, name: str) -> float:
    """Feature ``name`` at the scene's current frame (0 before a bake)."""
    return float(scene.get(key(name), 0.0))
