"""Driving a bend's parameter from baked audio features, with real Blender drivers.

Each driver is ``low + (high - low) * feature`` on the bend's parameter (or one component of a vector parameter,
by its array index), reading the baked feature, a custom property of the Scene (``scene["bend_rms"]``,
``blender/audio_features.py``). It lives on the Scene at the path Blender's UI gives the field
(``bend.bends[0].param``): the field shows purple, the Drivers editor lists it, and reading a custom property makes
no dependency cycle. It is a simple expression, so Blender evaluates it without Python: it keeps working in files
opened with "Auto Run Python Scripts" off. Removing it gives the parameter back to its keyframes.

*Drive from Embedding* drives component i of a vector parameter from ``embed_i`` (the song's principal audio
components, decorrelated), so a six-angle rotation moves with six independent curves of the music at once.
"""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty

from ..blender import audio_features, bend_stack, compat
from ..blender.animation import item_drivers
from ..blender.properties import FEATURE_LABELS, PARAM_PROPS
from ..engine.catalog import EMBEDDING_COMPONENTS, FEATURE_NAMES, OPERATORS

VARIABLE = "feature"


def _bend(context: bpy.types.Context, index: int) -> bpy.types.PropertyGroup | None:
    scene = compat.sequencer_scene(context)
    if index < 0:
        return bend_stack.active_bend(scene)
    bends = bend_stack.bends(scene)
    return bends[index] if index < len(bends) else None


def add_feature_driver(
    scene: bpy.types.Scene,
    bend_name: str,
    feature: str,
    low: float,
    high: float,
    prop: str = "param",
    component: int = -1,
):
    """Create (or replace) the driver on ``prop`` (its ``component`` for a vector; -1 for a number); its F-curve.

    The driver is on the Scene, at the path Blender's UI gives the property. The features' properties are made
    first (0 until a bake), so a driver added before the bake is valid and follows the bake's curves.
    """
    audio_features.ensure(scene)
    bend = scene.bend.bends[bend_name]
    for fcurve in item_drivers(bend, prop):
        if component < 0 or fcurve.array_index == component:
            scene.animation_data.drivers.remove(fcurve)
    fcurve = bend.driver_add(prop, component)
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
    target.data_path = audio_features.path(feature)
    driver.expression = f"{low!r} + {high - low!r} * {VARIABLE}"
    return fcurve


def _check_drivable(operator: bpy.types.Operator, bend: bpy.types.PropertyGroup | None, index: int) -> bool:
    if bend is None:
        operator.report({"ERROR"}, f"No bend {index}: select a bend in Bend > Bends")
        return False
    if not OPERATORS[bend.op].takes_param:
        operator.report({"ERROR"}, f"Bend {bend.name!r} ({bend.op}) has no parameter to drive")
        return False
    return True


class _DriveDialog:
    """What the driving operators share: which bend, a dialog for their settings, and a stack to drive."""

    index: IntProperty(name="Bend", description="The bend to drive; -1: the active bend", default=-1)

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return (scene := compat.sequencer_scene(context)) is not None and len(bend_stack.bends(scene)) > 0

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        return context.window_manager.invoke_props_dialog(self)


class BEND_OT_drive_from_feature(_DriveDialog, bpy.types.Operator):
    """Drive the bend's parameter (or one component of it) from a baked audio feature: low + (high − low) × feature"""

    bl_idname = "bend.drive_from_feature"
    bl_label = "Drive from Feature"
    bl_options = {"REGISTER", "UNDO"}

    feature: EnumProperty(
        name="Feature", items=[(n, FEATURE_LABELS[n][0], FEATURE_LABELS[n][1]) for n in FEATURE_NAMES], default="rms"
    )
    low: FloatProperty(name="Low", description="The parameter when the feature is 0", default=0.0)
    high: FloatProperty(name="High", description="The parameter when the feature is 1", default=1.0)
    component: IntProperty(
        name="Component", description="For a vector parameter: which component, from 0 (ignored otherwise)", min=0
    )

    def execute(self, context: bpy.types.Context) -> set[str]:
        bend = _bend(context, self.index)
        if not _check_drivable(self, bend, self.index):
            return {"CANCELLED"}
        param = OPERATORS[bend.op].param
        component = -1
        if param.is_vector:
            if self.component >= param.length:
                self.report(
                    {"ERROR"},
                    f"Bend {bend.name!r} ({bend.op}) has components 0 to {param.length - 1} "
                    f"({', '.join(param.names)}): set Component below {param.length}",
                )
                return {"CANCELLED"}
            component = self.component
        fcurve = add_feature_driver(
            bend.id_data, bend.name, self.feature, self.low, self.high, bend.param_prop(), component
        )
        if not fcurve.driver.is_valid:
            self.report({"ERROR"}, f"The driver on {bend.name!r} is invalid: bake the audio first (Bend > Audio)")
            return {"CANCELLED"}
        what = "parameter" if component < 0 else param.names[component]
        self.report({"INFO"}, f"{bend.name}: {what} = {fcurve.driver.expression} ({self.feature})")
        return {"FINISHED"}


class BEND_OT_drive_from_embedding(_DriveDialog, bpy.types.Operator):
    """Drive every component of the bend's parameter from the audio embedding, component i from embed_i:
    low + (high − low) × embed_i"""

    bl_idname = "bend.drive_from_embedding"
    bl_label = "Drive from Embedding"
    bl_options = {"REGISTER", "UNDO"}

    low: FloatProperty(name="Low", description="Each component when its embedding curve is 0", default=0.0)
    high: FloatProperty(name="High", description="Each component when its embedding curve is 1", default=1.0)
    around_default: BoolProperty(
        name="Around Default",
        description="Add Low and High to each component's neutral value (the identity matrix, zero angles), so "
        "the embedding moves the bend around doing nothing",
        default=False,
    )

    def execute(self, context: bpy.types.Context) -> set[str]:
        bend = _bend(context, self.index)
        if not _check_drivable(self, bend, self.index):
            return {"CANCELLED"}
        param = OPERATORS[bend.op].param
        defaults = param.default if isinstance(param.default, tuple) else (param.default,)
        # The embedding has EMBEDDING_COMPONENTS curves; a longer vector (a 4×4 matrix) keeps its other entries
        # rather than reusing curves, which would tie entries together (equal rows: a singular matrix).
        count = min(param.length, EMBEDDING_COMPONENTS)
        for i in range(count):
            base = defaults[i] if self.around_default else 0.0
            add_feature_driver(
                bend.id_data,  # the scene that holds the bend
                bend.name,
                f"embed_{i}",
                base + self.low,
                base + self.high,
                bend.param_prop(),
                i if param.is_vector else -1,
            )
        names = param.names or ("parameter",)
        message = f"{bend.name}: {', '.join(names[:count])} driven from embed_0..embed_{count - 1}"
        if count < param.length:
            message += f"; {names[count]}..{names[-1]} keep their values (the embedding has {count} components)"
        self.report({"INFO"}, message)
        return {"FINISHED"}


class BEND_OT_remove_feature_driver(bpy.types.Operator):
    """Remove the drivers from the bend's parameter (every component), giving it back to its keyframes"""

    bl_idname = "bend.remove_feature_driver"
    bl_label = "Remove Driver"
    bl_options = {"REGISTER", "UNDO"}

    index: IntProperty(name="Bend", description="The bend; -1: the active bend", default=-1)

    def execute(self, context: bpy.types.Context) -> set[str]:
        bend = _bend(context, self.index)
        drivers = [] if bend is None else [d for prop in PARAM_PROPS for d in item_drivers(bend, prop)]
        if not drivers:
            self.report({"ERROR"}, "That bend's parameter has no driver")
            return {"CANCELLED"}
        for driver in drivers:
            bend.id_data.animation_data.drivers.remove(driver)
        return {"FINISHED"}


CLASSES = (BEND_OT_drive_from_feature, BEND_OT_drive_from_embedding, BEND_OT_remove_feature_driver)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
