"""Finding, loading and placing a Stable Diffusion model.

A model source is one of:

* ``tiny-random``: the built-in toy pipeline (see ``tiny_random.py``), for tests and demos;
* a diffusers folder (it holds ``model_index.json``);
* a single-file checkpoint in the original Stable Diffusion (LDM) layout, its family detected from its keys and
  loaded with that family's config shipped in ``model_configs/`` and CLIP's tokenizer built from the BPE merges
  shipped there, so no network is needed;
* a Hugging Face repo id (``owner/name``), read from the local cache (``HF_HUB_CACHE`` / ``HF_HOME``); it is
  downloaded only when it is not cached and the job allows downloads.

Which family a model is (SD 1.x, SD 2.x, SDXL and its variants) and how each loads is in ``families/``; this
module finds the model, checks its files and places the loaded components.

Pickle-based files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) can run code when loaded, so they load only with
``trust_pickle``; by default only safetensors weights are read, and a folder whose weights are pickles is refused
before any file in it is opened. Whatever goes wrong while loading is raised as a one-line ``ModelError``.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .catalog import SCHEDULER_ALIASES, TINY_RANDOM, TOY_SHAPES
from .errors import ModelError
from .families import (
    AUTO,
    FAMILIES,
    Family,
    family_named,
    family_of_checkpoint,
    family_of_folder,
    read_checkpoint_info,
    read_folder_info,
)
from .families.base import CLIP_BPE_FILE, clip_tokenizer
from .files import kind_of
from .tiny_random import build_tiny_components

__all__ = ["CLIP_BPE_FILE", "Model", "clip_tokenizer", "load_components", "load_model"]

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
SINGLE_FILE_CONFIG = Path(__file__).resolve().parent / "model_configs" / "sd-v1"
# ``toy-shapes``: the project's own small trained model, a diffusers folder shipped beside the engine.
TOY_SHAPES_FOLDER = Path(__file__).resolve().parent.parent / "models" / "toy-shapes"
# The weighted components every family has (SDXL adds text_encoder_2): checked before the family is known
WEIGHTED_COMPONENTS = ("text_encoder", "unet", "vae")

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
    family: Family = FAMILIES["sd1"]
    tokenizer_2: Any = None  # SDXL's second (OpenCLIP) tokenizer and text encoder
    text_encoder_2: torch.nn.Module | None = None

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
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise ModelError(
                f"model.device: {preference} was asked for but this machine has {torch.cuda.device_count()} CUDA "
                "device(s), numbered from 0; use cuda or auto"
            )
        mps = getattr(torch.backends, "mps", None)
        if device.type == "mps" and (mps is None or not mps.is_available()):
            raise ModelError("model.device: MPS (Apple silicon) was asked for but is not available; use auto or cpu")
        if device.type not in ("cpu", "cuda", "mps"):
            raise ModelError(f"model.device: unknown device {preference!r}; use auto, cuda, mps or cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_threads(requested: int = 0) -> int:
    """The CPU threads torch computes with: ``requested``, or for 0 every core this process may run on but one.

    The core left over keeps Blender's UI (and anything else on the machine) responsive: with every core busy,
    torch's threads wait on each other whenever another process runs, and a frame takes many times longer.
    OMP_NUM_THREADS is deliberately not consulted: a frame's pixels depend on the thread count (reductions split
    differently), so the count must follow the job alone, for a render and a preview of it to agree.
    """
    if requested > 0:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (a container or taskset limits them)
    except AttributeError:  # macOS and Windows have no affinity call
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def use_threads(requested: int = 0) -> int:
    """Set torch's CPU threads (see ``pick_threads``) before any work; return the count. (The engine starts no
    child processes, so OMP_NUM_THREADS and MKL_NUM_THREADS are left as they are.)"""
    threads = pick_threads(requested)
    torch.set_num_threads(threads)
    # Allowed once per process, before any inter-op work: a warm engine keeps its first inter-op pool
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(threads)
    return threads


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """fp16 on CUDA by default; fp32 elsewhere, where half precision is slow or unsupported."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in DTYPES:
        raise ModelError(f"model.precision: unknown precision {precision!r}; use auto, {', '.join(DTYPES)}")
    return DTYPES[precision]


def make_scheduler(name: str, base_config: Any) -> Any:
    """A diffusers scheduler by alias or class name, configured from the model's own scheduler config."""
    from diffusers import schedulers  # a lazy package: only the named scheduler's module is imported

    class_name = SCHEDULER_ALIASES.get(name.lower(), name)
    scheduler_class = getattr(schedulers, class_name, None)
    if scheduler_class is None or not class_name.endswith("Scheduler"):
        aliases = ", ".join(SCHEDULER_ALIASES)
        raise ModelError(f"model.scheduler: unknown scheduler {name!r}; use one of {aliases} or a diffusers class name")
    return scheduler_class.from_config(base_config)


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message, short enough for a one-line error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _weight_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """The safetensors and the pickle-based weight files directly in ``folder``."""
    files = sorted(folder.iterdir()) if folder.is_dir() else []
    safe = [f for f in files if f.suffix.lower() == ".safetensors"]
    pickled = [f for f in files if f.suffix.lower() in PICKLE_SUFFIXES]
    return safe, pickled


def _check_folder_weights(
    folder: Path, label: str, trust_pickle: bool, keys: tuple[str, ...] = WEIGHTED_COMPONENTS
) -> None:
    """Refuse a folder whose weights are missing or, without ``trust_pickle``, only pickles: before opening any."""
    for key in keys:
        safe, pickled = _weight_files(folder / key)
        for weights in (*safe, *pickled):  # a FIFO or device would block or never end when the loader reads it
            _check_regular(weights, f"{label} {key}/{weights.name}")
        if not safe and not pickled:
            raise ModelError(f"model.source: {label} has no {key} weights ({key}/*.safetensors); it is incomplete")
        if not safe and not trust_pickle:
            raise ModelError(
                f"model.source: {label} has only pickle-based {key} weights ({key}/{pickled[0].name}), which can "
                "run code when loaded. Convert them to .safetensors, or set model.trust_pickle only if you trust "
                "where they came from"
            )


def _check_complete(components: dict[str, Any], label: str, family: Family) -> None:
    """Every weight must have been loaded: loaders leave the ones a checkpoint lacks on the meta device."""
    for key in family.weighted:
        module = components[key]
        tensors = [*module.named_parameters(), *module.named_buffers()]
        missing = [name for name, tensor in tensors if tensor.is_meta]
        if missing:
            raise ModelError(
                f"model.source: {label} lacks {len(missing)} {key} weights (such as {missing[0]}); "
                f"it is not a complete {family.label} model"
            )


def _load_folder(
    folder: Path,
    dtype: torch.dtype,
    trust_pickle: bool,
    label: str | None = None,
    family: str = AUTO,
    name: str | None = None,
) -> dict[str, Any]:
    """A diffusers folder of any family; ``name`` (a repo id) helps tell a family's variants apart."""
    label = label or repr(str(folder))
    _check_folder_weights(folder, label, trust_pickle)
    chosen = family_of_folder(read_folder_info(folder, name), label) if family == AUTO else family_named(family)
    _check_folder_weights(
        folder, label, trust_pickle, tuple(k for k in chosen.weighted if k not in WEIGHTED_COMPONENTS)
    )
    try:
        components = chosen.load_folder(folder, dtype, use_safetensors=None if trust_pickle else True)
    except Exception as exc:  # diffusers and transformers raise many types; the user needs one line
        raise ModelError(f"model.source: could not load {label} as a {chosen.label} model: {_one_line(exc)}") from exc
    _check_complete(components, label, chosen)
    return {**components, "family": chosen}


def _check_regular(path: Path, label: str) -> None:
    """A weight file must be a regular file (links to one are fine: the Hugging Face cache is made of them)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ModelError(f"model.source: {label} cannot be read ({exc.strerror})") from exc
    if not stat.S_ISREG(mode):
        raise ModelError(f"model.source: {label} is {kind_of(mode)}, not a weight file; replace it with the file")


def _load_single_file(path: Path, dtype: torch.dtype, config: Path | None = None, family: str = AUTO) -> dict[str, Any]:
    """Load an original-layout checkpoint: its family from its keys (or ``family``), its config from ``config`` or
    the family's shipped folder, all offline."""
    if family != AUTO:
        chosen = family_named(family)
    elif path.suffix.lower() == ".safetensors":
        chosen = family_of_checkpoint(read_checkpoint_info(path))
    else:  # a trusted pickle: its keys are only known once unpickled, so it is SD 1.x unless the job names it
        chosen = FAMILIES["sd1"]
    try:
        components = chosen.load_single_file(path, dtype, config or chosen.config_path)
    except Exception as exc:  # diffusers and transformers raise many types; the user needs one line
        reason = _one_line(exc)
        if "meta tensor" in reason:  # weights the file lacks stay on the meta device, and moving them fails
            reason = "some of its weights are missing"
        raise ModelError(f"model.source: could not load {path.name} as a {chosen.label} checkpoint: {reason}") from exc
    _check_complete(components, path.name, chosen)
    return {**components, "family": chosen}


def _cached_repo_folder(repo_id: str) -> Path | None:
    """The snapshot of ``repo_id`` in the local Hugging Face cache, if a whole pipeline is there; no network."""
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError), or not a valid repo id (HFValidationError)
        return None
    if not (folder / "model_index.json").is_file():
        return None
    if not all(any(_weight_files(folder / key)) for key in WEIGHTED_COMPONENTS):
        return None  # a partial snapshot, such as the config files alone
    return folder


def _load_repo(
    repo_id: str, dtype: torch.dtype, allow_download: bool, trust_pickle: bool, family: str = AUTO
) -> dict[str, Any]:
    from diffusers.pipelines.pipeline_utils import DiffusionPipeline

    folder = _cached_repo_folder(repo_id)
    if folder is None and not allow_download:
        raise ModelError(
            f"model.source: {repo_id!r} is not a folder, a file, or a model in the local Hugging Face cache. "
            f"Download it once (hf download {repo_id}) or allow downloads (model.allow_download)"
        )
    if folder is None:
        try:
            folder = Path(
                DiffusionPipeline.download(
                    repo_id, use_safetensors=None if trust_pickle else True, safety_checker=None, feature_extractor=None
                )
            )
        except Exception as exc:
            raise ModelError(f"model.source: could not download {repo_id!r}: {_one_line(exc)}") from exc
    return _load_folder(folder, dtype, trust_pickle, label=repr(repo_id), family=family, name=repo_id)


def is_repo_id(source: str) -> bool:
    """``owner/name``, as on the Hugging Face hub; anything else that does not exist is a missing path."""
    owner, _, name = source.partition("/")
    return bool(owner and name) and "/" not in name and not source.startswith((".", "~")) and "\\" not in source


def load_components(
    source: str,
    dtype: torch.dtype,
    allow_download: bool,
    trust_pickle: bool,
    single_file_config: Path | None = None,
    family: str = AUTO,
) -> dict[str, Any]:
    """Load the components named by ``source``, in ``dtype``, on the CPU, with their ``family``.

    ``family`` names the family instead of detecting it (``model.family``). ``single_file_config`` replaces the
    family's shipped config folder for single-file checkpoints (tests use it to load small models).
    """
    if family != AUTO:
        family_named(family)  # an unknown name is refused before anything loads
    if source == TINY_RANDOM:
        return {**build_tiny_components(), "family": FAMILIES["sd1"]}
    if source == TOY_SHAPES:
        if not (TOY_SHAPES_FOLDER / "model_index.json").is_file():
            raise ModelError(
                f"model.source: toy-shapes is missing from {TOY_SHAPES_FOLDER}; retrain it with "
                "scripts/toy_model/train.py or use tiny-random"
            )
        toy_family = "sd1" if family == AUTO else family  # the project's own SD 1.x-architecture model
        return _load_folder(TOY_SHAPES_FOLDER, dtype, trust_pickle=False, label="toy-shapes", family=toy_family)
    if not source.strip():
        raise ModelError(
            "model.source: no model given; give a diffusers folder, a .safetensors file, a Hugging Face repo id "
            "(owner/name), or tiny-random"
        )
    try:
        path = Path(os.path.expanduser(source))
        path.exists()
    except ValueError:  # a NUL in the name
        raise ModelError(f"model.source: {source!r} is not a valid path or repo id") from None
    if path.exists() and not path.is_dir():
        _check_regular(path, path.name)
    if path.is_dir():
        if not (path / "model_index.json").exists():
            raise ModelError(f"model.source: {source!r} is a folder but not a diffusers model (no model_index.json)")
        return _load_folder(path, dtype, trust_pickle, family=family)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in PICKLE_SUFFIXES and not trust_pickle:
            raise ModelError(
                f"model.source: {path.name} is a pickle-based checkpoint, which can run code when loaded. "
                "Convert it to .safetensors, or set model.trust_pickle only if you trust where it came from"
            )
        if suffix != ".safetensors" and suffix not in PICKLE_SUFFIXES:
            raise ModelError(f"model.source: {path.name} is not a .safetensors checkpoint or a diffusers folder")
        return _load_single_file(path, dtype, single_file_config, family)
    if not is_repo_id(source) or path.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES):
        raise ModelError(
            f"model.source: {source!r} does not exist; give a diffusers folder, a .safetensors file, "
            "a Hugging Face repo id (owner/name), or tiny-random"
        )
    return _load_repo(source, dtype, allow_download, trust_pickle, family)


MEMORY_MODES = ("normal", "low")
# Frames larger than this decode through the VAE in tiles, so a 2K or 4K frame fits where a whole one would not.
VAE_TILING_PIXELS = 1024 * 1024


def load_model(
    source: str,
    *,
    device: str = "auto",
    precision: str = "auto",
    scheduler: str = "ddim",
    allow_download: bool = False,
    trust_pickle: bool = False,
    memory: str = "normal",
    compile_unet: bool = False,
    family: str = AUTO,
    config: str = "",
) -> Model:
    """Load a model and place it for fast inference.

    * On CUDA: channels-last U-Net and VAE (faster convolutions on tensor cores); attention runs through
      PyTorch's scaled-dot-product attention, diffusers' default processor.
    * ``memory="low"``, for small GPUs: sliced attention, tiled VAE, and model CPU offload (each component moves
      to the GPU only while it runs).
    * ``compile_unet``: ``torch.compile`` the U-Net in place (opt-in: the first frames pay the compile time).
    * A VAE whose config asks for it (``force_upcast``: SDXL's overflows in half precision) stays in fp32.
    * ``family`` names the model's family instead of detecting it; ``config`` is a diffusers config folder for a
      single-file checkpoint whose architecture differs from its family's shipped config.
    """
    if memory not in MEMORY_MODES:
        raise ModelError(f"model.memory: unknown memory mode {memory!r}; use {' or '.join(MEMORY_MODES)}")
    target = pick_device(device)
    dtype = pick_dtype(precision, target)
    config_folder = None
    if config:
        config_folder = Path(os.path.expanduser(config))
        if not (config_folder / "model_index.json").is_file():
            raise ModelError(f"model.config: {config!r} is not a diffusers config folder (no model_index.json)")
    components = load_components(
        source, dtype, allow_download, trust_pickle, single_file_config=config_folder, family=family
    )
    chosen: Family = components["family"]
    offload = memory == "low" and target.type == "cuda"
    for key in chosen.weighted:
        module = components[key] if offload else components[key].to(device=target)
        wanted = dtype
        if key == "vae" and dtype == torch.float16 and module.config.get("force_upcast", False):
            wanted = torch.float32
        if module.dtype != wanted:  # loaders already honour torch_dtype; only the built-in model needs a cast
            module = module.to(dtype=wanted)
        if target.type == "cuda" and key != "text_encoder":
            module = module.to(memory_format=torch.channels_last)
        module.eval().requires_grad_(False)
        components[key] = module
    if memory == "low":
        components["unet"].set_attention_slice("auto")
        components["vae"].enable_tiling()
    if offload:
        _offload_to_cpu(components, target, chosen.weighted)
    if compile_unet:
        components["unet"].compile()
    components["scheduler"] = make_scheduler(scheduler, components["scheduler"].config)
    return Model(source=source, device=target, dtype=dtype, **components)


def _offload_to_cpu(components: dict[str, Any], device: torch.device, keys: tuple[str, ...]) -> None:
    """Keep weights on the CPU and move each component to ``device`` while it runs (accelerate's hooks)."""
    from accelerate import cpu_offload_with_hook

    hook = None
    for key in keys:
        _, hook = cpu_offload_with_hook(components[key], device, prev_module_hook=hook)


def auto_batch_size(model: Model, width: int, height: int) -> int:
    """Frames per U-Net call that fit in free GPU memory; 1 off the GPU, where batching gains little.

    A heuristic: about 1 GB per sample (both guidance branches) at 512×512 in half precision, scaling with the
    pixel count and the element size. ``bench/bench_gpu_memory.py`` measures the real curve on a given GPU.
    """
    if model.device.type != "cuda":
        return 1
    free, _ = torch.cuda.mem_get_info(model.device)
    per_sample = 1.0e9 * (width * height) / (512 * 512) * torch.finfo(model.dtype).bits / 16
    return max(1, min(16, int(0.8 * free // per_sample)))
