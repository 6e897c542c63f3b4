"""The bend stack: add, remove, duplicate and reorder bends.

Animation is keyed by bend name, so these operators first rewrite any index-keyed paths (see
``properties.key_paths_by_name``); moving a bend then leaves its keyframes and drivers with it.
"""

import bpy
from bpy.props import EnumProperty

from ..blender import compat
from ..blender.animation import key_paths_by_name, remove_animation, write_keys
from ..blender.properties import bend_data_path, unique_bend_name
from ..engine.catalog import OPERATORS

DEFAULT_NAMES = {"rotate_r1": "R1", "rotate_r2": "R2", "rotate_r3": "R3", "rotate_r4": "R4"}


def _active(context: bpy.types.Context) -> bpy.types.PropertyGroup | None:
    settings = context.scene.bend
    if 0 <= settings.bend_index < len(settings.bends):
        return settings.bends[settings.bend_index]
    return None


class BEND_OT_bend_add(bpy.types.Operator):
    """Add a bend to the end of the stack"""

    bl_idname = "bend.bend_add"
    bl_label = "Add Bend"
    bl_options = {"REGISTER", "UNDO"}

    op: EnumProperty(name="Operator", items=[(n, n, s.summary) for n, s in OPERATORS.items()], default="rotate_r1")

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.bend
        bend = settings.bends.add()
        bend.op = self.op
        param = OPERATORS[self.op].param
        if param is not None and param.is_vector:  # start at the operator's neutral value (identity matrix, 0 angles)
            bend.param_vector[: param.length] = param.default
        bend.name = unique_bend_name(
            settings.bends, DEFAULT_NAMES.get(self.op, self.op.replace("_", " ").title()), exclude=bend
        )
        settings.bend_index = len(settings.bends) - 1
        return {"FINISHED"}


class BEND_OT_bend_remove(bpy.types.Operator):
    """Remove the active bend, with its keyframes and drivers"""

    bl_idname = "bend.bend_remove"
    bl_label = "Remove Bend"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _active(context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene, settings = context.scene, context.scene.bend
        key_paths_by_name(scene, "bends")
        remove_animation(scene, bend_data_path(_active(context).name, ""))
        settings.bends.remove(settings.bend_index)
        settings.bend_index = min(settings.bend_index, len(settings.bends) - 1)
        return {"FINISHED"}


class BEND_OT_bend_duplicate(bpy.types.Operator):
    """Copy the active bend, its settings, keyframes and drivers"""

    bl_idname = "bend.bend_duplicate"
    bl_label = "Duplicate Bend"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _active(context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        scene, settings = context.scene, context.scene.bend
        key_paths_by_name(scene, "bends")
        source = _active(context)
        copy = settings.bends.add()
        for prop in source.bl_rna.properties:
            if not prop.is_readonly and prop.identifier not in ("name", "previous_name", "rna_type"):
                setattr(copy, prop.identifier, getattr(source, prop.identifier))
        copy.name = unique_bend_name(settings.bends, source.name, exclude=copy)
        _copy_animation(scene, source, bend_data_path(source.name, ""), bend_data_path(copy.name, ""))
        settings.bends.move(len(settings.bends) - 1, settings.bend_index + 1)
        settings.bend_index += 1
        return {"FINISHED"}


def _component(bend: bpy.types.PropertyGroup, fcurve: bpy.types.FCurve, prefix: str) -> int:
    """The F-curve's array index for an array property (a vector parameter's component); -1 for a plain one."""
    prop = bend.bl_rna.properties.get(fcurve.data_path[len(prefix) :])
    return fcurve.array_index if getattr(prop, "array_length", 0) > 0 else -1


def _copy_animation(scene: bpy.types.Scene, source: bpy.types.PropertyGroup, old_prefix: str, new_prefix: str) -> None:
    for fcurve in list(compat.action_fcurves(scene)):
        if fcurve.data_path.startswith(old_prefix):
            points = fcurve.keyframe_points
            write_keys(
                scene,
                new_prefix + fcurve.data_path[len(old_prefix) :],
                [p.co[0] for p in points],
                [p.co[1] for p in points],
                [p.bl_rna.properties["interpolation"].enum_items[p.interpolation].value for p in points],
                _component(source, fcurve, old_prefix),
            )
    drivers = scene.animation_data.drivers if scene.animation_data else []
    for driver in list(drivers):
        if driver.data_path.startswith(old_prefix):
            copy = scene.driver_add(
                new_prefix + driver.data_path[len(old_prefix) :], _component(source, driver, old_prefix)
            )
            copy.driver.type = driver.driver.type
            copy.driver.expression = driver.driver.expression
            for variable in driver.driver.variables:
                new = copy.driver.variables.new()
                new.name, new.type = variable.name, variable.type
                for src, dst in zip(variable.targets, new.targets, strict=True):
                    dst.id_type, dst.id, dst.data_path = src.id_type, src.id, src.data_path


class BEND_OT_bend_move(bpy.types.Operator):
    """Move the active bend up or down the stack (bends apply in order)"""

    bl_idname = "bend.bend_move"
    bl_label = "Move Bend"
    bl_options = {"REGISTER", "UNDO"}

    direction: EnumProperty(items=[("UP", "Up", ""), ("DOWN", "Down", "")])

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _active(context) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        settings = context.scene.bend
        target = settings.bend_index + (-1 if self.direction == "UP" else 1)
        if not 0 <= target < len(settings.bends):
            return {"CANCELLED"}
        key_paths_by_name(context.scene, "bends")
        settings.bends.move(settings.bend_index, target)
        settings.bend_index = target
        return {"FINISHED"}


CLASSES = (BEND_OT_bend_add, BEND_OT_bend_remove, BEND_OT_bend_duplicate, BEND_OT_bend_move)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
