"""Model families: one module per Stable Diffusion family, and detection of which family a model is.

``FAMILIES`` maps each family's name to its ``Family`` (see ``base.py``). Adding a family is one module here (a
``Family`` or a subclass that overrides what differs) plus its config folder in ``model_configs/``, and one line in
``FAMILIES``; detection tries the families in this order, so the more specific variants of a layout come first.

Everything here is standard library only: ``detect_family(source)`` reads a safetensors header (8 bytes of length
then JSON) or a diffusers folder's ``model_index.json`` and configs, so the Blender side can show a model's family
and native size without importing torch.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from ..catalog import TINY_RANDOM, TOY_SHAPES
from ..errors import ModelError
from .base import CheckpointInfo, Family, FolderInfo
from .sd1 import SD1
from .sd2 import SD2_BASE, SD2_V
from .sdxl import SDXL_BASE, SDXL_LIGHTNING, SDXL_TURBO

FAMILIES: dict[str, Family] = {
    family.name: family for family in (SD1, SD2_BASE, SD2_V, SDXL_TURBO, SDXL_LIGHTNING, SDXL_BASE)
}
DEFAULT_FAMILY = "sd1"
AUTO = "auto"
# A safetensors header is JSON; a real one is a few MB at most. More than this is a damaged or hostile file.
MAX_HEADER_BYTES = 100 * 1024 * 1024

__all__ = [
    "AUTO",
    "FAMILIES",
    "CheckpointInfo",
    "Family",
    "FolderInfo",
    "detect_family",
    "family_named",
    "family_of_checkpoint",
    "family_of_folder",
    "native_size",
    "read_checkpoint_info",
    "read_folder_info",
]


def family_named(name: str) -> Family:
    """The family called ``name``; a one-line error naming the choices otherwise."""
    if name not in FAMILIES:
        raise ModelError(f"model.family: unknown family {name!r}; use auto or one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def native_size(name: str) -> int:
    """The square side, in pixels, that family ``name`` was trained at (SDXL: 1024, SD 2.x v: 768, ...)."""
    return family_named(name).native_size


def read_checkpoint_info(path: Path) -> CheckpointInfo:
    """A ``.safetensors`` file's key shapes and metadata from its header, without reading any weight."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(8)
            if len(raw) < 8:
                raise ValueError("the file is shorter than a safetensors header")
            (size,) = struct.unpack("<Q", raw)
            if size > MAX_HEADER_BYTES:
                raise ValueError(f"its header claims {size} bytes")
            header = json.loads(handle.read(size))
        if not isinstance(header, dict):
            raise ValueError("its header is not a JSON object")
    except (OSError, ValueError) as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ModelError(f"model.source: {path.name} is not a readable .safetensors file: {exc}") from exc
    metadata = header.pop("__metadata__", None) or {}
    shapes = {key: tuple(value.get("shape", ())) for key, value in header.items() if isinstance(value, dict)}
    return CheckpointInfo(shapes=shapes, metadata=metadata if isinstance(metadata, dict) else {}, name=path.name)


def _describe(info: CheckpointInfo) -> str:
    """The top-level key groups a file holds, for an error about a layout no family knows."""
    groups: dict[str, int] = {}
    for key in info.shapes:
        parts = key.split(".")
        group = ".".join(parts[:3] if parts[0] in ("conditioner", "cond_stage_model") else parts[:2])
        groups[group] = groups.get(group, 0) + 1
    top = sorted(groups.items(), key=lambda item: -item[1])[:4]
    return ", ".join(f"{name}.* ({count})" for name, count in top) or "no tensors"


TEXT_LAYOUTS = {
    "cond_stage_model.transformer.": "Stable Diffusion 1.x's CLIP text encoder (cond_stage_model.transformer.*)",
    "cond_stage_model.model.": "Stable Diffusion 2.x's OpenCLIP text encoder (cond_stage_model.model.*)",
    "conditioner.embedders.": "Stable Diffusion XL's text encoders (conditioner.embedders.*)",
}


def family_of_checkpoint(info: CheckpointInfo) -> Family:
    """The family whose layout ``info`` has; a one-line error naming what was found otherwise."""
    if not info.has_prefix("model.diffusion_model."):
        raise ModelError(
            f"model.source: {info.name} is not a Stable Diffusion checkpoint (no model.diffusion_model.* weights; "
            f"found {_describe(info)})"
        )
    found = [text for prefix, text in TEXT_LAYOUTS.items() if info.has_prefix(prefix)]
    if len(found) > 1:
        raise ModelError(
            f"model.source: {info.name} has an unknown layout: it mixes {' and '.join(found)}; "
            "use a checkpoint of one family"
        )
    conv_in = info.shapes.get("model.diffusion_model.input_blocks.0.0.weight", ())
    if len(conv_in) == 4 and conv_in[1] != 4:
        raise ModelError(
            f"model.source: {info.name} is an inpainting or other {conv_in[1]}-channel U-Net; only text-to-image "
            "checkpoints with 4 latent channels render here"
        )
    for family in FAMILIES.values():
        if family.matches_checkpoint(info):
            return family
    if info.has_prefix("conditioner.embedders.0.model."):
        raise ModelError(
            f"model.source: {info.name} is a Stable Diffusion XL refiner, which renders only from another model's "
            "latents; use an SDXL base checkpoint"
        )
    raise ModelError(
        f"model.source: {info.name} has an unknown layout (found {_describe(info)}); families are {', '.join(FAMILIES)}"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_folder_info(folder: Path, name: str | None = None) -> FolderInfo:
    """A diffusers folder's ``model_index.json`` and the configs that tell families apart."""
    return FolderInfo(
        index=_read_json(folder / "model_index.json"),
        unet=_read_json(folder / "unet" / "config.json"),
        text_encoder=_read_json(folder / "text_encoder" / "config.json"),
        scheduler=_read_json(folder / "scheduler" / "scheduler_config.json"),
        name=name or folder.name,
    )


def family_of_folder(info: FolderInfo, label: str) -> Family:
    """The family of a diffusers folder; a one-line error naming its pipeline class otherwise."""
    for family in FAMILIES.values():
        if family.matches_folder(info):
            return family
    pipelines = sorted({f.pipeline_class for f in FAMILIES.values()})
    raise ModelError(
        f"model.source: {label} is a {info.pipeline or 'model with no _class_name in model_index.json'}, "
        f"which no family renders; use a {' or '.join(pipelines)} folder"
    )


def _cached_snapshot(repo_id: str) -> Path | None:
    """A repo's snapshot in the local Hugging Face cache, found the way huggingface_hub lays it out."""
    cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub"
    )
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    try:
        revision = (repo / "refs" / "main").read_text().strip()
    except OSError:
        return None
    snapshot = repo / "snapshots" / revision
    return snapshot if (snapshot / "model_index.json").is_file() else None


def detect_family(source: str, family: str = AUTO) -> str:
    """The family name of a model source (built-in name, folder, ``.safetensors`` file or cached repo id).

    Standard library only. ``family`` other than ``auto`` is checked and returned as it is (a job that names its
    family). Raises a one-line ``ModelError`` for a layout no family knows, or a source that cannot be read.
    """
    if family != AUTO:
        return family_named(family).name
    if source in (TINY_RANDOM, TOY_SHAPES):
        return DEFAULT_FAMILY
    path = Path(os.path.expanduser(source))
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelError(f"model.source: {source!r} is a folder but not a diffusers model (no model_index.json)")
        return family_of_folder(read_folder_info(path), repr(source)).name
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            return DEFAULT_FAMILY  # a pickle's keys cannot be read without unpickling it: SD 1.x unless named
        return family_of_checkpoint(read_checkpoint_info(path)).name
    snapshot = _cached_snapshot(source)
    if snapshot is None:
        raise ModelError(
            f"model.source: {source!r} is not a folder, a file, or a model in the local Hugging Face cache; "
            f"download it once with: hf download {source}"
        )
    return family_of_folder(read_folder_info(snapshot, source), repr(source)).name
