"""F-curves and drivers on the scene: bulk keyframe writes, and keeping animation with its collection item.

Bends and prompts are collection items, animated through data paths such as ``bend.bends["R1"].param``. Paths
keyed by name follow an item when the list is reordered; index-keyed paths (``bend.bends[0].param``, which is
what Blender creates when the artist presses I over a property) follow the position instead. The list operators
therefore rewrite index paths as name paths before they reorder or remove anything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import bpy

from . import compat


def animation_curves(scene: bpy.types.Scene) -> list[bpy.types.FCurve]:
    """The scene's keyframed F-curves and its drivers."""
    curves = list(compat.action_fcurves(scene))
    if scene.animation_data is not None:
        curves += list(scene.animation_data.drivers)
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


def remove_animation(scene: bpy.types.Scene, prefix: str) -> None:
    """Delete the keyframed F-curves and the drivers whose data path starts with ``prefix``."""
    for fcurve in compat.action_fcurves(scene):
        if fcurve.data_path.startswith(prefix):
            compat.remove_fcurve(scene, fcurve)
    drivers = scene.animation_data.drivers if scene.animation_data else []
    for driver in list(drivers):
        if driver.data_path.startswith(prefix):
            drivers.remove(driver)


def move_animation(scene: bpy.types.Scene, old_prefix: str, new_prefix: str) -> None:
    """Point F-curves and drivers under ``old_prefix`` at ``new_prefix`` (a renamed item)."""
    for fcurve in animation_curves(scene):
        if fcurve.data_path.startswith(old_prefix):
            fcurve.data_path = new_prefix + fcurve.data_path[len(old_prefix) :]


def item_path(item: bpy.types.bpy_struct, prop: str) -> str:
    """The data path of ``item.prop`` with the item keyed by name (``bend.bends["R1"].param``).

    Blender's own path (``path_from_id``) keys a collection item by index; the name key keeps the path with the item
    when the list is reordered (see ``key_paths_by_name``).
    """
    item_prefix = item.path_from_id()
    collection = item_prefix[: item_prefix.rindex("[")]
    return f'{collection}["{bpy.utils.escape_identifier(item.name)}"]' + item.path_from_id(prop)[len(item_prefix) :]


def item_drivers(scene: bpy.types.Scene, item: bpy.types.bpy_struct, prop: str) -> list[bpy.types.FCurve]:
    """The drivers on ``item.prop`` (every component of an array), keyed by name or, as the UI adds them, by index."""
    if scene.animation_data is None:
        return []
    paths = {item_path(item, prop), item.path_from_id(prop)}
    return [driver for driver in scene.animation_data.drivers if driver.data_path in paths]


def linear_interpolation() -> int:
    return bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items["LINEAR"].value


def write_keys(
    scene: bpy.types.Scene,
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
        remove_animation(scene, path)
    else:  # only this component: the others keep their curves
        for old in (compat.find_fcurve(scene, path, index), _index_keyed(scene, path, index)):
            if old is not None:
                compat.remove_fcurve(scene, old)
    scene.keyframe_insert(path, index=index, frame=frames[0])
    fcurve = compat.find_fcurve(scene, path, max(index, 0)) or _index_keyed(scene, path, max(index, 0))
    fcurve.data_path = path  # 5.0 keys collection items by index on insert; keep the name
    points = fcurve.keyframe_points
    points.clear()
    points.add(len(frames))
    points.foreach_set("co", [v for pair in zip(frames, values, strict=True) for v in (float(pair[0]), float(pair[1]))])
    points.foreach_set("interpolation", interpolation or [linear_interpolation()] * len(frames))
    fcurve.update()


def _index_keyed(scene: bpy.types.Scene, path: str, index: int = 0) -> bpy.types.FCurve | None:
    match = re.match(r'^bend\.(\w+)\["((?:[^"\\]|\\.)*)"\]', path)
    if match:
        items = getattr(scene.bend, match.group(1))
        position = items.find(match.group(2).replace('\\"', '"').replace("\\\\", "\\"))
        return compat.find_fcurve(scene, f"bend.{match.group(1)}[{position}]" + path[match.end() :], index)
    return None
