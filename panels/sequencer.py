"""The "Bend" tab of the Video Sequence Editor sidebar: model, prompts, audio, bends and render, in working order.

Draw code only reads scene data: anything that creates data (a sequence editor, a driver) belongs to an operator.
The Bends panel's body is ``draw_bends``, which the Graph Editor sidebar reuses.
"""

import math

import bpy

from ..blender import audio_features, bend_stack, compat, dependencies, preferences
from ..blender.animation import item_drivers
from ..blender.audio_source import scene_fps
from ..blender.properties import FEATURE_LABELS, INDEXED_SELECTIONS, PARAM_PROPS, RANDOM_SELECTIONS, scene_model_family
from ..blender.scene_job import output_size
from ..engine.catalog import FEATURE_NAMES, OPERATORS
from .dependencies import draw_missing_notice

CATEGORY = "Bend"


def _enum_name(data: bpy.types.bpy_struct, prop: str) -> str:
    return data.bl_rna.properties[prop].enum_items[getattr(data, prop)].name


def _draw_install_hint(layout: bpy.types.UILayout, missing: list[str]) -> bool:
    """What to do while the modules this panel's button needs are missing; True when it drew the hint."""
    if not missing:
        return False
    col = layout.column(align=True)
    row = col.row()
    row.alert = True
    row.label(text="Missing: " + ", ".join(missing), icon="ERROR")
    col.label(text=dependencies.INSTALL_HINT, icon="INFO")
    return True


def _param_driven(bend: bpy.types.PropertyGroup) -> bool:
    return any(item_drivers(bend, prop) for prop in PARAM_PROPS)


# --- lists ---------------------------------------------------------------------------------------------------


class BEND_UL_prompts(bpy.types.UIList):
    """One prompt per row: its text and its (keyframeable) weight."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        if self.layout_type == "GRID":
            layout.alignment = "CENTER"
            layout.label(text="", icon="TEXT")
            return
        split = layout.split(factor=0.7, align=True)
        split.prop(item, "text", text="", emboss=False, placeholder="Empty Prompt")
        split.prop(item, "weight", text="")


class BEND_UL_bends(bpy.types.UIList):
    """One bend per row: enabled, name and operator; a disabled bend reads greyed out."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        if self.layout_type == "GRID":
            layout.alignment = "CENTER"
            layout.prop(item, "enabled", text="")
            return
        row = layout.row(align=True)
        row.prop(item, "enabled", text="")
        sub = row.row(align=True)
        sub.active = item.enabled
        sub.prop(item, "name", text="", emboss=False)
        sub.label(text=_enum_name(item, "op"))


class BEND_UL_loras(bpy.types.UIList):
    """One LoRA per row: its name and its (keyframeable, drivable) weight."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0, flt_flag=0):
        if self.layout_type == "GRID":
            layout.alignment = "CENTER"
            layout.label(text="", icon="BRUSHES_ALL")
            return
        split = layout.split(factor=0.6, align=True)
        split.prop(item, "name", text="", emboss=False)
        split.prop(item, "weight", text="")


# --- panel bodies (functions, so other editors can reuse them) -----------------------------------------------


def _draw_family(layout: bpy.types.UILayout, scene: bpy.types.Scene) -> None:
    """The model's family and native size, read from its files, and what to change for this family."""
    family = scene_model_family(scene)
    if isinstance(family, str):
        row = layout.row()
        row.alert = True
        row.label(text=family, icon="ERROR")
        return
    layout.label(text=f"{family.label}, native {family.native_size}×{family.native_size}", icon="CHECKMARK")
    width, height = output_size(scene)
    for note in family.advice(width, height, scene.bend.guidance):
        row = layout.row()
        row.alert = True
        row.label(text=note, icon="ERROR")


def draw_model(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    scene = compat.sequencer_scene(context)
    settings = scene.bend
    draw_missing_notice(layout)

    layout.use_property_split = True
    layout.use_property_decorate = False
    col = layout.column()
    fallback = preferences.get(context).model_source.strip()
    # Empty means the preferences' model: show which one that is right in the field.
    col.prop(settings, "model_source", placeholder=f"Preferences: {fallback}" if fallback else "Preferences: Not Set")
    if not settings.model_source.strip() and not fallback:
        row = col.row()
        row.alert = True
        row.label(text="Set a Model Here or in Preferences", icon="ERROR")
    else:
        _draw_family(col, scene)
    col.prop(settings, "model_family")
    if settings.model_source.strip().lower().endswith(".safetensors") or settings.model_config:
        col.prop(settings, "model_config")
    col.prop(settings, "mode")

    col = layout.column(align=True)
    col.prop(settings, "steps")
    col.prop(settings, "guidance")
    col.prop(settings, "scheduler")
    col = layout.column(align=True)
    col.prop(settings, "seed")
    row = col.row()
    # img2img renders one frame at a time: each frame starts from the previous one.
    row.active = settings.mode == "txt2img"
    row.prop(settings, "batch_size")

    width, height = output_size(scene)
    fps = f"{scene_fps(scene):.2f}".rstrip("0").rstrip(".")
    col = layout.column(align=True)
    col.label(text=f"Output: {width} × {height} px", icon="IMAGE_DATA")
    col.label(text=f"{fps} fps, Frames {scene.frame_start}–{scene.frame_end}", icon="TIME")

    if settings.mode == "img2img":
        layout.separator()
        col = layout.column()
        col.label(text="Image to Image", icon="IMAGE_REFERENCE")
        col.prop(settings, "strength")
        col.prop(settings, "img2img_prompt_source")
        if settings.img2img_prompt_source == "CUSTOM":
            col.prop(settings, "img2img_prompt", text="Prompt")
        col.prop(settings, "init_image")

    layout.separator()
    col = layout.column()
    col.prop(settings, "noise_seed")
    col.prop(settings, "noise_mode")
    col.prop(settings, "phase_mode")
    if settings.phase_mode == "CUSTOM":
        col.prop(settings, "noise_phase")


def draw_prompts(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    settings = compat.sequencer_scene(context).bend
    row = layout.row()
    row.template_list("BEND_UL_prompts", "", settings, "prompts", settings, "prompt_index", rows=3)
    col = row.column(align=True)
    col.operator("bend.prompt_add", text="", icon="ADD")
    col.operator("bend.prompt_remove", text="", icon="REMOVE")
    layout.prop(settings, "negative_prompt", text="Negative", placeholder="Negative Prompt")
    layout.operator("bend.crossfade_at_markers", text="Crossfade at Markers", icon="MARKER_HLT")


def draw_audio(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    scene = compat.sequencer_scene(context)
    bake = scene.bend.audio_bake
    layout.use_property_split = True
    layout.use_property_decorate = False

    col = layout.column()
    col.prop(bake, "source")
    if bake.source == "STRIP":
        if scene.sequence_editor is not None:
            # compat.strips only creates an editor when there is none, which this branch rules out. Its
            # property name differs between versions; the collection's own path names it.
            strips = compat.strips(scene)
            col.prop_search(bake, "strip", strips.data, strips.path_from_id().rpartition(".")[2], icon="SOUND")
        else:
            col.prop(bake, "strip", icon="SOUND")
    col = layout.column(align=True)
    col.prop(bake, "window_ms")
    col.prop(bake, "centered")
    col = layout.column(align=True)
    col.prop(bake, "spectrum_window")
    col.prop(bake, "normalization")
    col = layout.column(align=True)
    col.prop(bake, "attack")
    col.prop(bake, "release")
    col.prop(bake, "median")
    col.prop(bake, "gate")
    col = layout.column(align=True)
    col.prop(bake, "tempo", text="Tempo (0: Detect)")
    col.prop(bake, "beats_per_bar")
    col.prop(bake, "beat_decay")
    _draw_install_hint(layout, dependencies.missing_bake_modules())
    layout.operator("bend.bake_audio", text="Bake Audio", icon="FILE_SOUND")
    if bake.baked_analysis:  # the tempo the features were baked with, kept in the file
        found = f"{bake.baked_tempo:.1f} BPM" if bake.baked_tempo else "No Beat Found"
        layout.label(text=f"Baked Tempo: {found}", icon="SOUND")
    # Markers at the song's sections, bars or beats, for Crossfade at Markers.
    row = layout.row(align=True)
    row.label(text="Markers", icon="MARKER_HLT")
    # The kinds come from the operator's own RNA: the panel draws what the verb offers.
    kinds = bpy.ops.bend.add_music_markers.get_rna_type().properties["kind"].enum_items
    for kind in kinds:
        row.operator("bend.add_music_markers", text=kind.name).kind = kind.identifier

    # The fields show the baked F-curves' values at the current frame, in Blender's animated colours.
    box = layout.box()
    if not audio_features.present(scene):
        box.label(text="Bake to see the features", icon="INFO")
        return
    box.label(text=f"Features at Frame {scene.frame_current}")
    col = box.column(align=True)
    for name in FEATURE_NAMES:
        col.prop(scene, audio_features.path(name), text=FEATURE_LABELS[name][0])


def draw_bends(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """The bend stack and the active bend's settings; shared by the VSE and Graph Editor sidebars.

    The fields are the bend's own properties, so Blender colours a keyed or driven one and its keyframe dot, the
    I key and right-click Add Driver act on the path the job reads.
    """
    scene = compat.sequencer_scene(context)
    settings = scene.bend
    row = layout.row()
    row.template_list("BEND_UL_bends", "", settings, "bends", settings, "bend_index", rows=4)
    col = row.column(align=True)
    col.operator("bend.bend_add", text="", icon="ADD")
    col.operator("bend.bend_remove", text="", icon="REMOVE")
    col.separator()
    col.operator("bend.bend_duplicate", text="", icon="DUPLICATE")
    col.separator()
    col.operator("bend.bend_move", text="", icon="TRIA_UP").direction = "UP"
    col.operator("bend.bend_move", text="", icon="TRIA_DOWN").direction = "DOWN"

    bend = bend_stack.active_bend(scene)
    if bend is None:
        return
    spec = OPERATORS[bend.op]

    layout.use_property_split = True
    layout.use_property_decorate = False
    col = layout.column()
    col.active = bend.enabled
    col.prop(bend, "op")
    col.prop(bend, "place")
    if bend.place == "LATENT":
        row = col.row()
        # Layer k bends the input of step k; k = steps is the final latent, anything above never happens.
        row.alert = bend.latent_layer > settings.steps
        row.prop(bend, "latent_layer")
    else:
        col.prop(bend, "unet_target")
        sub = col.column(align=True)
        sub.prop(bend, "step_start")
        sub.prop(bend, "step_end")

    col.prop(bend, "selection")
    if bend.selection in INDEXED_SELECTIONS:
        col.prop(bend, "selection_index")
    elif bend.selection in RANDOM_SELECTIONS:
        sub = col.column(align=True)
        sub.prop(bend, "fraction")
        sub.prop(bend, "selection_seed")

    # The catalog's option keys are BendFields' property names (see BendFields.operator_options).
    for option in spec.options:
        col.prop(bend, option)

    if not spec.takes_param:
        return
    col.separator()
    if spec.param.is_vector:
        _draw_vector_param(col, bend, spec.param.names)
    else:
        row = col.row()
        row.use_property_decorate = True  # the keyframe dot: the parameter is what artists animate
        row.prop(bend, "param")
    row = col.row(align=True)
    row.operator("bend.drive_from_feature", text="Drive from Feature", icon="DRIVER")
    row.operator("bend.drive_from_embedding", text="Drive from Embedding", icon="SOUND")
    if _param_driven(bend):
        col.operator("bend.remove_feature_driver", text="Remove Driver", icon="X")


def _draw_vector_param(layout: bpy.types.UILayout, bend: bpy.types.PropertyGroup, names: tuple[str, ...]) -> None:
    """One field per component, named as the catalog names it, each with its keyframe dot; a square count (a
    4×4 matrix) as a grid, row by row."""
    side = math.isqrt(len(names))
    per_row = side if side > 2 and side * side == len(names) else 1
    col = layout.column(align=True)
    col.use_property_decorate = True
    for start in range(0, len(names), per_row):
        row = col.row(align=True)
        if per_row > 1:
            row.use_property_split = False  # the name inside each field: a row has no room for split labels
        for i in range(start, start + per_row):
            row.prop(bend, "param_vector", index=i, text=names[i])


def draw_loras(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """The stack's LoRAs: each one's weight animates like a bend's parameter (key it, or drive it)."""
    scene = compat.sequencer_scene(context)
    settings = scene.bend
    row = layout.row()
    row.template_list("BEND_UL_loras", "", settings, "loras", settings, "lora_index", rows=2)
    col = row.column(align=True)
    col.operator("bend.lora_add", text="", icon="ADD")
    col.operator("bend.lora_remove", text="", icon="REMOVE")
    lora = bend_stack.active_lora(scene)
    if lora is None:
        return
    layout.use_property_split = True
    layout.use_property_decorate = True
    col = layout.column()
    col.prop(lora, "filepath")
    col.prop(lora, "weight")


def draw_preview(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    scene = compat.sequencer_scene(context)
    settings = scene.bend.preview
    layout.use_property_split = True
    layout.use_property_decorate = False
    col = layout.column(align=True)
    col.prop(settings, "steps")
    col.prop(settings, "scale")
    layout.prop(settings, "compare")
    _draw_install_hint(layout, dependencies.missing())  # none when an Engine Python brings its own
    row = layout.row(align=True)
    row.scale_y = 1.3
    row.operator("bend.preview_frame", text=f"Preview Frame {scene.frame_current}", icon="IMAGE_DATA")
    row.operator("bend.preview_release", text="Release GPU", icon="X")
    wm = context.window_manager  # Live Preview's state: read-only properties that operators/preview.py registers
    live = getattr(wm, "bend_live_preview", False)
    layout.operator("bend.live_preview", text="Live Preview", icon="PAUSE" if live else "PLAY", depress=live)
    if status := getattr(wm, "bend_live_preview_status", ""):
        layout.label(text=status)


def draw_sweep(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """Bend > Sweep: the active bend's parameter × layers, as the paper's figure grids."""
    scene = compat.sequencer_scene(context)
    settings = scene.bend
    layout.use_property_split = True
    layout.use_property_decorate = False
    bend = bend_stack.active_bend(scene)
    if bend is None:
        layout.label(text="Add a bend to sweep it")
        return
    sweep = settings.sweep
    if OPERATORS[bend.op].takes_param:
        col = layout.column(align=True)
        col.prop(sweep, "value_start")
        col.prop(sweep, "value_end")
        col.prop(sweep, "columns")
        col.prop(sweep, "include_end")
    layout.prop(sweep, "layers")
    layout.operator("bend.sweep", text=f"Sweep {bend.name}", icon="IMGDISPLAY")


def draw_render(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    scene = compat.sequencer_scene(context)
    settings = scene.bend
    layout.use_property_split = True
    layout.use_property_decorate = False
    # The placeholder is the folder an empty field stands for (scene_job.output_folder).
    layout.prop(settings, "output_folder", placeholder=f"//bend/{bpy.path.clean_name(scene.name)}/")
    if (settings.output_folder or "//").startswith("//") and not bpy.data.filepath:
        row = layout.row()
        row.alert = True
        row.label(text="Save the File First, or Set an Absolute Folder", icon="ERROR")
    _draw_install_hint(layout, dependencies.missing())
    col = layout.column(align=True)
    col.scale_y = 1.3
    col.operator("bend.render", text="Render Bent Frames", icon="RENDER_ANIMATION")
    col.operator("bend.export_video", text="Export Bent Video", icon="FILE_MOVIE")


# --- panels --------------------------------------------------------------------------------------------------


class _SequencerPanel:
    bl_space_type = "SEQUENCE_EDITOR"
    bl_region_type = "UI"
    bl_category = CATEGORY


class BEND_PT_model(_SequencerPanel, bpy.types.Panel):
    bl_label = "Model"
    bl_order = 0

    def draw(self, context):
        draw_model(self.layout, context)


class BEND_PT_prompts(_SequencerPanel, bpy.types.Panel):
    bl_label = "Prompts"
    bl_order = 1

    def draw(self, context):
        draw_prompts(self.layout, context)


class BEND_PT_audio(_SequencerPanel, bpy.types.Panel):
    bl_label = "Audio"
    bl_order = 2

    def draw(self, context):
        draw_audio(self.layout, context)


class BEND_PT_bends(_SequencerPanel, bpy.types.Panel):
    bl_label = "Bends"
    bl_order = 3

    def draw(self, context):
        draw_bends(self.layout, context)


class BEND_PT_loras(_SequencerPanel, bpy.types.Panel):
    bl_label = "LoRAs"
    bl_parent_id = "BEND_PT_bends"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        draw_loras(self.layout, context)


class BEND_PT_sweep(_SequencerPanel, bpy.types.Panel):
    bl_label = "Sweep"
    bl_order = 4
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        draw_sweep(self.layout, context)


class BEND_PT_preview(_SequencerPanel, bpy.types.Panel):
    bl_label = "Preview"
    bl_order = 5

    def draw(self, context):
        draw_preview(self.layout, context)


class BEND_PT_render(_SequencerPanel, bpy.types.Panel):
    bl_label = "Render"
    bl_order = 6

    def draw(self, context):
        draw_render(self.layout, context)


CLASSES = (
    BEND_UL_prompts,
    BEND_UL_bends,
    BEND_UL_loras,
    BEND_PT_model,
    BEND_PT_prompts,
    BEND_PT_audio,
    BEND_PT_bends,
    BEND_PT_loras,
    BEND_PT_sweep,
    BEND_PT_preview,
    BEND_PT_render,
)


register, unregister = bpy.utils.register_classes_factory(CLASSES)
