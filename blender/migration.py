"""Files saved by earlier versions open with every bend, LoRA, key and driver where this version keeps them.

This version animates list items at the index paths Blender's UI gives them (``bend.bends[0].param``) and keeps
the baked features as custom properties of the Scene (``["bend_rms"]``, ``audio_features.py``). On load:

- **Name paths** (``bend.bends["R1"].param``, ``bend.prompts["Prompt 1"].weight``, as versions before the node-tree
  stack keyed bends and every earlier version keyed prompts) become index paths.
- **A node-tree stack** (``scene.bend.stack``, the previous version, ``legacy_stack.py``): each Bend and LoRA node
  becomes an item of ``scene.bend.bends`` / ``scene.bend.loras`` in the stack's order with its settings, and every
  F-curve (keys with handles and interpolation, modifiers) and driver (type, expression, variables, modifiers) on
  the tree is copied to the item's path on the Scene. Drivers anywhere that read a node read its item. The tree is
  deleted once no scene uses it.
- **Features** keyed at ``bend.audio.<name>`` move to ``["bend_<name>"]``, and every driver variable reading one
  (the feature drivers) reads the custom property instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import bpy

from . import animated_list, animation, audio_features, bend_stack, legacy_stack

_LISTS = ("bends", "loras", "prompts")
_NAME_PATH = re.compile(r'^bend\.(?:bends|loras|prompts)\["')
_FEATURE_PATH = re.compile(r"^bend\.audio\.(\w+)$")


def _scene_paths(scene: bpy.types.Scene) -> list[str]:
    """Every data path the scene's animation writes and every driver variable reading the scene reads."""
    return [f.data_path for f in animation.animation_curves(scene)] + [t.data_path for t in animation.readers_of(scene)]


def needs_migration(scene: bpy.types.Scene) -> bool:
    if scene.bend.stack is not None:
        return True
    return any(_NAME_PATH.match(path) or _FEATURE_PATH.match(path) for path in _scene_paths(scene))


def _rename(scene: bpy.types.Scene, new_path: Callable[[str], str | None]) -> None:
    """Give the scene's F-curves and drivers, and the variables reading the scene, ``new_path(path)`` where it
    returns one."""
    holders = [*animation.animation_curves(scene), *animation.readers_of(scene)]
    for holder in holders:
        path = new_path(holder.data_path)
        if path is not None:
            holder.data_path = path


def _feature_path(path: str) -> str | None:
    match = _FEATURE_PATH.match(path)
    return audio_features.path(match.group(1)) if match else None


def _migrate_stack(scene: bpy.types.Scene, tree: bpy.types.NodeTree) -> int:
    """Copy a node-tree stack's bends and LoRAs, with their animation, into the scene's lists."""
    moved: dict[str, str] = {}  # node path prefix on the tree -> item path prefix on the Scene
    kinds = (
        (legacy_stack.BEND_NODE, scene.bend.bends, bend_stack.copy_settings),
        (legacy_stack.LORA_NODE, scene.bend.loras, _copy_lora),
    )
    first_bend = len(scene.bend.bends)
    for idname, items, copy in kinds:
        for node in legacy_stack.ordered(tree, idname):
            item = animated_list.add_item(items, node.name)
            copy(node, item)
            moved[node.path_from_id() + "."] = item.path_from_id() + "."
    if legacy_stack.ordered(tree, legacy_stack.BEND_NODE):
        scene.bend.bend_index = first_bend + tree.active_bend
    for old, new in moved.items():
        animation.copy_animation(tree, old, scene, new)
    for target in animation.readers_of(tree):  # e.g. an object's driver reading a bend's parameter
        prefix = next((old for old in moved if target.data_path.startswith(old)), None)
        if prefix is not None:
            path = moved[prefix] + target.data_path[len(prefix) :]
            target.id_type = "SCENE"  # before id: it decides which IDs the target accepts
            target.id = scene
            target.data_path = path
    scene.bend.stack = None
    return len(moved)


def _copy_lora(node: bpy.types.Node, item: bpy.types.PropertyGroup) -> None:
    item.filepath, item.weight = node.filepath, node.weight


def migrate_scene(scene: bpy.types.Scene) -> int:
    """Bring one scene's bends, LoRAs, prompts and features to this version; returns how many items moved."""
    for name in _LISTS:  # name paths to index paths, by the names the items have now
        items = getattr(scene.bend, name)
        animation.reindex(scene, items, {i: i for i in range(len(items))})
    moved = 0
    tree = scene.bend.stack
    if tree is not None and tree.bl_idname == legacy_stack.STACK_TREE:
        moved = _migrate_stack(scene, tree)
    scene.bend.stack = None
    if any(_FEATURE_PATH.match(path) for path in _scene_paths(scene)):
        audio_features.ensure(scene)
        _rename(scene, _feature_path)
    return moved


def migrate_all() -> list[str]:
    """Migrate every scene of the open file that needs it; the names of the scenes migrated."""
    migrated = []
    trees = {scene.bend.stack for scene in bpy.data.scenes} - {None}
    for scene in bpy.data.scenes:
        if scene.library is not None:  # linked from another file, read-only here: migrated when that file opens
            continue
        if needs_migration(scene):
            count = migrate_scene(scene)
            print(f"Diffusion Bender: moved scene {scene.name!r} to this version ({count} bends and LoRAs)")
            migrated.append(scene.name)
    for tree in trees:
        # Its bends are on the scenes now; it goes unless the artist kept it on purpose (a fake user). By type and
        # pointer, not by user count: 4.2 still counts a user for a pointer property just cleared.
        if not tree.use_fake_user and all(scene.bend.stack != tree for scene in bpy.data.scenes):
            bpy.data.node_groups.remove(tree)
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
