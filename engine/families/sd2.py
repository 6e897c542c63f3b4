"""Stable Diffusion 2.x: one OpenCLIP ViT-H text encoder (its penultimate layer: the shipped config has 23 of its
24 layers), linear attention projections, 1024-wide cross-attention; 512 ε-prediction (2.0/2.1 base) and 768
v-prediction (2.0/2.1).

The two variants have the same keys; a single file says which it is only through its name or its ModelSpec
metadata ("512"/"base"/epsilon: ε, otherwise v, as the 768 models are the common ones). A job can name the family
(``model.family``) when a file's name says neither.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import CheckpointInfo, Family, FolderInfo, _is_openclip_folder

EPSILON_HINTS = ("512", "base", "epsilon", "eps")


def _is_epsilon_file(info: CheckpointInfo) -> bool:
    prediction = str(info.metadata.get("modelspec.prediction_type", "")).lower()
    if prediction:
        return prediction.startswith("eps")
    return any(hint in info.hint for hint in EPSILON_HINTS)


@dataclass(frozen=True)
class SD2(Family):
    def matches_checkpoint(self, info: CheckpointInfo) -> bool:
        if not info.has_prefix("cond_stage_model.model."):
            return False
        return _is_epsilon_file(info) == (self.prediction_type == "epsilon")

    def matches_folder(self, info: FolderInfo) -> bool:
        prediction = info.scheduler.get("prediction_type", "epsilon")
        return (
            info.pipeline == self.pipeline_class
            and _is_openclip_folder(info)
            and (prediction == "v_prediction") == (self.prediction_type == "v_prediction")
        )


SD2_BASE = SD2(
    name="sd2",
    label="Stable Diffusion 2.x (512, ε-prediction)",
    config_folder="sd-v2",
    native_size=512,
    openclip_tokenizers=("tokenizer",),
)
SD2_V = SD2(
    name="sd2-v",
    label="Stable Diffusion 2.x (768, v-prediction)",
    config_folder="sd-v2-v",
    native_size=768,
    prediction_type="v_prediction",
    openclip_tokenizers=("tokenizer",),
)
