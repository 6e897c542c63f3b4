"""The bend stack: a node tree of its own (an ID), one Bend node per bend and one LoRA node per LoRA.

Why a node tree rather than a list on the Scene:
- **Name paths.** RNA keys nodes by name, so a bend's parameter is ``nodes["R1"].param`` on the tree: the path
  ``path_from_id`` gives, that the I key, *Insert Keyframe*, *Add Driver* and *Copy Data Path* use, that the panel's
  field shows as keyed or driven, and that the job builder reads. Renaming a node moves its F-curves and drivers.
- **No depsgraph cycle.** A driver on the tree that reads ``scene.bend.audio.<feature>`` crosses from one ID to
  another; the same driver on the Scene read the Scene it drives ("Dependency cycle detected").
- **Assets.** A stack is appendable from another .blend and can be marked as an asset, with its animation.

The order of bends is each node's ``position`` (nodes have no order of their own: the node editor re-sorts them
when they are selected). A stack is created on the first Add Bend (``ensure_stack``) and shared by pointer
(``scene.bend.stack``).
"""

from __future__ import annotations

import bpy
from bpy.props import FloatProperty, IntProperty, StringProperty

from ..engine.catalog import OPERATORS
from . import animation, compat
from .properties import STACK_TREE, BendFields

BEND_NODE = "BendNode"
LORA_NODE = "BendLoraNode"
STACK_NAME = "Bend Stack"


def node_path(node: bpy.types.Node, prop: str = "") -> str:
    """The tree's data path of a node's property (``nodes["R1"].param``, or ``param_vector[2]`` for a component a
    driver variable reads), or the node's own prefix without ``prop``; the node's part comes from Blender."""
    prefix = node.path_from_id()
    return f"{prefix}.{prop}" if prop else prefix


def _ordered(tree: bpy.types.NodeTree | None, idname: str) -> list[bpy.types.Node]:
    if tree is None:
        return []
    # The name breaks ties: a node duplicated in the node editor copies its position.
    return sorted((n for n in tree.nodes if n.bl_idname == idname), key=lambda n: (n.position, n.name))


def stack(scene: bpy.types.Scene) -> bpy.types.NodeTree | None:
    return scene.bend.stack


def ensure_stack(scene: bpy.types.Scene) -> bpy.types.NodeTree:
    """The scene's bend stack, created (and pointed to) when it has none.

    Python can set the pointer to any node tree (the panel's chooser offers only stacks): another kind is replaced.
    """
    if scene.bend.stack is None or scene.bend.stack.bl_idname != STACK_TREE:
        scene.bend.stack = bpy.data.node_groups.new(STACK_NAME, STACK_TREE)
    return scene.bend.stack


def bends(scene_or_tree: bpy.types.Scene | bpy.types.NodeTree) -> list[bpy.types.Node]:
    """The bends of a stack (or of a scene's stack) in the order they apply."""
    tree = scene_or_tree.bend.stack if isinstance(scene_or_tree, bpy.types.Scene) else scene_or_tree
    return _ordered(tree, BEND_NODE)


def loras(scene_or_tree: bpy.types.Scene | bpy.types.NodeTree) -> list[bpy.types.Node]:
    """The LoRAs of a stack (or of a scene's stack), in the order the panel lists them."""
    tree = scene_or_tree.bend.stack if isinstance(scene_or_tree, bpy.types.Scene) else scene_or_tree
    return _ordered(tree, LORA_NODE)


def active_bend(scene: bpy.types.Scene) -> bpy.types.Node | None:
    tree = scene.bend.stack
    items = bends(scene)
    return items[tree.active_bend] if tree is not None and 0 <= tree.active_bend < len(items) else None


def active_lora(scene: bpy.types.Scene) -> bpy.types.Node | None:
    tree = scene.bend.stack
    items = loras(scene)
    return items[tree.active_lora] if tree is not None and 0 <= tree.active_lora < len(items) else None


def renumber(nodes: list[bpy.types.Node]) -> None:
    """Positions 0, 1, 2 ... in the given order."""
    for position, node in enumerate(nodes):
        if node.position != position:
            node.position = position


def new_node(tree: bpy.types.NodeTree, idname: str, name: str, position: int | None = None) -> bpy.types.Node:
    """A node of the stack at ``position`` (default: the end), named ``name`` or ``name.001`` ... when taken."""
    siblings = _ordered(tree, idname)
    node = tree.nodes.new(idname)
    node.name = name  # Blender makes node names unique
    position = len(siblings) if position is None else max(0, min(position, len(siblings)))
    siblings.insert(position, node)
    renumber(siblings)
    node.location = (0.0, -200.0 * position) if idname == BEND_NODE else (300.0, -120.0 * position)
    return node


def remove_node(node: bpy.types.Node) -> None:
    """Delete a node of the stack with its keyframes and drivers; the others keep theirs and their order."""
    tree = node.id_data
    animation.remove_animation(tree, node_path(node) + ".")
    idname = node.bl_idname
    tree.nodes.remove(node)
    renumber(_ordered(tree, idname))


def duplicate_bend(node: bpy.types.Node) -> bpy.types.Node:
    """A copy of a bend right after it: its settings, and copies of its keyframes and drivers."""
    tree = node.id_data
    copy = new_node(tree, BEND_NODE, node.name, node.position + 1)
    copy_settings(node, copy)
    animation.copy_animation(tree, node_path(node) + ".", tree, node_path(copy) + ".")
    return copy


def copy_settings(source: bpy.types.bpy_struct, target: bpy.types.Node) -> None:
    """Every BendFields setting of ``source`` (a Bend node, or a legacy bend) onto ``target``."""
    for prop in bend_fields():
        value = getattr(source, prop)
        setattr(target, prop, value[:] if hasattr(value, "__len__") and not isinstance(value, str) else value)


def bend_fields() -> list[str]:
    """The names of the properties a bend holds (BendFields' annotations and its options mixin's)."""
    names: list[str] = []
    for cls in reversed(BendFields.__mro__):
        names += [n for n in getattr(cls, "__annotations__", {}) if n not in names]
    return names


def move(node: bpy.types.Node, offset: int) -> bool:
    """Move a bend or LoRA ``offset`` places in its list; False when that would leave the list."""
    siblings = _ordered(node.id_data, node.bl_idname)
    index = siblings.index(node)
    target = index + offset
    if not 0 <= target < len(siblings):
        return False
    siblings.insert(target, siblings.pop(index))
    renumber(siblings)
    return True


def retarget_drivers(tree: bpy.types.NodeTree, scene: bpy.types.Scene) -> None:
    """Point the stack's drivers that read a Scene at ``scene``.

    A stack appended from another file, or shared between scenes, reads the audio features of the scene that
    uses it, not of the scene it was made in (appending brings that one along as a dependency).
    """
    if tree.animation_data is None:
        return
    for fcurve in tree.animation_data.drivers:
        for variable in fcurve.driver.variables:
            for target in variable.targets:
                if variable.type == "SINGLE_PROP" and target.id_type == "SCENE" and target.id != scene:
                    target.id = scene


# --- the tree and its nodes --------------------------------------------------------------------------------------


def _list_index(kind: str) -> tuple[object, object]:
    """A get/set pair mapping ``tree.nodes`` indices (what template_list needs) to a bend's or LoRA's position."""
    idname, active = (BEND_NODE, "active_bend") if kind == "bend" else (LORA_NODE, "active_lora")

    def get(tree: bpy.types.NodeTree) -> int:
        ordered = _ordered(tree, idname)
        position = getattr(tree, active)
        if not 0 <= position < len(ordered):
            return -1
        return next(i for i, node in enumerate(tree.nodes) if node == ordered[position])

    def set_(tree: bpy.types.NodeTree, index: int) -> None:
        if 0 <= index < len(tree.nodes) and tree.nodes[index].bl_idname == idname:
            setattr(tree, active, _ordered(tree, idname).index(tree.nodes[index]))

    return get, set_


class BendStackTree(bpy.types.NodeTree):
    """Bends applied in order to every frame, and the LoRAs mixed into the model"""

    bl_idname = STACK_TREE
    bl_label = "Bend Stack"
    bl_icon = "FORCE_HARMONIC"

    active_bend: IntProperty(name="Active Bend", description="Position of the active bend", default=0, min=0)
    active_lora: IntProperty(name="Active LoRA", description="Position of the active LoRA", default=0, min=0)
    bend_list_index: IntProperty(
        name="Active Bend", get=_list_index("bend")[0], set=_list_index("bend")[1], options={"HIDDEN", "SKIP_SAVE"}
    )
    lora_list_index: IntProperty(
        name="Active LoRA", get=_list_index("lora")[0], set=_list_index("lora")[1], options={"HIDDEN", "SKIP_SAVE"}
    )


class _StackNode:
    position: IntProperty(name="Position", description="Where this node is in its list", min=0, options={"HIDDEN"})

    @classmethod
    def poll(cls, tree: bpy.types.NodeTree) -> bool:
        return tree.bl_idname == STACK_TREE

    def init(self, context: bpy.types.Context) -> None:
        # Added in the node editor: last in its list (new_node places the ones the operators add).
        others = [n.position for n in self.id_data.nodes if n.bl_idname == self.bl_idname and n != self]
        self.position = max(others, default=-1) + 1

    def copy(self, node: bpy.types.Node) -> None:
        self.init(bpy.context)


class BendNode(_StackNode, BendFields, bpy.types.Node):
    """One bend: an operator applied to the latent or inside the U-Net, with its animatable parameter"""

    bl_idname = BEND_NODE
    bl_label = "Bend"
    bl_icon = "MOD_WAVE"
    bl_width_default = 220

    def draw_buttons(self, context: bpy.types.Context, layout: bpy.types.UILayout) -> None:
        layout.prop(self, "enabled")
        layout.prop(self, "op", text="")
        param = OPERATORS[self.op].param
        if param is not None:
            layout.prop(self, "param_vector" if param.is_vector else "param")

    def draw_label(self) -> str:
        return self.name


class BendLoraNode(_StackNode, bpy.types.Node):
    """A LoRA mixed into the model with an animatable weight: keyframe it, or drive it from the audio"""

    bl_idname = LORA_NODE
    bl_label = "LoRA"
    bl_icon = "BRUSHES_ALL"
    bl_width_default = 220

    filepath: StringProperty(
        name="File",
        description="The LoRA's .safetensors file",
        subtype="FILE_PATH",
        options=compat.BLEND_RELATIVE_PATH,
    )
    weight: FloatProperty(
        name="Weight",
        description="How strongly the LoRA applies on this frame; keyframe it, or drive it from an audio feature",
        default=1.0,
        soft_min=0.0,
        soft_max=1.0,
    )

    def draw_buttons(self, context: bpy.types.Context, layout: bpy.types.UILayout) -> None:
        layout.prop(self, "filepath", text="")
        layout.prop(self, "weight")

    def draw_label(self) -> str:
        return self.name


CLASSES = (BendStackTree, BendNode, BendLoraNode)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
