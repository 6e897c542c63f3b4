"""The model-family interface: what the engine asks of a Stable Diffusion family, in one place per family.

A family knows how to recognise its checkpoints (a single file's keys, a diffusers folder's ``model_index.json``
and configs), how to load its components, how to turn prompts into a conditioning that the prompt bank can mix,
which extra arguments its U-Net takes at each step, and which U-Net blocks a bend may target. The sampler, the
runner and the Blender side ask the family instead of assuming SD 1.x.

Importing this module is cheap (the standard library only): torch, diffusers and transformers are imported inside
the methods that use them, so the Blender side can read a family's name and native size before they are installed.
"""

from __future__ import annotations

import gzip
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ..conditioning import Conditioning

MODEL_CONFIGS = Path(__file__).resolve().parent.parent / "model_configs"
# CLIP's BPE merges (MIT, see model_configs/README.md). OpenAI CLIP, OpenCLIP ViT-H (SD 2.x) and OpenCLIP ViT-bigG
# (SDXL's second encoder) all tokenize with this one vocabulary, so it is shipped once.
CLIP_BPE_FILE = Path("tokenizer") / "bpe_simple_vocab_16e6.txt.gz"
SHARED_BPE = MODEL_CONFIGS / "sd-v1" / CLIP_BPE_FILE
MAX_TOKENS = 77


@dataclass(frozen=True)
class CheckpointInfo:
    """What a single-file checkpoint shows without reading its weights: key shapes, metadata, its file name."""

    shapes: Mapping[str, Sequence[int]]
    metadata: Mapping[str, str]
    name: str

    def has_prefix(self, prefix: str) -> bool:
        return any(key.startswith(prefix) for key in self.shapes)

    @property
    def hint(self) -> str:
        """Lower-case text that names a variant: the file name and the ModelSpec metadata, where there is any."""
        spec = " ".join(str(v) for k, v in self.metadata.items() if k.startswith("modelspec."))
        return f"{self.name} {spec}".lower()


@dataclass(frozen=True)
class FolderInfo:
    """A diffusers folder's ``model_index.json`` and the component configs that tell families apart."""

    index: Mapping[str, Any]
    unet: Mapping[str, Any]
    text_encoder: Mapping[str, Any]
    scheduler: Mapping[str, Any]
    name: str

    @property
    def pipeline(self) -> str:
        return str(self.index.get("_class_name", ""))


def clip_tokenizer(bpe_file: Path = SHARED_BPE, pad_token: str = "<|endoftext|>") -> Any:
    """CLIP's tokenizer, built from CLIP's BPE merges file the way CLIP's ``SimpleTokenizer`` builds it.

    The vocabulary is the 256 byte-level symbols, the same with the end-of-word mark ``</w>``, one entry per merge,
    then ``<|startoftext|>`` and ``<|endoftext|>``: 49408 entries. OpenCLIP's tokenizers (SD 2.x, SDXL's second
    encoder) are the same but pad with ``!`` (id 0) instead of ``<|endoftext|>``.
    """
    from transformers import CLIPTokenizer

    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    # GPT-2/CLIP byte-to-unicode table: printable bytes stand for themselves, the others map to 256, 257, ...
    others = [b for b in range(256) if b not in printable]
    symbols = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]
    lines = gzip.decompress(bpe_file.read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    tokens = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(
        vocab={t: i for i, t in enumerate(tokens)}, merges=merges, model_max_length=MAX_TOKENS, pad_token=pad_token
    )


def guidance_embedding(scale: float, dim: int, batch: int, dtype: torch.dtype) -> torch.Tensor:
    """The sinusoidal embedding of ``scale`` that guidance-distilled (LCM) U-Nets take as ``timestep_cond``.

    It must match the embedding those models were trained with: w = 1000·(scale − 1), geometric frequencies
    from 1 to 1/10000 over half the dimensions, sines then cosines.
    """
    import torch

    # Same operations in the same order as training: at angles of thousands of radians, float32 rounding shows.
    half = dim // 2
    step = torch.log(torch.tensor(10000.0)) / (half - 1)
    frequencies = torch.exp(torch.arange(half, dtype=torch.float32) * -step)
    angles = (torch.tensor([scale - 1.0]) * 1000.0)[:, None] * frequencies[None, :]
    embedding = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)[0]
    if dim % 2:
        embedding = torch.nn.functional.pad(embedding, (0, 1))
    return embedding.to(dtype).expand(batch, -1)


@dataclass(frozen=True)
class Family:
    """One Stable Diffusion family: SD 1.x's behaviour, which the other families extend where they differ."""

    name: str
    label: str  # for messages: "Stable Diffusion 1.x"
    config_folder: str  # under model_configs/: the diffusers config used for single-file checkpoints
    native_size: int  # the square side, in pixels, the family was trained at
    prediction_type: str = "epsilon"
    pipeline_module: str = "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion"
    pipeline_class: str = "StableDiffusionPipeline"
    down_blocks: int = 4  # U-Net down blocks (and as many up blocks): the bend targets
    # Scheduler settings the family's checkpoints were distilled or trained for, applied over the config's own.
    scheduler_overrides: Mapping[str, Any] = field(default_factory=dict)
    # What the family renders best with, for the Blender side's defaults and the runner's warnings.
    recommended: Mapping[str, Any] = field(default_factory=lambda: {"guidance": 7.5, "steps": 50})
    # Text encoders whose tokenizer is OpenCLIP's (pads with "!") rather than OpenAI CLIP's.
    openclip_tokenizers: tuple[str, ...] = ()
    text_components: tuple[str, ...] = ("tokenizer", "text_encoder")
    # Whether renders well below the native size break down (SDXL's do; SD 1.x/2.x degrade gracefully, and the
    # tiny test models render far below any native size)
    warn_small: bool = False

    # --- what the family is made of ----------------------------------------------------------------------------

    @property
    def components(self) -> tuple[str, ...]:
        return (*self.text_components, "unet", "vae", "scheduler")

    @property
    def weighted(self) -> tuple[str, ...]:
        """The components that hold weights, text encoders first."""
        return (*(c for c in self.text_components if c.startswith("text_encoder")), "unet", "vae")

    @property
    def unet_targets(self) -> tuple[str, ...]:
        """The U-Net outputs a bend may act on, in the order the U-Net computes them."""
        return (
            "conv_in",
            *(f"down_blocks.{i}" for i in range(self.down_blocks)),
            "mid_block",
            *(f"up_blocks.{i}" for i in range(self.down_blocks)),
            "conv_out",
        )

    @property
    def config_path(self) -> Path:
        return MODEL_CONFIGS / self.config_folder

    # --- detection -----------------------------------------------------------------------------------------------

    def matches_checkpoint(self, info: CheckpointInfo) -> bool:
        """Whether a single file's keys are this family's (its text encoder's layout tells the families apart)."""
        return info.has_prefix("cond_stage_model.transformer.")

    def matches_folder(self, info: FolderInfo) -> bool:
        """SD 1.x: a StableDiffusionPipeline whose text encoder is OpenAI CLIP (quick GELU, not 1024 wide)."""
        return info.pipeline == self.pipeline_class and not _is_openclip_folder(info)

    # --- loading -------------------------------------------------------------------------------------------------

    def pipeline_type(self) -> Any:
        return getattr(importlib.import_module(self.pipeline_module), self.pipeline_class)

    def pipeline_kwargs(self) -> dict[str, Any]:
        """Components the engine never uses, left out of loading."""
        return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}

    def components_of(self, pipe: Any) -> dict[str, Any]:
        return {key: getattr(pipe, key) for key in self.components}

    def load_folder(self, folder: Path, dtype: torch.dtype, use_safetensors: bool | None) -> dict[str, Any]:
        """A diffusers folder (or a cached repo's snapshot), offline; errors are the caller's to phrase."""
        pipe = self.pipeline_type().from_pretrained(
            str(folder), dtype=dtype, local_files_only=True, use_safetensors=use_safetensors, **self.pipeline_kwargs()
        )
        return self.adjust(self.components_of(pipe))

    def single_file_tokenizers(self, config: Path) -> dict[str, Any]:
        """Tokenizers a config folder does not hold as files are built from the shared CLIP BPE merges."""
        built = {}
        for key in self.text_components:
            held = any((config / key / name).is_file() for name in ("tokenizer.json", "vocab.json"))
            if key.startswith("tokenizer") and not held:
                pad = "!" if key in self.openclip_tokenizers else "<|endoftext|>"
                built[key] = clip_tokenizer(SHARED_BPE, pad_token=pad)
        return built

    def load_single_file(self, path: Path, dtype: torch.dtype, config: Path) -> dict[str, Any]:
        """An original-layout checkpoint with the diffusers-format config folder ``config``, all offline."""
        pipe = self.pipeline_type().from_single_file(
            str(path),
            config=str(config),
            local_files_only=True,
            dtype=dtype,
            **self.pipeline_kwargs(),
            **self.single_file_tokenizers(config),
        )
        return self.adjust(self.components_of(pipe))

    def adjust(self, components: dict[str, Any]) -> dict[str, Any]:
        """The family's scheduler settings over the loaded scheduler's (a variant's few-step spacing)."""
        if self.scheduler_overrides:
            scheduler = components["scheduler"]
            components["scheduler"] = type(scheduler).from_config(scheduler.config, **self.scheduler_overrides)
        return components

    # --- conditioning --------------------------------------------------------------------------------------------

    def encode(self, model: Any, prompts: Sequence[str]) -> Conditioning:
        """The text encoder's last hidden states, one row per prompt (padded to 77 tokens, longer ones truncated)."""
        import torch

        from ..conditioning import Conditioning

        ids = _token_ids(model.tokenizer, prompts)
        encoder = model.text_encoder
        with torch.inference_mode():
            hidden = encoder(ids.to(next(encoder.parameters()).device))[0]
        return Conditioning(hidden)

    def negative(self, model: Any, encode: Any, prompt: str) -> Conditioning:
        """The unconditional branch's conditioning: the negative prompt, encoded like any prompt."""
        return encode([prompt])

    def unet_kwargs(
        self, model: Any, conditioning: Conditioning, batch: int, *, height: int, width: int, guidance: float
    ) -> dict[str, Any]:
        """The U-Net's arguments beside the latents and timestep, for ``batch`` samples (both guidance branches).

        The same at every step of a render. ``conditioning`` has ``batch`` rows.
        """
        kwargs: dict[str, Any] = {"encoder_hidden_states": conditioning.hidden}
        dim = model.unet.config.get("time_cond_proj_dim")
        if dim is not None:  # guidance-distilled (LCM) U-Nets embed the guidance scale instead of two branches
            kwargs["timestep_cond"] = guidance_embedding(guidance, dim, batch, model.dtype).to(model.device)
        return kwargs

    def advice(self, width: int, height: int, guidance: float) -> list[str]:
        """Warnings for settings the family renders badly with, each naming the setting to change."""
        notes = []
        side = self.native_size
        if self.warn_small and max(width, height) < side * 3 // 4:
            notes.append(
                f"{self.label} was trained at {side}×{side}; at {width}×{height} it renders broken, tiled images: "
                f"set the output size (width, height) to about {side}×{side}"
            )
        low, high = self.recommended.get("guidance_range", (0.0, float("inf")))
        if not low <= guidance <= high:
            notes.append(
                f"{self.label} is made for guidance {self.recommended['guidance']:g}; {guidance:g} overexposes or "
                f"muddies it: set guidance to {self.recommended['guidance']:g}"
            )
        return notes


def _is_openclip_folder(info: FolderInfo) -> bool:
    """SD 2.x's text encoder is OpenCLIP ViT-H: GELU activations (OpenAI CLIP's use quick GELU), 1024 wide."""
    return info.text_encoder.get("hidden_act") == "gelu" or info.unet.get("cross_attention_dim") == 1024


def _token_ids(tokenizer: Any, prompts: Sequence[str]) -> Any:
    return tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
