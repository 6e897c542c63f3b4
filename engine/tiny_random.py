"""``tiny-random``: a small Stable Diffusion pipeline with deterministic random weights, for tests and demos.

It has the real SD 1.x component types (CLIP text encoder, conditional U-Net with cross-attention, KL VAE,
DDIM scheduler) at toy sizes, and its own byte-level tokenizer, so it builds in well under a second with no
download. Its images are noise-like, but every code path (bending, batching, guidance, img2img, saving and
loading) runs exactly as it does for a real model.
"""

from __future__ import annotations

from typing import Any

import torch

WEIGHT_SEED = 0
MAX_TOKENS = 77


def byte_level_vocab() -> dict[str, int]:
    """A CLIP-style vocabulary of the 256 byte symbols (and their end-of-word forms): every text tokenizes."""
    from tokenizers import pre_tokenizers

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for symbol in symbols:
            vocab[symbol + suffix] = len(vocab)
    return vocab


def build_tiny_components() -> dict[str, Any]:
    """Return ``tokenizer, text_encoder, unet, vae, scheduler`` with weights drawn from a fixed seed."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab = byte_level_vocab()
    # model_max_length must be explicit: transformers 5 otherwise pads to an unbounded length.
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS)
    fork_devices: list[torch.device] = []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(WEIGHT_SEED)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                bos_token_id=0,
                eos_token_id=1,
                pad_token_id=1,
                hidden_size=32,
                intermediate_size=37,
                num_attention_heads=4,
                num_hidden_layers=2,
                vocab_size=len(vocab),
                max_position_embeddings=MAX_TOKENS,
            )
        )
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            norm_num_groups=32,
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            block_out_channels=(32, 64),
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            latent_channels=4,
            norm_num_groups=32,
            sample_size=64,
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "unet": unet, "vae": vae, "scheduler": scheduler}


def save_tiny_pipeline(folder: str) -> None:
    """Write ``tiny-random`` as a diffusers folder, to test the real folder-loading path."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        **build_tiny_components(), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(folder)
