"""Scene settings under ``scene.bend``: model, prompts, noise walk, img2img, bends and baked audio features.

Everything an artist animates is an ordinary animatable property: prompt weights, the noise phase, img2img
strength, each bend's parameter and the baked features. Bends are addressed by name in data paths
(``bend.bends["Name"].param``), so reordering them keeps their animation, and renaming one moves its F-curves and
drivers along with it. Enum identifiers are the engine's own names (``engine/catalog.py``), so the job builder
passes them through unchanged.
"""

# No "from __future__ import annotations": Blender reads property annotations as evaluated objects.
import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    IntVectorProperty,
    PointerProperty,
    StringProperty,
)

from . import animation, compat
from .engine.catalog import FEATURE_NAMES, NORMALIZATIONS, OPERATORS, SCHEDULER_ALIASES, SD_UNET_TARGETS, SELECTIONS

FEATURE_LABELS = {
    "rms": ("RMS", "Loudness: root mean square of the frame's samples"),
    "centroid": ("Centroid", "Spectral centroid in Hz: the brightness of the sound"),
    "spread": ("Spread", "Spectral spread in Hz around the centroid"),
    "skewness": ("Skewness", "Spectral skewness: asymmetry of the spectrum"),
    "kurtosis": ("Kurtosis", "Spectral kurtosis: peakiness of the spectrum"),
    "flux": ("Flux", "Spectral flux: how much the spectrum changed since the previous frame"),
    "onset": ("Onset", "Onset strength: high on note attacks and hits"),
    "band_low": ("Low Band", "Energy below the low band edge"),
    "band_mid": ("Mid Band", "Energy between the band edges"),
    "band_high": ("High Band", "Energy above the high band edge"),
}

SELECTION_LABELS = {
    "all": ("All", "Every element"),
    "channel": ("Channel", "One channel"),
    "row": ("Row", "One row"),
    "column": ("Column", "One column"),
    "random": ("Random Elements", "A seeded random fraction of elements, the same on every frame"),
    "random_channels": ("Random Channels", "A seeded random fraction of whole channels, for spatial bends"),
}


def _operator_items() -> list[tuple[str, str, str]]:
    return [(name, name.replace("_", " ").title(), spec.summary) for name, spec in OPERATORS.items()]


def unique_bend_name(bends: bpy.types.bpy_prop_collection, wanted: str, exclude: object = None) -> str:
    """``wanted``, or ``wanted.001``, ``wanted.002``, ... if another bend already has it."""
    taken = {b.name for b in bends if b != exclude}
    base = wanted.strip() or "Bend"
    if base not in taken:
        return base
    stem = base.rsplit(".", 1)[0] if base.rsplit(".", 1)[-1].isdigit() else base
    number = 1
    while f"{stem}.{number:03d}" in taken:
        number += 1
    return f"{stem}.{number:03d}"


def bend_data_path(name: str, prop: str = "param") -> str:
    return f'bend.bends["{bpy.utils.escape_identifier(name)}"].{prop}'


def _on_bend_name(self: "BendItem", context: bpy.types.Context) -> None:
    scene = self.id_data
    bends = scene.bend.bends
    unique = unique_bend_name(bends, self.name, exclude=self)
    if unique != self.name:
        self.name = unique  # re-enters this callback once with a unique name
        return
    if self.previous_name and self.previous_name != self.name:
        animation.key_paths_by_name(scene, "bends")
        animation.move_animation(scene, bend_data_path(self.previous_name, ""), bend_data_path(self.name, ""))
    self.previous_name = self.name


class BendPrompt(bpy.types.PropertyGroup):
    text: StringProperty(name="Prompt", description="What to draw; may be empty")
    weight: FloatProperty(
        name="Weight",
        description="This prompt's share of the text condition; keyframe weights to crossfade between prompts",
        default=1.0,
        min=0.0,
        soft_max=1.0,
    )


class BendItem(bpy.types.PropertyGroup):
    name: StringProperty(name="Name", default="Bend", update=_on_bend_name)
    previous_name: StringProperty(options={"HIDDEN"})
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
        name="Target", items=[(t, t, f"The output of unet.{t}") for t in SD_UNET_TARGETS], default="mid_block"
    )
    step_start: IntProperty(name="From Step", description="First sampling step the hook is active", min=0)
    step_end: IntProperty(
        name="To Step", description="Step the hook stops before; 0 means to the last step", default=0, min=0
    )
    selection: EnumProperty(name="Selection", items=[(k, *SELECTION_LABELS[k]) for k in SELECTIONS], default="all")
    selection_index: IntProperty(name="Index", description="Which channel, row or column", default=0, min=0)
    fraction: FloatProperty(
        name="Fraction",
        description="Fraction of elements or channels selected",
        default=0.05,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
    )
    selection_seed: IntProperty(name="Seed", description="Seed of the random selection", default=0, min=0)
    channel: IntProperty(name="Channel", description="The channel to reflect", default=0, min=0)
    plane: IntVectorProperty(
        name="Plane", description="The channel plane (i, j) to rotate", size=2, default=(1, 2), min=0
    )
    normalize_dim: EnumProperty(
        name="Normalize",
        description="After erosion or dilation, subtract the mean along this dimension (paper 3.1.3)",
        items=[("NONE", "None", ""), ("0", "Channels", "dim 0"), ("1", "Rows", "dim 1"), ("2", "Columns", "dim 2")],
        default="NONE",
    )
    axis: EnumProperty(name="Axis", items=[("x", "X", "Horizontal"), ("y", "Y", "Vertical")], default="x")
    param: FloatProperty(
        name="Parameter",
        description="The operator's parameter r; keyframe it, or drive it from a baked audio feature",
        default=0.0,
    )

    def operator_options(self) -> dict[str, object]:
        """The engine options this bend's operator takes, from the matching settings."""
        values = {
            "plane": [self.plane[0], self.plane[1]],
            "channel": self.channel,
            "normalize_dim": None if self.normalize_dim == "NONE" else int(self.normalize_dim),
            "axis": self.axis,
        }
        return {key: values[key] for key in OPERATORS[self.op].options}


def _feature_annotations() -> dict[str, object]:
    return {
        name: FloatProperty(name=FEATURE_LABELS[name][0], description=FEATURE_LABELS[name][1], default=0.0)
        for name in FEATURE_NAMES
    }


BendAudioFeatures = type(
    "BendAudioFeatures",
    (bpy.types.PropertyGroup,),
    {"__annotations__": _feature_annotations(), "__doc__": "Baked audio features, one F-curve each"},
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


class BendSettings(bpy.types.PropertyGroup):
    model_source: StringProperty(
        name="Model",
        description="A diffusers folder, a .safetensors file, a Hugging Face repo id, or tiny-random; "
        "empty: the model set in the extension's preferences",
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
    bends: CollectionProperty(type=BendItem)
    bend_index: IntProperty(name="Active Bend")
    output_folder: StringProperty(
        name="Output",
        description="Where frames and the job go; empty: //bend/<scene name>/",
        subtype="DIR_PATH",
        options=compat.BLEND_RELATIVE_PATH,
    )
    audio: PointerProperty(type=BendAudioFeatures)
    audio_bake: PointerProperty(type=BendBakeSettings)
    preview: PointerProperty(type=BendPreviewSettings)
    sweep: PointerProperty(type=BendSweepSettings)


CLASSES = (
    BendPrompt,
    BendItem,
    BendAudioFeatures,
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
