"""The bend stack: add, remove, duplicate and reorder bends; add and remove LoRAs.

Bends and LoRAs are lists on the Scene (``blender/bend_stack.py``), animated at their index paths; every operator
here that changes positions renumbers the animation with the items, so each bend keeps its own keys and drivers.
"""

import bpy
from bpy.props import EnumProperty, StringProperty

from ..blender import animated_list, bend_stack, compat
from ..engine.catalog import OPERATORS

DEFAULT_NAMES = {"rotate_r1": "R1", "rotate_r2": "R2", "rotate_r3": "R3", "rotate_r4": "R4"}


class BEND_OT_bend_add(bpy.types.Operator):
    """Add a bend to the end of the stack"""

    bl_idname = "bend.bend_add"
    bl_label = "Add Bend"
    bl_options = {"REGISTER", "UNDO"}

    op: EnumProperty(name="Operator", items=[(n, n, s.summary) for n, s in OPERATORS.items()], default="rotate_r1")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = compat.sequencer_scene(context).bend
        bend = animated_list.add_item(settings.bends, DEFAULT_NAMES.get(self.op, self.op.replace("_", " ").title()))
        bend.op = self.op
        param = OPERATORS[self.op].param
        if param is not None and param.is_vector:  # start at the operator's neutral value (identity matrix, 0 angles)
            bend.param_vector[: param.length] = param.default
        settings.bend_index = len(settings.bends) - 1
        return {"FINISHED"}


class _ActiveBend:
    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return (scene := compat.sequencer_scene(context)) is not None and bend_stack.active_bend(scene) is not None


class BEND_OT_bend_remove(_ActiveBend, bpy.types.Operator):
    """Remove the active bend, with its keyframes and drivers"""

    bl_idname = "bend.bend_remove"
    bl_label = "Remove Bend"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = compat.sequencer_scene(context).bend
        animated_list.remove_item(settings.bends, settings.bend_index)
        settings.bend_index = max(0, min(settings.bend_index, len(settings.bends) - 1))
        return {"FINISHED"}


class BEND_OT_bend_duplicate(_ActiveBend, bpy.types.Operator):
    """Copy the active bend, its settings, keyframes and drivers"""

    bl_idname = "bend.bend_duplicate"
    bl_label = "Duplicate Bend"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = compat.sequencer_scene(context).bend
        animated_list.duplicate_item(settings.bends, settings.bend_index, bend_stack.copy_settings)
        settings.bend_index += 1
        return {"FINISHED"}


class BEND_OT_bend_move(_ActiveBend, bpy.types.Operator):
    """Move the active bend up or down the stack (bends apply in order)"""

    bl_idname = "bend.bend_move"
    bl_label = "Move Bend"
    bl_options = {"REGISTER", "UNDO"}

    direction: EnumProperty(items=[("UP", "Up", ""), ("DOWN", "Down", "")])

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = compat.sequencer_scene(context).bend
        offset = -1 if self.direction == "UP" else 1
        if not animated_list.move_item(settings.bends, settings.bend_index, offset):
            return {"CANCELLED"}
        settings.bend_index += offset
        return {"FINISHED"}


class BEND_OT_lora_add(bpy.types.Operator):
    """Add a LoRA: its weight is animatable, so a style can swell with the music"""

    bl_idname = "bend.lora_add"
    bl_label = "Add LoRA"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="File", description="The LoRA's .safetensors file", subtype="FILE_PATH")
    filter_glob: StringProperty(default="*.safetensors", options={"HIDDEN"})

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = compat.sequencer_scene(context).bend
        stem = bpy.path.display_name_from_filepath(self.filepath) if self.filepath else "LoRA"
        lora = animated_list.add_item(settings.loras, stem or "LoRA")
        if self.filepath:
            # Relative to the .blend when it is saved, so the file travels with the project.
            lora.filepath = bpy.path.relpath(self.filepath) if bpy.data.filepath else self.filepath
        settings.lora_index = len(settings.loras) - 1
        return {"FINISHED"}


class BEND_OT_lora_remove(bpy.types.Operator):
    """Remove the active LoRA, with its weight's keyframes and drivers"""

    bl_idname = "bend.lora_remove"
    bl_label = "Remove LoRA"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return (scene := compat.sequencer_scene(context)) is not None and bend_stack.active_lora(scene) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = compat.sequencer_scene(context).bend
        animated_list.remove_item(settings.loras, settings.lora_index)
        settings.lora_index = max(0, min(settings.lora_index, len(settings.loras) - 1))
        return {"FINISHED"}


CLASSES = (
    BEND_OT_bend_add,
    BEND_OT_bend_remove,
    BEND_OT_bend_duplicate,
    BEND_OT_bend_move,
    BEND_OT_lora_add,
    BEND_OT_lora_remove,
)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
