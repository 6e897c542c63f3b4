"""The extension's preferences: the default model, the device, network and trust settings, dependencies."""

# No "from __future__ import annotations": Blender reads property annotations as evaluated objects.
import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from .. import vendor_setup
from ..engine.catalog import PRECISIONS
from . import EXTENSION_PACKAGE


def _compute_items() -> list[tuple[str, str, str]]:
    choices = vendor_setup.read_compute()
    automatic = choices[vendor_setup.default_compute()]["label"]
    auto = ("auto", f"Automatic ({automatic})", "NVIDIA CUDA when nvidia-smi is found, Apple on a Mac, else CPU only")
    return [auto, *((name, c["label"], c["description"]) for name, c in choices.items())]


class BendPreferences(bpy.types.AddonPreferences):
    bl_idname = EXTENSION_PACKAGE

    model_source: StringProperty(
        name="Model",
        description="A diffusers folder, a single-file .safetensors checkpoint, a Hugging Face repo id "
        "(from the local cache unless downloads are allowed), or tiny-random for a quick test",
    )
    device: EnumProperty(
        name="Device",
        items=[
            ("auto", "Auto", "CUDA, then Apple MPS, then CPU"),
            ("cuda", "CUDA", ""),
            ("mps", "MPS", ""),
            ("cpu", "CPU", ""),
        ],
        default="auto",
    )
    precision: EnumProperty(name="Precision", items=[(p, p, "") for p in PRECISIONS], default="auto")
    allow_download: BoolProperty(
        name="Allow Model Downloads",
        description="Let a Hugging Face repo id download when it is not cached (also needs Blender's "
        "Allow Online Access)",
    )
    trust_pickle: BoolProperty(
        name="Trust Pickle Checkpoints",
        description="Load .ckpt/.pt/.bin files, which can run code when loaded. Only for files you trust",
    )
    memory: EnumProperty(
        name="Memory",
        items=[
            ("normal", "Normal", "Everything on the GPU"),
            ("low", "Low", "For small GPUs: sliced attention, tiled VAE, components offloaded to the CPU"),
        ],
        default="normal",
    )
    compile_unet: BoolProperty(
        name="Compile U-Net",
        description="torch.compile the U-Net: faster frames after a slow first one; worth it for long renders",
    )
    cpu_threads: IntProperty(
        name="CPU Threads",
        description="Threads the engine computes with on the CPU; 0: automatic, every core but one, which keeps "
        "Blender responsive while it renders",
        default=0,
        min=0,
        soft_max=64,
    )
    preview_idle_minutes: FloatProperty(
        name="Release Engine After",
        description="Minutes without a render, sweep or preview before the warm engine exits and frees the GPU",
        default=5.0,
        min=0.0,
        soft_max=60.0,
    )
    engine_python: StringProperty(
        name="Engine Python",
        description="A Python that has the engine's packages (a venv or conda env) to run renders, previews "
        "and sweeps; empty: Blender's own, with the installed dependencies",
        subtype="FILE_PATH",
    )
    compute: EnumProperty(
        name="Compute",
        description="Which torch build Install Dependencies fetches",
        items=_compute_items(),
        default="auto",
    )

    def draw(self, context: bpy.types.Context) -> None:
        from ..panels.dependencies import draw_dependencies

        layout = self.layout
        layout.prop(self, "model_source")
        row = layout.row()
        row.prop(self, "device")
        row.prop(self, "precision")
        row = layout.row()
        row.prop(self, "memory")
        row.prop(self, "compile_unet")
        layout.prop(self, "cpu_threads")
        layout.prop(self, "allow_download")
        layout.prop(self, "trust_pickle")
        layout.prop(self, "preview_idle_minutes")
        draw_dependencies(layout, context)


def get(context: bpy.types.Context | None = None) -> BendPreferences:
    context = context or bpy.context
    return context.preferences.addons[EXTENSION_PACKAGE].preferences


def register() -> None:
    bpy.utils.register_class(BendPreferences)


def unregister() -> None:
    bpy.utils.unregister_class(BendPreferences)
