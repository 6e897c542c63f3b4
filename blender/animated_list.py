"""Lists on the Scene whose items are animated at their index paths: the bends, the LoRAs, the prompts.

An item's keys and drivers sit at ``item.path_from_id(prop)`` (``bend.bends[2].param``), the path Blender's UI
gives the field; an index follows a position, so every change of positions goes through here and renumbers the
animation with the items (``animation.reindex``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import bpy

from . import animation


def unique_name(items: bpy.types.bpy_prop_collection, wanted: str, item: object = None) -> str:
    """``wanted``, or the first free ``name.001``, ``.002`` ... when another item of the list (not ``item``) has it;
    as Blender names its own data, a ``.NNN`` ending is replaced rather than extended."""
    taken = {other.name for other in items if other != item}
    if wanted not in taken:
        return wanted
    base, number = re.sub(r"\.\d{3}$", "", wanted), 1
    while f"{base}.{number:03d}" in taken:
        number += 1
    return f"{base}.{number:03d}"


def add_item(items: bpy.types.bpy_prop_collection, name: str) -> bpy.types.PropertyGroup:
    """A new item at the end of the list, named ``name`` (made unique); the others keep their paths."""
    wanted = unique_name(items, name)
    item = items.add()
    item.name = wanted
    return item


def remove_item(items: bpy.types.bpy_prop_collection, index: int) -> None:
    """Delete ``items[index]`` with its keys and drivers; the items after it keep theirs, one place up."""
    scene = items.id_data
    animation.reindex(scene, items, {index: None, **{i: i - 1 for i in range(index + 1, len(items))}})
    items.remove(index)


def move_item(items: bpy.types.bpy_prop_collection, index: int, offset: int) -> bool:
    """Move ``items[index]`` ``offset`` places with its animation; False when that would leave the list."""
    target = index + offset
    if not 0 <= target < len(items):
        return False
    order = list(range(len(items)))
    order.insert(target, order.pop(index))  # order[new position] = old position
    animation.reindex(items.id_data, items, {old: new for new, old in enumerate(order) if old != new})
    items.move(index, target)
    return True


def duplicate_item(
    items: bpy.types.bpy_prop_collection, index: int, copy_settings: Callable[[object, object], None]
) -> bpy.types.PropertyGroup:
    """A copy of ``items[index]`` right after it: its settings (``copy_settings(source, copy)``), and copies of its
    keys and drivers."""
    scene = items.id_data
    items.add()
    # Fetched after add(): adding may move the list's items in memory, so older references would dangle.
    source, copy = items[index], items[-1]
    copy_settings(source, copy)
    copy.name = unique_name(items, source.name, copy)
    # Make room at index + 1, then bring the copy (added last) there and give it the source's animation.
    animation.reindex(scene, items, {i: i + 1 for i in range(index + 1, len(items) - 1)})
    items.move(len(items) - 1, index + 1)
    animation.copy_item_animation(scene, items, index, index + 1)
    return items[index + 1]
