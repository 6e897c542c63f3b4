"""Finding, loading and placing a Stable Diffusion model.

A model source is one of:

* ``tiny-random``: the built-in toy pipeline (see ``tiny_random.py``), for tests and demos;
* a diffusers folder (it holds ``model_index.json``);
* a single-file ``.safetensors`` checkpoint, loaded with the SD 1.x config shipped in ``model_configs/`` so
  no network is needed;
* a Hugging Face repo id, read from the local cache; it is downloaded only when the job allows it.

Pickle-based files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) can run code when loaded, so they load only with
``trust_pickle``; by default only safetensors weights are read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .catalog import SCHEDULER_ALIASES, TINY_RANDOM
from .errors import ModelError
from .tiny_random import build_tiny_components

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
SINGLE_FILE_CONFIG = Path(__file__).resolve().parent / "model_configs" / "sd-v1"

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class Model:
    """The loaded components, on their device, ready for the sampler."""

    source: str
    tokenizer: Any
    text_encoder: torch.nn.Module
    unet: torch.nn.Module
    vae: torch.nn.Module
    scheduler: Any
    device: torch.device
    dtype: torch.dtype

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA, then Apple's MPS, then the CPU; or exactly the device asked for."""
    if preference != "auto":
        try:
            device = torch.device(preference)
        except RuntimeError as exc:
            raise ModelError(f"model.device: unknown device {preference!r}; use auto, cuda, mps or cpu") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ModelError("model.device: CUDA was asked for but is not available; use auto or cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """fp16 on CUDA by default; fp32 elsewhere, where half precision is slow or unsupported."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in DTYPES:
        raise ModelError(f"model.precision: unknown precision {precision!r}; use auto, {', '.join(DTYPES)}")
    return DTYPES[precision]


def make_scheduler(name: str, base_config: Any) -> Any:
    """A diffusers scheduler by alias or class name, configured from the model's own scheduler config."""
    import diffusers

    class_name = SCHEDULER_ALIASES.get(name.lower(), name)
    scheduler_class = getattr(diffusers, class_name, None)
    if scheduler_class is None or not class_name.endswith("Scheduler"):
        aliases = ", ".join(SCHEDULER_ALIASES)
        raise ModelError(f"model.scheduler: unknown scheduler {name!r}; use one of {aliases} or a diffusers class name")
    return scheduler_class.from_config(base_config)


def _pipeline_components(pipe: Any) -> dict[str, Any]:
    return {key: getattr(pipe, key) for key in ("tokenizer", "text_encoder", "unet", "vae", "scheduler")}


def _load_folder(folder: Path, dtype: torch.dtype, trust_pickle: bool) -> dict[str, Any]:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        str(folder),
        dtype=dtype,
        local_files_only=True,
        use_safetensors=None if trust_pickle else True,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return _pipeline_components(pipe)


def _load_single_file(path: Path, dtype: torch.dtype) -> dict[str, Any]:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_single_file(
        str(path),
        config=str(SINGLE_FILE_CONFIG),
        local_files_only=True,
        dtype=dtype,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return _pipeline_components(pipe)


def _load_repo(repo_id: str, dtype: torch.dtype, allow_download: bool, trust_pickle: bool) -> dict[str, Any]:
    from diffusers import StableDiffusionPipeline

    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            repo_id,
            dtype=dtype,
            local_files_only=not allow_download,
            use_safetensors=None if trust_pickle else True,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    except (OSError, ValueError) as exc:
        if allow_download:
            raise ModelError(f"model.source: could not download {repo_id!r}: {exc}") from exc
        raise ModelError(
            f"model.source: {repo_id!r} is not a folder, a file, or a model in the local Hugging Face cache. "
            f"Download it once (huggingface-cli download {repo_id}) or allow downloads (model.allow_download)"
        ) from exc
    return _pipeline_components(pipe)


def is_repo_id(source: str) -> bool:
    """``owner/name``, as on the Hugging Face hub; anything else that does not exist is a missing path."""
    owner, _, name = source.partition("/")
    return bool(owner and name) and "/" not in name and not source.startswith((".", "~")) and "\\" not in source


def load_components(source: str, dtype: torch.dtype, allow_download: bool, trust_pickle: bool) -> dict[str, Any]:
    """Load the five components named by ``source``, in ``dtype``, on the CPU."""
    if source == TINY_RANDOM:
        return build_tiny_components()
    path = Path(os.path.expanduser(source))
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise ModelError(f"model.source: {source!r} is a folder but not a diffusers model (no model_index.json)")
        return _load_folder(path, dtype, trust_pickle)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in PICKLE_SUFFIXES and not trust_pickle:
            raise ModelError(
                f"model.source: {path.name} is a pickle-based checkpoint, which can run code when loaded. "
                "Convert it to .safetensors, or set model.trust_pickle only if you trust where it came from"
            )
        if suffix != ".safetensors" and suffix not in PICKLE_SUFFIXES:
            raise ModelError(f"model.source: {path.name} is not a .safetensors checkpoint or a diffusers folder")
        return _load_single_file(path, dtype)
    if not is_repo_id(source):
        raise ModelError(
            f"model.source: {source!r} does not exist; give a diffusers folder, a .safetensors file, "
            "a Hugging Face repo id (owner/name), or tiny-random"
        )
    return _load_repo(source, dtype, allow_download, trust_pickle)


def load_model(
    source: str,
    *,
    device: str = "auto",
    precision: str = "auto",
    scheduler: str = "ddim",
    allow_download: bool = False,
    trust_pickle: bool = False,
) -> Model:
    """Load a model and move it to its device, in inference mode."""
    target = pick_device(device)
    dtype = pick_dtype(precision, target)
    components = load_components(source, dtype, allow_download, trust_pickle)
    for key in ("text_encoder", "unet", "vae"):
        module = components[key].to(device=target)
        if module.dtype != dtype:  # loaders already honour torch_dtype; only the built-in model needs a cast
            module = module.to(dtype=dtype)
        module.eval().requires_grad_(False)
        components[key] = module
    components["scheduler"] = make_scheduler(scheduler, components["scheduler"].config)
    return Model(source=source, device=target, dtype=dtype, **components)
