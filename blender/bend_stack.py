"""The bend stack: the scene's bends, applied in order to every frame, and its LoRAs; lists on the Scene.

Why lists on the Scene, animated at their index paths (``bend.bends[2].param``):
- **One path.** ``path_from_id`` gives it, so the field's animated colour and keyframe dot, the I key, Insert
  Keyframe, Add Driver, Edit Driver, Copy Data Path, Drive from Feature and the job builder all use the same curve.
- **The animation editors show it.** The Graph Editor, Dope Sheet and Drivers editor list a Scene's curves. They
  do not list a Python node tree's (a Blender limitation custom node add-ons share), which is why the previous
  version's node-tree stack moves here on load (``migration.py``).
- **No depsgraph cycle.** The drivers read the baked features, custom properties of the same Scene
  (``audio_features.py``), which the depsgraph evaluates apart from the Scene's RNA properties.
An index follows a position, so adding, removing, moving and duplicating go through ``animated_list.py``, which
renumbers the animation with the items; renaming moves nothing. Names stay unique within each list: the job keys
a bend's values by its name.
"""

from __future__ import annotations

import bpy

from .properties import BendFields


def bends(scene: bpy.types.Scene) -> bpy.types.bpy_prop_collection:
    """The scene's bends, in the order they apply."""
    return scene.bend.bends


def loras(scene: bpy.types.Scene) -> bpy.types.bpy_prop_collection:
    """The scene's LoRAs, in the order the panel lists them."""
    return scene.bend.loras


def _active(items: bpy.types.bpy_prop_collection, index: int) -> bpy.types.PropertyGroup | None:
    return items[index] if 0 <= index < len(items) else None


def active_bend(scene: bpy.types.Scene) -> bpy.types.PropertyGroup | None:
    return _active(scene.bend.bends, scene.bend.bend_index)


def active_lora(scene: bpy.types.Scene) -> bpy.types.PropertyGroup | None:
    return _active(scene.bend.loras, scene.bend.lora_index)


def copy_settings(source: bpy.types.bpy_struct, target: bpy.types.bpy_struct) -> None:
    """Every BendFields setting of ``source`` onto ``target`` (bends, and the previous version's bend nodes)."""
    for prop in bend_fields():
        value = getattr(source, prop)
        setattr(target, prop, value[:] if hasattr(value, "__len__") and not isinstance(value, str) else value)


def bend_fields() -> list[str]:
    """The names of the properties a bend holds (BendFields' annotations and its options mixin's)."""
    names: list[str] = []
    for cls in reversed(BendFields.__mro__):
        names += [n for n in getattr(cls, "__annotations__", {}) if n not in names]
    return names
