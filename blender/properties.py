"""Scene settings under ``scene.bend``: model, prompts, noise walk, img2img, the bend stack and its LoRAs.

Everything an artist animates is an ordinary animatable property of the Scene: prompt weights, the noise phase,
img2img strength, each bend's parameter and each LoRA's weight (lists on the Scene, ``blender/bend_stack.py``).
The baked features are custom properties of the Scene (``blender/audio_features.py``). ``BendFields`` is what a
bend holds. Enum identifiers are the engine's own names (``engine/catalog.py``), so the job builder passes them
through unchanged.
"""

# No "from __future__ import annotations": Blender reads property annotations as evaluated objects.
import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    FloatVectorProperty,
    IntProperty,
    IntVectorProperty,
    PointerProperty,
    StringProperty,
)

from ..engine.catalog import (
    FEATURES,
    MAX_TEMPO_BPM,
    MIN_TEMPO_BPM,
    NORMALIZATIONS,
    OPERATORS,
    OPTIONS,
    SCHEDULER_ALIASES,
    SELECTIONS,
    OptionSpec,
)
from ..engine.families import FAMILIES
from . import animated_list, compat, preferences
from .model_family import ALL_UNET_TARGETS, model_family, unet_target_items

# Labels and tooltips come from the engine's one description of each feature, so a new feature gets its property.
FEATURE_LABELS = {name: (spec.label, f"{spec.description} ({spec.units})") for name, spec in FEATURES.items()}

SELECTION_LABELS = {
    "all": ("All", "Every element"),
    "channel": ("Channel", "One channel"),
    "row": ("Row", "One row"),
    "column": ("Column", "One column"),
    "random": ("Random Elements", "A seeded random fraction of elements, the same on every frame"),
    "random_channels": ("Random Channels", "A seeded random fraction of whole channels, for spatial bends"),
    "random_rows": ("Random Rows", "A seeded random fraction of whole rows, the same on every frame"),
    "random_columns": ("Random Columns", "A seeded random fraction of whole columns, the same on every frame"),
}
INDEXED_SELECTIONS = ("channel", "row", "column")  # these take selection_index
RANDOM_SELECTIONS = ("random", "random_channels", "random_rows", "random_columns")  # these take fraction and seed

# One vector property holds every vector operator's components (six angles, sixteen matrix entries): an operator
# uses the first K, so switching operators keeps one F-curve per component and the job reads a prefix.
PARAM_PROPS = ("param", "param_vector")  # every BendFields property that animates a parameter
PARAM_VECTOR_SIZE = max(spec.param.length for spec in OPERATORS.values() if spec.param is not None)
# Presentation only: the option's values are the catalog's, these are their names in menus.
_OPTION_VALUE_LABELS = {"normalize_dim": {"0": "Channels", "1": "Rows", "2": "Columns"}}
_INT_MAX = 2**31 - 1  # Blender's IntProperty is 32-bit
STACK_TREE = "BendStackTree"  # the previous version's node tree (legacy_stack.py), read only to migrate files


def _operator_items() -> list[tuple[str, str, str]]:
    return [(name, name.replace("_", " ").title(), spec.summary) for name, spec in OPERATORS.items()]


def _option_property(spec: OptionSpec) -> object:
    """The BendFields property of one catalog option, named like the option key: a job's value comes straight from it.

    A choice, or an integer that may be null ("off"), is a menu whose "NONE" item stands for null; other integers
    are int fields (a vector for a pair such as a channel plane), bounded as the catalog bounds them.
    """
    description = spec.description[:1].upper() + spec.description[1:]
    name = spec.name.replace("_", " ").title()
    if spec.kind == "choice" or spec.nullable:
        if spec.kind == "choice":
            values = [str(choice) for choice in spec.choices]
        elif spec.low is None or spec.high is None:
            raise ValueError(f"catalog.OPTIONS[{spec.name!r}]: a nullable integer option needs low and high")
        else:
            values = [str(v) for v in range(spec.low, spec.high + 1)]
        labels = _OPTION_VALUE_LABELS.get(spec.name, {})
        items = [("NONE", "None", "Off")] if spec.nullable else []
        items += [(v, labels.get(v, v.upper()), "") for v in values]
        default = "NONE" if spec.default is None else str(spec.default)
        return EnumProperty(name=name, description=description, items=items, default=default)
    bounds = {}
    if spec.low is not None:
        bounds["min"] = max(spec.low, -_INT_MAX)
    if spec.high is not None:
        bounds["max"] = min(spec.high, _INT_MAX)
    if spec.size > 1:
        return IntVectorProperty(name=name, description=description, size=spec.size, default=spec.default, **bounds)
    return IntProperty(name=name, description=description, default=spec.default or 0, **bounds)


def _option_value(item: bpy.types.PropertyGroup, spec: OptionSpec) -> object:
    """The job value of option ``spec`` from its BendFields property (the inverse of ``_option_property``)."""
    value = getattr(item, spec.name)
    if spec.nullable and value == "NONE":
        return None
    if spec.kind == "choice":
        return next(choice for choice in spec.choices if str(choice) == value)
    if spec.nullable:
        return int(value)
    return [int(v) for v in value] if spec.size > 1 else int(value)


# Every option some operator takes, as a mixin of generated properties (Blender registers a mixin's annotations).
_OPTION_KEYS = [key for key in OPTIONS if any(key in spec.options for spec in OPERATORS.values())]
_BendOptions = type(
    "_BendOptions", (), {"__annotations__": {key: _option_property(OPTIONS[key]) for key in _OPTION_KEYS}}
)


# Blender keeps a dynamic enum's items alive only while Python does: one list per family, kept here.
_TARGET_ITEMS: dict[str, list] = {}


def scene_model_family(scene):
    """The family of the model the scene renders with (its own or the preferences'), or a reason it is unknown."""
    source = scene.bend.model_source.strip() or preferences.get(bpy.context).model_source.strip()
    return model_family(bpy.path.abspath(source) if source.startswith("//") else source, scene.bend.model_family)


def _unet_target_items(self, context):
    # The family of the scene that owns the bend; a legacy Bend node's owner is its node tree.
    owner = getattr(self, "id_data", None)
    scene = owner if isinstance(owner, bpy.types.Scene) else compat.sequencer_scene(context) if context else None
    family = scene_model_family(scene) if scene is not None else None
    key = getattr(family, "name", "")
    if key not in _TARGET_ITEMS:
        _TARGET_ITEMS[key] = unet_target_items(family)
    return _TARGET_ITEMS[key]


class BendPrompt(bpy.types.PropertyGroup):
    text: StringProperty(name="Prompt", description="What to draw; may be empty")
    weight: FloatProperty(
        name="Weight",
        description="This prompt's share of the text condition; keyframe weights to crossfade between prompts",
        default=1.0,
        min=0.0,
        soft_max=1.0,
    )


class BendFields(_BendOptions):
    """Everything a bend holds: operator, placement, selection, options and its animatable parameter.

    A mixin: ``BendItem`` and the previous version's Bend node (``legacy_stack.BendNode``) both carry these fields
    (Blender registers a base class's annotations too), so a migrated bend copies them one by one by name.
    """

    enabled: BoolProperty(name="Enabled", default=True, description="Include this bend in renders")
    op: EnumProperty(name="Operator", items=_operator_items(), default="rotate_r1")
    place: EnumProperty(
        name="Where",
        items=[
            ("LATENT", "Latent Layer", "Bend the latent fed into sampling step k (the paper's layer)"),
            ("UNET", "Inside U-Net", "Bend a U-Net block's output with a forward hook (Broad's network bending)"),
        ],
        default="LATENT",
    )
    latent_layer: IntProperty(
        name="Layer",
        description="Step k whose input is bent: 0 is the initial noise, the step count is the final latent",
        default=0,
        min=0,
    )
    unet_target: EnumProperty(
        name="Target",
        description="The U-Net block whose output is bent; the menu lists the blocks of the model's family",
        items=_unet_target_items,
        default=ALL_UNET_TARGETS.index("mid_block"),
    )
    step_start: IntProperty(name="From Step", description="First sampling step the hook is active", min=0)
    step_end: IntProperty(
        name="To Step", description="Step the hook stops before; 0 means to the last step", default=0, min=0
    )
    selection: EnumProperty(name="Selection", items=[(k, *SELECTION_LABELS[k]) for k in SELECTIONS], default="all")
    selection_index: IntProperty(name="Index", description="Which channel, row or column", default=0, min=0)
    fraction: FloatProperty(
        name="Fraction",
        description="Fraction of elements, channels, rows or columns selected",
        default=0.05,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
    )
    selection_seed: IntProperty(name="Selection Seed", description="Seed of the random selection", default=0, min=0)
    # The operator options (channel, plane, normalize_dim, axis, seed ...) come from _BendOptions.
    param: FloatProperty(
        name="Parameter",
        description="The operator's parameter r; keyframe it, or drive it from a baked audio feature",
        default=0.0,
    )
    param_vector: FloatVectorProperty(
        name="Parameters",
        description="A vector operator's parameters (angles, matrix entries), the first ones it takes; keyframe "
        "each, or drive them from the audio embedding",
        size=PARAM_VECTOR_SIZE,
        default=(0.0,) * PARAM_VECTOR_SIZE,
    )

    def operator_options(self) -> dict[str, object]:
        """The engine options this bend's operator takes, from the matching settings."""
        return {key: _option_value(self, OPTIONS[key]) for key in OPERATORS[self.op].options}

    def param_value(self) -> float | list[float]:
        """The parameter at the current frame as the job writes it: a number, or a list for a vector operator."""
        param = OPERATORS[self.op].param
        if param is not None and param.is_vector:
            return list(self.param_vector[: param.length])
        return self.param

    def param_prop(self) -> str:
        """The property that holds this bend's animated parameter."""
        param = OPERATORS[self.op].param
        return "param_vector" if param is not None and param.is_vector else "param"


def _unique_in_list(list_name: str):
    """An update for an item's name that keeps it unique in ``scene.bend.<list_name>`` (``R1``, ``R1.001``), as
    Blender does for its own named lists: the job keys each bend's and LoRA's values by its name."""

    def update(self, context: bpy.types.Context) -> None:
        name = animated_list.unique_name(getattr(self.id_data.bend, list_name), self.name, self)
        if name != self.name:
            self.name = name  # runs this update once more, with a free name

    return update


class BendItem(BendFields, bpy.types.PropertyGroup):
    """One bend of the stack: an operator applied to the latent or inside the U-Net, with its animatable parameter"""

    name: StringProperty(name="Name", default="Bend", update=_unique_in_list("bends"))


class BendLora(bpy.types.PropertyGroup):
    """A LoRA mixed into the model with an animatable weight: keyframe it, or drive it from the audio"""

    name: StringProperty(name="Name", default="LoRA", update=_unique_in_list("loras"))
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


class BendBakeSettings(bpy.types.PropertyGroup):
    source: EnumProperty(
        name="Source",
        items=[
            ("STRIP", "Sound Strip", "One sound strip, with its start, trim and volume"),
            ("MIXDOWN", "Scene Mixdown", "Everything the scene plays, as Blender mixes it"),
        ],
        default="STRIP",
    )
    strip: StringProperty(name="Strip", description="The sound strip to analyse; empty: the first sound strip")
    window_ms: FloatProperty(
        name="Window",
        description="Analysis window in ms; 0: one frame (the paper: 50 ms at 20 fps)",
        default=0.0,
        min=0.0,
        soft_max=200.0,
    )
    centered: BoolProperty(name="Centred", description="Centre windows on the frame instead of starting there")
    spectrum_window: EnumProperty(
        name="Spectrum",
        items=[("hann", "Hann", "Hann window (accurate)"), ("rect", "Rectangular", "The paper authors' choice")],
        default="hann",
    )
    normalization: EnumProperty(
        name="Normalize",
        items=[(n, n.title() if n != "minmax" else "Min-Max", "") for n in NORMALIZATIONS],
        default="minmax",
        description="Map each feature to 0..1 over the song (Min-Max), or between percentiles, or keep raw values",
    )
    attack: FloatProperty(
        name="Attack",
        description="Smoothing of rises, in seconds",
        default=0.0,
        min=0.0,
        soft_max=1.0,
        unit="TIME_ABSOLUTE",
    )
    release: FloatProperty(
        name="Release",
        description="Smoothing of falls, in seconds",
        default=0.0,
        min=0.0,
        soft_max=2.0,
        unit="TIME_ABSOLUTE",
    )
    median: FloatProperty(
        name="Median",
        description="Median filter window in seconds, removing spikes shorter than half of it; 0: off",
        default=0.0,
        min=0.0,
        soft_max=1.0,
        unit="TIME_ABSOLUTE",
    )
    gate: FloatProperty(
        name="Noise Gate",
        description="Values below this fraction of each curve's range become 0; 0: off",
        default=0.0,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
    )
    tempo: FloatProperty(
        name="Tempo",
        description=f"The song's tempo in beats per minute when you know it ({MIN_TEMPO_BPM:g} to "
        f"{MAX_TEMPO_BPM:g}); 0: detect it",
        default=0.0,
        min=0.0,
        max=MAX_TEMPO_BPM,
        soft_max=240.0,
    )
    beats_per_bar: IntProperty(
        name="Beats per Bar",
        description="The meter, for Bar Phase and bar markers: 4 for 4/4, 3 for 3/4",
        default=4,
        min=1,
        max=64,
    )
    beat_decay: FloatProperty(
        name="Beat Decay",
        description="How fast Beat Pulse falls after each beat: its exponential time constant in seconds",
        default=0.1,
        min=0.0,
        soft_max=1.0,
        unit="TIME_ABSOLUTE",
    )
    # Written by the bake, saved with the file: the panel shows the tempo, and Add Music Markers reuses the beats
    # and sections while the sound and the analysis settings are those of the bake.
    baked_tempo: FloatProperty(
        name="Baked Tempo", description="Tempo found by the last bake, in BPM (0: no beat found)", options={"HIDDEN"}
    )
    baked_analysis: StringProperty(options={"HIDDEN"})
    music_markers: StringProperty(options={"HIDDEN"})


class BendPreviewSettings(bpy.types.PropertyGroup):
    steps: IntProperty(
        name="Steps", description="Sampling steps of a preview; 0: the render's", default=20, min=0, max=1000
    )
    scale: IntProperty(
        name="Size",
        description="Preview size, as a percentage of the render size",
        default=50,
        min=5,
        max=100,
        subtype="PERCENTAGE",
    )
    compare: BoolProperty(name="Show Unbent", description="Show the frame without bends beside the bent one")


class BendSweepSettings(bpy.types.PropertyGroup):
    value_start: FloatProperty(name="From", description="The bend parameter in the first column", default=0.0)
    value_end: FloatProperty(
        name="To", description="The bend parameter in the last column (or just past it)", default=6.283185307179586
    )
    columns: IntProperty(name="Columns", description="How many parameter values", default=8, min=1, max=64)
    include_end: BoolProperty(
        name="Include To",
        description="End the columns at To; off: stop one step short (for angles: 0..2π)",
        default=False,
    )
    layers: StringProperty(
        name="Layers",
        description="One row per layer: latent layers (steps) or U-Net targets, comma-separated",
        default="0, 10, 20, 30, 40, 49",
    )


def _is_bend_stack(self, tree: bpy.types.NodeTree) -> bool:
    return tree.bl_idname == STACK_TREE


class BendSettings(bpy.types.PropertyGroup):
    model_source: StringProperty(
        name="Model",
        description="A diffusers folder, a .safetensors file, a Hugging Face repo id, or tiny-random; "
        "empty: the model set in the extension's preferences",
    )
    model_family: EnumProperty(
        name="Family",
        description="The model's family; Automatic reads it from the model's files and name",
        items=[("auto", "Automatic", "Read the family from the model's keys, configs and name")]
        + [(name, family.label, f"Load the model as {family.label}") for name, family in FAMILIES.items()],
        default="auto",
    )
    model_config: StringProperty(
        name="Config Folder",
        description="A diffusers config folder for a single-file checkpoint whose architecture is not its "
        "family's standard one; empty: the config shipped for the family",
        subtype="DIR_PATH",
    )
    mode: EnumProperty(
        name="Mode",
        items=[
            ("txt2img", "Text to Image", "Every frame from noise, with a circular noise walk (paper mode A)"),
            ("img2img", "Image to Image", "Every frame from the previous one (paper mode B)"),
        ],
        default="txt2img",
    )
    steps: IntProperty(name="Steps", default=50, min=1, max=1000)
    guidance: FloatProperty(name="Guidance", default=7.5, min=0.0, soft_max=20.0)
    seed: IntProperty(name="Seed", default=46, min=0)
    batch_size: IntProperty(
        name="Batch Size",
        description="Text-to-image frames per U-Net call; 0: as many as fit in free GPU memory",
        default=0,
        min=0,
        max=256,
    )
    scheduler: EnumProperty(name="Scheduler", items=[(k, k, v) for k, v in SCHEDULER_ALIASES.items()], default="ddim")
    prompts: CollectionProperty(type=BendPrompt)
    prompt_index: IntProperty(name="Active Prompt")
    negative_prompt: StringProperty(name="Negative Prompt")
    noise_seed: IntProperty(name="Noise Seed", description="Seed of the noise walk's two fields", default=46, min=0)
    # Identifiers are the engine's noise.mode values (engine/noise.py NOISE_MODES, which needs torch to import).
    noise_mode: EnumProperty(
        name="Noise Mode",
        items=[
            ("paper", "Paper", "Each frame starts from A·sin φ + B·cos φ: the walk wanders through noise (paper 3.2)"),
            (
                "dafx",
                "Authors' Code",
                "Each frame starts from one fixed noise plus 0.3 × the walk: the image breathes around one picture "
                "(the authors' DAFx code)",
            ),
        ],
        default="paper",
    )
    phase_mode: EnumProperty(
        name="Noise Walk",
        items=[
            ("LOOP", "One Loop", "The paper's phase 2πi/k: one loop through noise over the frame range"),
            ("CUSTOM", "Custom", "Use the animatable Phase"),
        ],
        default="LOOP",
    )
    noise_phase: FloatProperty(name="Phase", description="Noise walk phase; animate it", subtype="ANGLE")
    strength: FloatProperty(
        name="Strength",
        description="Image-to-image strength: how far each frame moves from the previous one",
        default=0.5,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
    )
    img2img_prompt_source: EnumProperty(
        name="Condition",
        items=[
            ("MIX", "Prompt Mix", "Frames after the first use the prompts above (the authors' code)"),
            ("CUSTOM", "Own Prompt", "Frames after the first use their own prompt; empty as in the paper"),
        ],
        default="MIX",
    )
    img2img_prompt: StringProperty(name="Img2Img Prompt")
    init_image: StringProperty(
        name="Init Image",
        description="Optional image the first frame starts from",
        subtype="FILE_PATH",
        options=compat.BLEND_RELATIVE_PATH,
    )
    # The bend stack: bends applied in order to every frame, and the LoRAs mixed into the model.
    bends: CollectionProperty(type=BendItem)
    bend_index: IntProperty(name="Active Bend")
    loras: CollectionProperty(type=BendLora)
    lora_index: IntProperty(name="Active LoRA")
    # The previous version's node-tree stack (legacy_stack.py); migration.py moves it into the lists on load.
    stack: PointerProperty(type=bpy.types.NodeTree, poll=_is_bend_stack, options={"HIDDEN"})
    output_folder: StringProperty(
        name="Output",
        description="Where frames and the job go; empty: //bend/<scene name>/",
        subtype="DIR_PATH",
        options=compat.BLEND_RELATIVE_PATH,
    )
    audio_bake: PointerProperty(type=BendBakeSettings)
    preview: PointerProperty(type=BendPreviewSettings)
    sweep: PointerProperty(type=BendSweepSettings)


CLASSES = (
    BendPrompt,
    BendItem,
    BendLora,
    BendBakeSettings,
    BendPreviewSettings,
    BendSweepSettings,
    BendSettings,
)


_register_classes, _unregister_classes = bpy.utils.register_classes_factory(CLASSES)


def register() -> None:
    _register_classes()
    bpy.types.Scene.bend = PointerProperty(type=BendSettings)


def unregister() -> None:
    del bpy.types.Scene.bend
    _unregister_classes()
