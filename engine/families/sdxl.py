"""Stable Diffusion XL 1.0 base and its few-step variants.

Two text encoders (OpenAI CLIP ViT-L and OpenCLIP ViT-bigG): the prompt's conditioning is both encoders'
penultimate hidden states side by side (2048 wide) plus the second encoder's pooled, projected embedding. The
U-Net also takes "time ids" (original size, crop corner, target size) through ``added_cond_kwargs``; it has three
down and three up blocks.

* ``sdxl``: the base model (and fine-tunes on it), 1024×1024, guidance about 5 to 8.
* ``sdxl-turbo``: adversarially distilled; 1 to 4 steps at 512×512, guidance 0, trailing timesteps.
* ``sdxl-lightning``: progressively distilled (2, 4 or 8 steps); 1024×1024, guidance 0, trailing timesteps.

The variants share the base's keys; a single file's name ("turbo", "lightning") or a folder's name tells them
apart, and a job may name the family (``model.family``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .base import CheckpointInfo, Family, FolderInfo, _token_ids

VARIANT_HINTS = {"sdxl-turbo": "turbo", "sdxl-lightning": "lightning"}


@dataclass(frozen=True)
class SDXL(Family):
    pipeline_module: str = "diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl"
    pipeline_class: str = "StableDiffusionXLPipeline"
    down_blocks: int = 3
    text_components: tuple[str, ...] = ("tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2")
    openclip_tokenizers: tuple[str, ...] = ("tokenizer_2",)
    warn_small: bool = True
    recommended: Any = field(default_factory=lambda: {"guidance": 7.0, "steps": 30, "guidance_range": (1.0, 15.0)})

    def _is_variant(self, hint: str) -> bool:
        named = [name for name, word in VARIANT_HINTS.items() if word in hint]
        return named == [self.name] if self.name in VARIANT_HINTS else not named

    def matches_checkpoint(self, info: CheckpointInfo) -> bool:
        layout = info.has_prefix("conditioner.embedders.0.transformer.") and info.has_prefix(
            "conditioner.embedders.1.model."
        )
        return layout and self._is_variant(info.hint)

    def matches_folder(self, info: FolderInfo) -> bool:
        return info.pipeline == self.pipeline_class and self._is_variant(info.name.lower())

    def pipeline_kwargs(self) -> dict[str, Any]:
        return {"feature_extractor": None, "image_encoder": None}

    def encode(self, model: Any, prompts: Sequence[str]) -> Any:
        """As diffusers' SDXL pipeline: penultimate hidden states of both encoders, concatenated; the second
        encoder's projected pooled output."""
        import torch

        from ..conditioning import Conditioning

        hidden = []
        pooled = None
        with torch.inference_mode():
            for tokenizer, encoder in (
                (model.tokenizer, model.text_encoder),
                (model.tokenizer_2, model.text_encoder_2),
            ):
                ids = _token_ids(tokenizer, prompts).to(next(encoder.parameters()).device)
                out = encoder(ids, output_hidden_states=True)
                hidden.append(out.hidden_states[-2])
                if out[0].ndim == 2:  # CLIPTextModelWithProjection's text_embeds
                    pooled = out[0]
        return Conditioning(torch.cat(hidden, dim=-1), pooled)

    def negative(self, model: Any, encode: Any, prompt: str) -> Any:
        """SDXL is trained with zeros for an empty negative prompt (``force_zeros_for_empty_prompt``)."""
        encoded = encode([prompt])
        return encoded.zeros_like() if not prompt else encoded

    def unet_kwargs(
        self, model: Any, conditioning: Any, batch: int, *, height: int, width: int, guidance: float
    ) -> dict[str, Any]:
        import torch

        kwargs = super().unet_kwargs(model, conditioning, batch, height=height, width=width, guidance=guidance)
        # original size, crop top-left, target size: an uncropped image rendered at the size asked for
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=model.dtype, device=model.device)
        kwargs["added_cond_kwargs"] = {"text_embeds": conditioning.pooled, "time_ids": time_ids.repeat(batch, 1)}
        return kwargs


SDXL_BASE = SDXL(name="sdxl", label="Stable Diffusion XL", config_folder="sdxl-base", native_size=1024)
SDXL_TURBO = SDXL(
    name="sdxl-turbo",
    label="SDXL Turbo",
    config_folder="sdxl-base",
    native_size=512,
    scheduler_overrides={"timestep_spacing": "trailing"},
    recommended={"guidance": 0.0, "steps": 1, "scheduler": "euler_a", "guidance_range": (0.0, 1.0)},
)
SDXL_LIGHTNING = SDXL(
    name="sdxl-lightning",
    label="SDXL Lightning",
    config_folder="sdxl-base",
    native_size=1024,
    scheduler_overrides={"timestep_spacing": "trailing"},
    recommended={"guidance": 0.0, "steps": 4, "scheduler": "euler", "guidance_range": (0.0, 1.0)},
)
