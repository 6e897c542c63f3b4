"""Driving a bend's parameter from a baked audio feature, with a real Blender driver.

The driver is ``low + (high - low) * feature`` on ``bend.bends["Name"].param``, reading
``scene.bend.audio.<feature>``. It is a simple expression, so Blender evaluates it without Python: it keeps
working in files opened with "Auto Run Python Scripts" off. The artist sees and edits it in the Drivers editor;
removing it gives the parameter back to its keyframes.
"""

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty

from ..engine.catalog import FEATURE_NAMES, OPERATORS
from ..properties import FEATURE_LABELS, bend_data_path

VARIABLE = "feature"


def _bend(context: bpy.types.Context, index: int) -> bpy.types.PropertyGroup | None:
    settings = context.scene.bend
    index = settings.bend_index if index < 0 else index
    return settings.bends[index] if 0 <= index < len(settings.bends) else None


def add_feature_driver(scene: bpy.types.Scene, bend_name: str, feature: str, low: float, high: float):
    """Create (or replace) the driver; returns its F-curve."""
    path = bend_data_path(bend_name)
    scene.driver_remove(path)
    fcurve = scene.driver_add(path)
    for modifier in list(fcurve.modifiers):  # 4.2 adds a Generator; the expression alone is the mapping
        fcurve.modifiers.remove(modifier)
    driver = fcurve.driver
    driver.type = "SCRIPTED"
    variable = driver.variables.new()
    variable.name = VARIABLE
    variable.type = "SINGLE_PROP"
    target = variable.targets[0]
    target.id_type = "SCENE"
    target.id = scene
    target.data_path = f"bend.audio.{feature}"
    driver.expression = f"{low!r} + {high - low!r} * {VARIABLE}"
    return fcurve


class BEND_OT_drive_from_feature(bpy.types.Operator):
    """Drive the bend's parameter from a baked audio feature: low + (high − low) × feature"""

    bl_idname = "bend.drive_from_feature"
    bl_label = "Drive from Feature"
    bl_options = {"REGISTER", "UNDO"}

    feature: EnumProperty(
        name="Feature", items=[(n, FEATURE_LABELS[n][0], FEATURE_LABELS[n][1]) for n in FEATURE_NAMES], default="rms"
    )
    low: FloatProperty(name="Low", description="The parameter when the feature is 0", default=0.0)
    high: FloatProperty(name="High", description="The parameter when the feature is 1", default=1.0)
    index: IntProperty(name="Bend", description="The bend to drive; -1: the active bend", default=-1)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return context.scene is not None and len(context.scene.bend.bends) > 0

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context: bpy.types.Context) -> set[str]:
        bend = _bend(context, self.index)
        if bend is None:
            self.report({"ERROR"}, f"No bend {self.index}: select a bend in Bend > Bends")
            return {"CANCELLED"}
        if not OPERATORS[bend.op].takes_param:
            self.report({"ERROR"}, f"Bend {bend.name!r} ({bend.op}) has no parameter to drive")
            return {"CANCELLED"}
        fcurve = add_feature_driver(context.scene, bend.name, self.feature, self.low, self.high)
        if not fcurve.driver.is_valid:
            self.report({"ERROR"}, f"The driver on {bend.name!r} is invalid: bake the audio first (Bend > Audio)")
            return {"CANCELLED"}
        self.report({"INFO"}, f"{bend.name}: parameter = {fcurve.driver.expression} ({self.feature})")
        return {"FINISHED"}


class BEND_OT_remove_feature_driver(bpy.types.Operator):
    """Remove the driver from the bend's parameter, giving it back to its keyframes"""

    bl_idname = "bend.remove_feature_driver"
    bl_label = "Remove Driver"
    bl_options = {"REGISTER", "UNDO"}

    index: IntProperty(name="Bend", description="The bend; -1: the active bend", default=-1)

    def execute(self, context: bpy.types.Context) -> set[str]:
        bend = _bend(context, self.index)
        if bend is None or not context.scene.driver_remove(bend_data_path(bend.name)):
            self.report({"ERROR"}, "That bend's parameter has no driver")
            return {"CANCELLED"}
        return {"FINISHED"}


CLASSES = (BEND_OT_drive_from_feature, BEND_OT_remove_feature_driver)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
