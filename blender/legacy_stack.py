"""The previous version's bend stack, a custom node tree, registered only so that its files can be read.

That version kept bends and LoRAs as nodes of a ``BendStackTree`` that ``scene.bend.stack`` pointed to, with their
animation on the tree (``nodes["R1"].param``). Blender's animation editors never list a Python node tree's curves,
so the stack moved back onto the Scene (``bend_stack.py``); ``migration.py`` reads these classes to move a file's
nodes and curves there on load. Nothing else creates or shows them: the tree type is hidden from the node editor.
"""

from __future__ import annotations

import bpy
from bpy.props import FloatProperty, IntProperty, StringProperty

from . import compat
from .properties import STACK_TREE, BendFields

BEND_NODE = "BendNode"
LORA_NODE = "BendLoraNode"


def ordered(tree: bpy.types.NodeTree, idname: str) -> list[bpy.types.Node]:
    """The tree's bend (or LoRA) nodes in their stack order (the name breaks ties, as that version did)."""
    return sorted((n for n in tree.nodes if n.bl_idname == idname), key=lambda n: (n.position, n.name))


class BendStackTree(bpy.types.NodeTree):
    """A bend stack saved by an earlier version; opening the file moves it to the scene's Bends panel"""

    bl_idname = STACK_TREE
    bl_label = "Bend Stack (Legacy)"
    bl_icon = "FORCE_HARMONIC"

    active_bend: IntProperty(default=0, min=0)
    active_lora: IntProperty(default=0, min=0)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return False  # not offered in the node editor: only read from old files


class _StackNode:
    position: IntProperty(min=0, options={"HIDDEN"})

    @classmethod
    def poll(cls, tree: bpy.types.NodeTree) -> bool:
        return tree.bl_idname == STACK_TREE


class BendNode(_StackNode, BendFields, bpy.types.Node):
    """A bend of an earlier version's stack"""

    bl_idname = BEND_NODE
    bl_label = "Bend"


class BendLoraNode(_StackNode, bpy.types.Node):
    """A LoRA of an earlier version's stack"""

    bl_idname = LORA_NODE
    bl_label = "LoRA"

    filepath: StringProperty(subtype="FILE_PATH", options=compat.BLEND_RELATIVE_PATH)
    weight: FloatProperty(default=1.0)


CLASSES = (BendStackTree, BendNode, BendLoraNode)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
