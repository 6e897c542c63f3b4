"""Files saved before bend stacks were node trees: their bends and animation move to a stack when they load.

The previous version kept bends in ``scene.bend.bends`` (a collection on the Scene) and their keys and drivers on
the Scene, at ``bend.bends["R1"].param`` (or ``bend.bends[0].param``, as the I key made them). On load, each such
scene gets a bend stack (``bend_stack.py``) with one node per bend, in the same order and with the same settings;
every F-curve (keys with their handles and interpolation, modifiers) and driver (type, expression, variables and
their targets, modifiers) is copied to the node's path on the tree, then the Scene's copies and the legacy list are
cleared. The legacy list stays registered (hidden) only so that these files can be read.
"""

from __future__ import annotations

import re

import bpy

from . import animation, bend_stack, compat

_LEGACY = re.compile(r'^bend\.bends(?:\["((?:[^"\\]|\\.)*)"\]|\[(\d+)\])\.')


def _legacy_name(scene: bpy.types.Scene, data_path: str) -> tuple[str, str] | None:
    """(bend name, rest of the path) of a legacy bend path, keyed by name or by index; None for any other path."""
    match = _LEGACY.match(data_path)
    if match is None:
        return None
    if match.group(1) is not None:
        name = match.group(1).replace('\\"', '"').replace("\\\\", "\\")
    else:
        index = int(match.group(2))
        if index >= len(scene.bend.bends):
            return None
        name = scene.bend.bends[index].name
    return name, data_path[match.end() :]


def needs_migration(scene: bpy.types.Scene) -> bool:
    settings = scene.bend
    return len(settings.bends) > 0 or any(_legacy_name(scene, f.data_path) for f in animation.animation_curves(scene))


def migrate_scene(scene: bpy.types.Scene) -> int:
    """Move the scene's legacy bends and their animation to its bend stack; returns how many bends moved."""
    settings = scene.bend
    tree = bend_stack.ensure_stack(scene)
    names: dict[str, str] = {}  # legacy name -> node name (the same, unless the stack already had one)
    for legacy in settings.bends:
        node = bend_stack.new_node(tree, bend_stack.BEND_NODE, legacy.name)
        bend_stack.copy_settings(legacy, node)
        names[legacy.name] = node.name
    if names:
        tree.active_bend = len(bend_stack.bends(tree)) - len(names) + max(0, settings.bend_index)

    for fcurve in list(compat.action_fcurves(scene)):
        found = _legacy_name(scene, fcurve.data_path)
        if found is not None and found[0] in names:
            path = bend_stack.node_path(tree.nodes[names[found[0]]], found[1])
            animation.copy_fcurve(fcurve, compat.new_fcurve(tree, path, fcurve.array_index))
    for driver in list(scene.animation_data.drivers if scene.animation_data else []):
        found = _legacy_name(scene, driver.data_path)
        if found is not None and found[0] in names:
            path = bend_stack.node_path(tree.nodes[names[found[0]]], found[1])
            copy = animation.new_driver(tree, path, driver.array_index)
            animation.copy_fcurve(driver, copy)
            animation.copy_driver(driver.driver, copy.driver)
    _retarget_reads_of_bends(scene, tree, names)

    # Only now, with every copy made: clearing first would renumber the index paths still to be read.
    for fcurve in list(compat.action_fcurves(scene)):
        if _LEGACY.match(fcurve.data_path):
            compat.remove_fcurve(scene, fcurve)
    for driver in list(scene.animation_data.drivers if scene.animation_data else []):
        if _LEGACY.match(driver.data_path):
            scene.animation_data.drivers.remove(driver)
    settings.bends.clear()
    settings.bend_index = 0
    return len(names)


def _retarget_reads_of_bends(scene: bpy.types.Scene, tree: bpy.types.NodeTree, names: dict[str, str]) -> None:
    """Drivers anywhere that read a legacy bend's value now read its node."""
    owners = [tree, scene, *bpy.data.objects, *bpy.data.materials]
    for owner in owners:
        for driver in owner.animation_data.drivers if owner.animation_data else []:
            for variable in driver.driver.variables:
                for target in variable.targets:
                    found = _legacy_name(scene, target.data_path) if target.id == scene else None
                    if found is not None and found[0] in names:
                        target.id_type = "NODETREE"
                        target.id = tree
                        target.data_path = bend_stack.node_path(tree.nodes[names[found[0]]], found[1])


def migrate_all() -> list[str]:
    """Migrate every scene of the open file that needs it; the names of the scenes migrated."""
    migrated = []
    for scene in bpy.data.scenes:
        if needs_migration(scene):
            count = migrate_scene(scene)
            print(f"Diffusion Bender: moved {count} bends of scene {scene.name!r} and their animation to a bend stack")
            migrated.append(scene.name)
    return migrated


@bpy.app.handlers.persistent
def _on_load(_file: object) -> None:
    migrate_all()


def _migrate_open_file() -> None:
    migrate_all()


def register() -> None:
    bpy.app.handlers.load_post.append(_on_load)
    # A file already open when the extension is enabled (an update installed mid-session) gets no load_post; data
    # cannot change while add-ons register, so a timer runs the migration right after.
    bpy.app.timers.register(_migrate_open_file, first_interval=0.0)


def unregister() -> None:
    if bpy.app.timers.is_registered(_migrate_open_file):
        bpy.app.timers.unregister(_migrate_open_file)
    if _on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load)
