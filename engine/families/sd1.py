"""Stable Diffusion 1.x (v1-4, v1-5 and their fine-tunes): one OpenAI CLIP ViT-L/14 text encoder, ε-prediction,
512×512, four down and four up blocks. The base ``Family`` is this family's behaviour."""

from __future__ import annotations

from .base import Family

SD1 = Family(name="sd1", label="Stable Diffusion 1.x", config_folder="sd-v1", native_size=512)
