"""Write a diffusers Stable Diffusion 1.x model as one checkpoint in the original (LDM / CompVis) key layout.

This is the inverse of what ``StableDiffusionPipeline.from_single_file`` converts, so tests can build single-file
checkpoints from the tiny model without downloading one. The mapping follows the SD 1.x layouts of the original
``ldm`` code base (``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.transformer.*``); it is
written from those layouts, for any SD 1.x-shaped U-Net/VAE config (block counts, layers per block).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

# Renames inside one residual block: diffusers name -> LDM name.
UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
VAE_RESNET = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
UNET_FIXED = {
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
VAE_FIXED = {
    "conv_in": "conv_in",
    "conv_out": "conv_out",
    "conv_norm_out": "norm_out",
}


def _split(key: str, names: dict[str, str]) -> tuple[str, str]:
    """Split ``key`` into a layer name from ``names`` and the rest (``weight``/``bias``), renamed."""
    for name, ldm_name in names.items():
        if key.startswith(name + "."):
            return ldm_name, key[len(name) + 1 :]
    raise KeyError(key)


def unet_to_ldm(state_dict: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """diffusers ``UNet2DConditionModel`` keys -> ``model.diffusion_model.*`` keys."""
    layers = int(config.layers_per_block)
    up_has_attention = ["CrossAttn" in kind for kind in config.up_block_types]
    out: dict[str, torch.Tensor] = {}

    def put(ldm_key: str, tensor: torch.Tensor) -> None:
        assert ldm_key not in out, ldm_key
        out[UNET_PREFIX + ldm_key] = tensor

    for key, tensor in state_dict.items():
        if m := re.fullmatch(r"(conv_in|conv_out|conv_norm_out|time_embedding\.linear_[12])\.(\w+)", key):
            put(f"{UNET_FIXED[m[1]]}.{m[2]}", tensor)
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            index = 1 + int(m[1]) * (layers + 1) + int(m[2])
            name, rest = _split(m[3], UNET_RESNET)
            put(f"input_blocks.{index}.0.{name}.{rest}", tensor)
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
            index = 1 + int(m[1]) * (layers + 1) + int(m[2])
            put(f"input_blocks.{index}.1.{m[3]}", tensor)  # transformer blocks keep their diffusers names
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", key):
            index = 1 + int(m[1]) * (layers + 1) + layers
            put(f"input_blocks.{index}.0.op.{m[2]}", tensor)
        elif m := re.fullmatch(r"mid_block\.resnets\.([01])\.(.+)", key):
            name, rest = _split(m[2], UNET_RESNET)
            put(f"middle_block.{2 * int(m[1])}.{name}.{rest}", tensor)
        elif m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
            put(f"middle_block.1.{m[1]}", tensor)
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            index = int(m[1]) * (layers + 1) + int(m[2])
            name, rest = _split(m[3], UNET_RESNET)
            put(f"output_blocks.{index}.0.{name}.{rest}", tensor)
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
            index = int(m[1]) * (layers + 1) + int(m[2])
            put(f"output_blocks.{index}.1.{m[3]}", tensor)
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)", key):
            block = int(m[1])
            index = block * (layers + 1) + layers
            slot = 2 if up_has_attention[block] else 1  # after the block's attention, if it has one
            put(f"output_blocks.{index}.{slot}.conv.{m[2]}", tensor)
        else:
            raise KeyError(f"no LDM name for U-Net key {key}")
    return out


def vae_to_ldm(state_dict: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """diffusers ``AutoencoderKL`` keys -> ``first_stage_model.*`` keys (attention projections as 1x1 convs)."""
    n_up = len(config.up_block_types)
    out: dict[str, torch.Tensor] = {}

    def put(ldm_key: str, tensor: torch.Tensor) -> None:
        assert ldm_key not in out, ldm_key
        out[VAE_PREFIX + ldm_key] = tensor

    for key, tensor in state_dict.items():
        if m := re.fullmatch(r"(quant_conv|post_quant_conv)\.(\w+)", key):
            put(key, tensor)
        elif m := re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out|conv_norm_out)\.(\w+)", key):
            put(f"{m[1]}.{VAE_FIXED[m[2]]}.{m[3]}", tensor)
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            name, rest = _split(m[3], VAE_RESNET)
            put(f"encoder.down.{m[1]}.block.{m[2]}.{name}.{rest}", tensor)
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", key):
            put(f"encoder.down.{m[1]}.downsample.conv.{m[2]}", tensor)
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            name, rest = _split(m[3], VAE_RESNET)
            put(f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.{name}.{rest}", tensor)  # LDM counts up from 0
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)", key):
            put(f"decoder.up.{n_up - 1 - int(m[1])}.upsample.conv.{m[2]}", tensor)
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.([01])\.(.+)", key):
            name, rest = _split(m[3], VAE_RESNET)
            put(f"{m[1]}.mid.block_{int(m[2]) + 1}.{name}.{rest}", tensor)
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
            name, rest = _split(m[2], VAE_ATTENTION)
            if rest == "weight" and name != "norm":
                tensor = tensor[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
            put(f"{m[1]}.mid.attn_1.{name}.{rest}", tensor)
        else:
            raise KeyError(f"no LDM name for VAE key {key}")
    return out


def clip_to_ldm(state_dict: dict[str, torch.Tensor], max_positions: int) -> dict[str, torch.Tensor]:
    """transformers ``CLIPTextModel`` keys -> ``cond_stage_model.transformer.text_model.*`` keys.

    transformers 5 flattened ``CLIPTextModel`` (no ``text_model.`` level); SD checkpoints keep the older nesting.
    """
    out = {}
    for key, tensor in state_dict.items():
        nested = key if key.startswith("text_model.") else "text_model." + key
        out[CLIP_PREFIX + nested] = tensor
    # Original checkpoints also store the position ids buffer; loaders must accept (and ignore) it.
    out[CLIP_PREFIX + "text_model.embeddings.position_ids"] = torch.arange(max_positions)[None]
    return out


def pipeline_to_ldm(components: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The whole SD 1.x model (``unet``, ``vae``, ``text_encoder``) as one original-layout state dict."""
    unet, vae, text_encoder = components["unet"], components["vae"], components["text_encoder"]
    state = {}
    state.update(unet_to_ldm(unet.state_dict(), unet.config))
    state.update(vae_to_ldm(vae.state_dict(), vae.config))
    state.update(clip_to_ldm(text_encoder.state_dict(), text_encoder.config.max_position_embeddings))
    return state


def save_ldm_checkpoint(components: dict[str, Any], path: str | Path) -> Path:
    """Write ``components`` as an original-layout ``.safetensors`` (or, for other suffixes, ``torch.save``) file."""
    path = Path(path)
    state = {key: tensor.detach().contiguous().clone() for key, tensor in pipeline_to_ldm(components).items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)
    return path
