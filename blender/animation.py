"""F-curves and drivers on an ID: bulk keyframe writes, copies, and keeping a list item's animation with it.

A list item's keys and drivers live on its ID at the path Blender's own UI gives it, ``item.path_from_id(prop)``:
``bend.bends[2].param``, ``bend.prompts[0].weight``. That is the path the field's colour and keyframe dot, the I key,
Insert Keyframe, Add Driver, Copy Data Path, the Graph Editor and the job all share. An index path follows a
position, not an item, so the list operators call ``reindex`` when they reorder, remove or duplicate items:
every F-curve, driver and driver variable that names an item by position is renumbered with it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import bpy

from . import compat


def animation_curves(id_data: bpy.types.ID) -> list[bpy.types.FCurve]:
    """The ID's keyframed F-curves and its drivers."""
    curves = list(compat.action_fcurves(id_data))
    if id_data.animation_data is not None:
        curves += list(id_data.animation_data.drivers)
    return curves


def _item_pattern(list_path: str) -> re.Pattern[str]:
    """``<list_path>[i]`` or ``<list_path>["name"]`` at the start of a data path."""
    return re.compile(rf'^{re.escape(list_path)}(?:\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\])')


def _unescape(name: str) -> str:
    return name.replace('\\"', '"').replace("\\\\", "\\")


def readers_of(id_data: bpy.types.ID) -> list[bpy.types.DriverTarget]:
    """Driver variable targets, on any ID, that read a property of ``id_data``."""
    users = bpy.data.user_map(subset={id_data}).get(id_data, set()) | {id_data}
    targets = []
    for user in users:
        anim = getattr(user, "animation_data", None)
        for driver in anim.drivers if anim is not None else []:
            for variable in driver.driver.variables:
                targets += [t for t in variable.targets if t.id == id_data and t.data_path]
    return targets


def reindex(id_data: bpy.types.ID, items: bpy.types.bpy_prop_collection, new_index: Mapping[int, int | None]) -> None:
    """Renumber the animation of a list's items before the list itself changes.

    Every F-curve and driver of ``id_data`` under ``<list>[i]`` (or ``<list>["name"]``, resolved by the names the
    items have now) moves to ``<list>[new_index[i]]``; an item mapped to None loses its curves. Driver variables
    anywhere that read an item follow it too. Items absent from ``new_index`` keep their paths.
    """
    list_path = items.path_from_id()
    pattern = _item_pattern(list_path)

    def renumbered(path: str) -> str | bool | None:
        match = pattern.match(path)
        if match is None:
            return False  # not an item's path
        index = int(match.group(1)) if match.group(1) is not None else items.find(_unescape(match.group(2)))
        if index not in new_index:
            return False
        target = new_index[index]
        return None if target is None else f"{list_path}[{target}]{path[match.end() :]}"

    moves: list[tuple[bpy.types.bpy_struct, str]] = []
    for curve in animation_curves(id_data):
        path = renumbered(curve.data_path)
        if path is None:
            remove_curve(id_data, curve)
        elif path is not False:
            moves.append((curve, path))
    for target in readers_of(id_data):
        path = renumbered(target.data_path)
        if isinstance(path, str):
            moves.append((target, path))
    # Paths are assigned only once all are known: a permutation would otherwise read its own writes.
    for holder, path in moves:
        holder.data_path = path


def copy_item_animation(id_data: bpy.types.ID, items: bpy.types.bpy_prop_collection, source: int, target: int) -> int:
    """Copy the keys and drivers of ``items[source]`` to ``items[target]``; returns how many curves were copied."""
    list_path = items.path_from_id()
    return copy_animation(id_data, f"{list_path}[{source}].", id_data, f"{list_path}[{target}].")


def remove_curve(id_data: bpy.types.ID, curve: bpy.types.FCurve) -> None:
    """Delete one of the ID's curves: a driver from its drivers, a keyframed F-curve from its action."""
    if curve.driver is not None:
        id_data.animation_data.drivers.remove(curve)
    else:
        compat.remove_fcurve(id_data, curve)


def remove_animation(id_data: bpy.types.ID, prefix: str) -> None:
    """Delete the keyframed F-curves and the drivers whose data path starts with ``prefix``."""
    for curve in animation_curves(id_data):
        if curve.data_path.startswith(prefix):
            remove_curve(id_data, curve)


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
        old = compat.find_fcurve(id_data, path, index)
        if old is not None:
            compat.remove_fcurve(id_data, old)
    id_data.keyframe_insert(path, index=index, frame=frames[0])
    fcurve = compat.find_fcurve(id_data, path, max(index, 0))
    points = fcurve.keyframe_points
    points.clear()
    points.add(len(frames))
    points.foreach_set("co", [v for pair in zip(frames, values, strict=True) for v in (float(pair[0]), float(pair[1]))])
    points.foreach_set("interpolation", interpolation or [linear_interpolation()] * len(frames))
    fcurve.update()
