"""Which Stable Diffusion family the scene's model is, for the Model panel and the U-Net target menu.

The engine's ``detect_family`` reads a safetensors header or a diffusers folder's JSON with the standard library
only, so this runs in Blender's own Python without torch. Panels redraw often and a checkpoint's header is up to a
few MB of JSON, so each answer is kept until the file changes (its size and modification time).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from ..engine.errors import ModelError
from ..engine.families import AUTO, FAMILIES, detect_family

# Every U-Net target any family offers, each with a number that never changes: the target menu lists only the
# model's family's targets, and Blender stores an enum by number, so a bend keeps its target across families.
ALL_UNET_TARGETS = (
    "conv_in",
    "down_blocks.0",
    "down_blocks.1",
    "down_blocks.2",
    "down_blocks.3",
    "mid_block",
    "up_blocks.0",
    "up_blocks.1",
    "up_blocks.2",
    "up_blocks.3",
    "conv_out",
)


@dataclass(frozen=True)
class ModelFamily:
    name: str
    label: str
    native_size: int
    unet_targets: tuple[str, ...]
    recommended_guidance: float

    def advice(self, width: int, height: int, guidance: float) -> list[str]:
        """The engine's warnings for these settings, naming the settings as Blender shows them."""
        notes = FAMILIES[self.name].advice(width, height, guidance)
        return [
            note.replace("set the output size (width, height)", "set Output Properties > Format > Resolution").replace(
                "set guidance", "set the Render panel's Guidance"
            )
            for note in notes
        ]


def _stamp(source: str) -> tuple[int, int]:
    """What changes when the model's files do: a file's size and time, a folder's model_index.json's."""
    path = os.path.expanduser(source)
    if os.path.isdir(path):
        path = os.path.join(path, "model_index.json")
    try:
        info = os.stat(path)
    except OSError:
        return (0, 0)
    return (info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _detect(source: str, family: str, stamp: tuple[int, int]) -> ModelFamily | str:
    try:
        name = detect_family(source, family)
    except ModelError as exc:
        return str(exc)
    found = FAMILIES[name]
    return ModelFamily(
        name=name,
        label=found.label,
        native_size=found.native_size,
        unet_targets=found.unet_targets,
        recommended_guidance=float(found.recommended.get("guidance", 7.5)),
    )


def model_family(source: str, family: str = AUTO) -> ModelFamily | str:
    """The family of ``source`` (a model name, folder, file or cached repo id), or a one-line reason it is unknown."""
    source = source.strip()
    if not source:
        return "No model set"
    return _detect(source, family, _stamp(source))


def unet_target_items(family: ModelFamily | str | None) -> list[tuple[str, str, str, str, int]]:
    """The U-Net target menu for a family (every target when the family is unknown), numbered stably."""
    offered = family.unet_targets if isinstance(family, ModelFamily) else ALL_UNET_TARGETS
    return [
        (target, target, f"The output of unet.{target}", "", number)
        for number, target in enumerate(ALL_UNET_TARGETS)
        if target in offered
    ]
