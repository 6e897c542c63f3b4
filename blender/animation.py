"""F-curves and drivers on an ID: bulk keyframe writes, copies, and keeping animation with its item.

A bend is a node of the scene's bend stack (``bend_stack.py``), so its animation lives on the tree at the path
Blender's own UI uses, ``node.path_from_id("param")`` == ``nodes["R1"].param``: nodes are keyed by name, and
Blender moves their F-curves and drivers itself when a node is renamed.

Prompts are collection items of the Scene, animated through ``bend.prompts["Prompt 1"].weight``. Paths keyed by
name follow an item when the list is reordered; index-keyed paths (``bend.prompts[0].weight``, which is what
Blender creates when the artist presses I over a property) follow the position instead. The prompt operators
therefore rewrite index paths as name paths before they remove anything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import bpy

from . import compat


def animation_curves(id_data: bpy.types.ID) -> list[bpy.types.FCurve]:
    """The ID's keyframed F-curves and its drivers."""
    curves = list(compat.action_fcurves(id_data))
    if id_data.animation_data is not None:
        curves += list(id_data.animation_data.drivers)
    return curves


def key_paths_by_name(scene: bpy.types.Scene, collection: str) -> None:
    """Rewrite ``bend.<collection>[i].x`` paths as ``bend.<collection>["name"].x``.

    Blender keys collection items by index when the artist presses I over a property (and 5.0 rewrites
    name paths to index paths on insert); an index follows the position, not the item. Operators that reorder or
    remove items call this first, so animation stays with its item.
    """
    items = getattr(scene.bend, collection)
    pattern = re.compile(rf"^bend\.{collection}\[(\d+)\]")
    for fcurve in animation_curves(scene):
        match = pattern.match(fcurve.data_path)
        if match and int(match.group(1)) < len(items):
            name = bpy.utils.escape_identifier(items[int(match.group(1))].name)
            fcurve.data_path = f'bend.{collection}["{name}"]' + fcurve.data_path[match.end() :]


def remove_animation(id_data: bpy.types.ID, prefix: str) -> None:
    """Delete the keyframed F-curves and the drivers whose data path starts with ``prefix``."""
    for fcurve in compat.action_fcurves(id_data):
        if fcurve.data_path.startswith(prefix):
            compat.remove_fcurve(id_data, fcurve)
    drivers = id_data.animation_data.drivers if id_data.animation_data else []
    for driver in list(drivers):
        if driver.data_path.startswith(prefix):
            drivers.remove(driver)


def item_drivers(item: bpy.types.bpy_struct, prop: str) -> list[bpy.types.FCurve]:
    """The drivers on ``item.prop`` (every component of an array), at the path Blender's UI gives it."""
    anim = item.id_data.animation_data
    if anim is None:
        return []
    path = item.path_from_id(prop)
    return [driver for driver in anim.drivers if driver.data_path == path]


def item_keyed(item: bpy.types.bpy_struct, prop: str) -> list[bpy.types.FCurve]:
    """The keyframed F-curves of ``item.prop`` (every component of an array)."""
    path = item.path_from_id(prop)
    return [fcurve for fcurve in compat.action_fcurves(item.id_data) if fcurve.data_path == path]


def copy_animation(source: bpy.types.ID, old_prefix: str, target: bpy.types.ID, new_prefix: str) -> int:
    """Copy every F-curve and driver under ``old_prefix`` on ``source`` to ``new_prefix`` on ``target``.

    Keys keep their handles, interpolation and easing; curves keep their modifiers and extrapolation; drivers keep
    their type, expression, variables and targets. Returns how many curves were copied.
    """
    copied = 0
    for fcurve in list(compat.action_fcurves(source)):
        if fcurve.data_path.startswith(old_prefix):
            path = new_prefix + fcurve.data_path[len(old_prefix) :]
            copy_fcurve(fcurve, compat.new_fcurve(target, path, fcurve.array_index))
            copied += 1
    for driver in list(source.animation_data.drivers if source.animation_data else []):
        if driver.data_path.startswith(old_prefix):
            path = new_prefix + driver.data_path[len(old_prefix) :]
            new = new_driver(target, path, driver.array_index)
            copy_fcurve(driver, new)
            copy_driver(driver.driver, new.driver)
            copied += 1
    return copied


def new_driver(id_data: bpy.types.ID, data_path: str, index: int = 0) -> bpy.types.FCurve:
    """A new driver on the ID at ``data_path`` (component ``index`` of an array), replacing one already there."""
    anim = id_data.animation_data
    old = anim.drivers.find(data_path, index=index) if anim is not None else None
    if old is not None:
        anim.drivers.remove(old)
    array = hasattr(id_data.path_resolve(data_path), "__len__")
    return id_data.driver_add(data_path, index if array else -1)


# What copy_fcurve copies of each key, with foreach_get/set (enums travel as their integer values).
_KEY_VECTORS = ("co", "handle_left", "handle_right")
_KEY_SCALARS = ("handle_left_type", "handle_right_type", "interpolation", "easing", "type", "back", "amplitude")
_KEY_SCALARS += ("period",)
_CURVE_SETTINGS = ("extrapolation", "mute", "lock", "hide", "color_mode", "color", "auto_smoothing")
_NOT_COPIED = {"rna_type", "type", "is_valid", "active", "show_expanded", "is_override_data"}


def copy_fcurve(source: bpy.types.FCurve, target: bpy.types.FCurve) -> None:
    """Make ``target`` the same curve as ``source``: its keys (handles, interpolation, easing), settings, modifiers."""
    points = target.keyframe_points
    points.clear()
    count = len(source.keyframe_points)
    points.add(count)
    for name in _KEY_VECTORS:
        values = [0.0] * (2 * count)
        source.keyframe_points.foreach_get(name, values)
        points.foreach_set(name, values)
    for name in _KEY_SCALARS:
        kind = bpy.types.Keyframe.bl_rna.properties[name]
        values = [0.0 if kind.type == "FLOAT" else 0] * count
        source.keyframe_points.foreach_get(name, values)
        points.foreach_set(name, values)
    for name in _CURVE_SETTINGS:
        if name in source.bl_rna.properties and not target.bl_rna.properties[name].is_readonly:
            setattr(target, name, getattr(source, name))
    for modifier in list(target.modifiers):  # 4.2 gives a new driver a Generator; the source's modifiers replace it
        target.modifiers.remove(modifier)
    for modifier in source.modifiers:
        copy_rna(modifier, target.modifiers.new(modifier.type))
    target.update()


def copy_driver(source: bpy.types.Driver, target: bpy.types.Driver) -> None:
    """Give ``target`` the type, expression and variables (with their targets) of ``source``."""
    target.type = source.type
    target.expression = source.expression
    target.use_self = source.use_self
    for variable in list(target.variables):
        target.variables.remove(variable)
    for variable in source.variables:
        new = target.variables.new()
        new.name, new.type = variable.name, variable.type
        for src, dst in zip(variable.targets, new.targets, strict=True):
            if variable.type == "SINGLE_PROP":
                dst.id_type = src.id_type  # before id: it decides which IDs the target accepts
            copy_rna(src, dst)


def copy_rna(source: bpy.types.bpy_struct, target: bpy.types.bpy_struct) -> None:
    """Copy every writable plain setting (numbers, enums, strings, arrays, ID pointers) of one struct to another.

    An F-curve modifier's envelope points are a collection: they are copied point by point.
    """
    for prop in source.bl_rna.properties:
        name = prop.identifier
        if name in _NOT_COPIED or prop.is_readonly or prop.type == "COLLECTION":
            continue
        try:
            setattr(target, name, getattr(source, name))
        except (AttributeError, TypeError, ValueError):  # a setting this target refuses (an ID of another type)
            continue
    if hasattr(source, "control_points") and hasattr(target, "control_points"):
        for point in source.control_points:
            copy_rna(point, target.control_points.add(point.frame))


def linear_interpolation() -> int:
    return bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["LINEAR"].value


def write_keys(
    id_data: bpy.types.ID,
    path: str,
    frames: Sequence[float],
    values: Sequence[float],
    interpolation: Sequence[int] | None = None,
    index: int = -1,
) -> None:
    """Replace the F-curve at ``path`` with one key per (frame, value), written in bulk; LINEAR unless given.

    ``index`` is the component of an array property (its F-curve's array_index); -1 for a plain property.
    """
    if index < 0:
        remove_animation(id_data, path)
    else:  # only this component: the others keep their curves
        for old in (compat.find_fcurve(id_data, path, index), _index_keyed(id_data, path, index)):
            if old is not None:
                compat.remove_fcurve(id_data, old)
    id_data.keyframe_insert(path, index=index, frame=frames[0])
    fcurve = compat.find_fcurve(id_data, path, max(index, 0)) or _index_keyed(id_data, path, max(index, 0))
    fcurve.data_path = path  # 5.0 keys the Scene's collection items by index on insert; keep the name
    points = fcurve.keyframe_points
    points.clear()
    points.add(len(frames))
    points.foreach_set("co", [v for pair in zip(frames, values, strict=True) for v in (float(pair[0]), float(pair[1]))])
    points.foreach_set("interpolation", interpolation or [linear_interpolation()] * len(frames))
    fcurve.update()


def _index_keyed(id_data: bpy.types.ID, path: str, index: int = 0) -> bpy.types.FCurve | None:
    """The F-curve a Scene collection item's name path got as an index path on insert (5.0), if any."""
    match = re.match(r'^bend\.(\w+)\["((?:[^"\\]|\\.)*)"\]', path)
    if match and isinstance(id_data, bpy.types.Scene):
        scene = id_data
        items = getattr(scene.bend, match.group(1))
        position = items.find(match.group(2).replace('\\"', '"').replace("\\\\", "\\"))
        return compat.find_fcurve(scene, f"bend.{match.group(1)}[{position}]" + path[match.end() :], index)
    return None
