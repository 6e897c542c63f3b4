"""``tiny-random``: a small Stable Diffusion pipeline with deterministic random weights, for tests and demos.

It has the real SD 1.x component types (CLIP text encoder, conditional U-Net with cross-attention, KL VAE,
DDIM scheduler) at toy sizes, and its own byte-level tokenizer, so it builds in well under a second with no
download. Its images are noise-like, but every code path (bending, batching, guidance, img2img, saving and
loading) runs exactly as it does for a real model.

``build_tiny_family(name)`` builds the same kind of toy for every model family (``families/``): SD 2.x with GELU
text layers, linear attention projections and ε or v prediction; SDXL with two text encoders (the second with a
projection, for the pooled embedding), "text_time" added conditioning and three down and three up blocks.
``write_tiny_model(family, folder)`` saves one as a diffusers folder, for tests that load models from disk (the
Blender side's included).
"""

from __future__ import annotations

from pathlib import Path
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


def _tiny_unet(**family_settings: Any) -> torch.nn.Module:
    """SD 1.x's and 2.x's tiny U-Net: 8×8 latents, cross-attention on 32-wide text (drawn from the caller's RNG)."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=32,
        **family_settings,
    )


def _tiny_vae(**family_settings: Any) -> torch.nn.Module:
    """Every tiny model's VAE: 4 latent channels, 64×64 images to 8×8 latents (drawn from the caller's seeded RNG)."""
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=64,
        **family_settings,
    )


def build_tiny_components() -> dict[str, Any]:
    """Return ``tokenizer, text_encoder, unet, vae, scheduler`` with weights drawn from a fixed seed."""
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler
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
        unet = _tiny_unet()
        vae = _tiny_vae()
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
    write_tiny_model("sd1", folder)


def _text_encoder(hidden: int, vocab: int, act: str, projection: int | None = None) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=hidden,
        intermediate_size=2 * hidden + 5,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab,
        max_position_embeddings=MAX_TOKENS,
        hidden_act=act,
        projection_dim=projection or hidden,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _sd2_components(prediction: str) -> dict[str, Any]:
    """SD 2.x in miniature: OpenCLIP-style text layers (GELU, "!" padding), linear attention projections."""
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler
    from transformers import CLIPTokenizer

    components = build_tiny_components()
    vocab = byte_level_vocab()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(WEIGHT_SEED + 2)
        components["text_encoder"] = _text_encoder(32, len(vocab), "gelu")
        components["unet"] = _tiny_unet(attention_head_dim=(2, 4), use_linear_projection=True)  # as SD 2.x
    components["tokenizer"] = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS, pad_token="!")
    components["scheduler"] = DDIMScheduler.from_config(components["scheduler"].config, prediction_type=prediction)
    return components


def _sdxl_components() -> dict[str, Any]:
    """SDXL in miniature: CLIP-style and OpenCLIP-style encoders of different widths (32 and 64, as 768 and 1280),
    hidden states concatenated to 96, a pooled projection of 32, time ids through "text_time" added conditioning."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from diffusers.schedulers.scheduling_euler_discrete import EulerDiscreteScheduler
    from transformers import CLIPTokenizer

    vocab = byte_level_vocab()
    time_dim, pooled_dim = 8, 32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(WEIGHT_SEED + 3)
        text_encoder = _text_encoder(32, len(vocab), "quick_gelu")
        text_encoder_2 = _text_encoder(64, len(vocab), "gelu", projection=pooled_dim)
        unet = UNet2DConditionModel(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64, 64),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32 + 64,
            attention_head_dim=(2, 4, 4),
            transformer_layers_per_block=(1, 1, 2),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=time_dim,
            projection_class_embeddings_input_dim=6 * time_dim + pooled_dim,
            norm_num_groups=32,
        )
        vae = _tiny_vae(scaling_factor=0.13025, force_upcast=True)  # SDXL's latent scale
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    return {
        "tokenizer": CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS),
        "tokenizer_2": CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS, pad_token="!"),
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "unet": unet,
        "vae": vae,
        "scheduler": scheduler,
    }


def build_tiny_family(name: str) -> dict[str, Any]:
    """The tiny model of family ``name`` (``sd1``, ``sd2``, ``sd2-v``, ``sdxl`` and its variants), seeded."""
    from .families import family_named

    family = family_named(name)
    if family.name == "sd1":
        components = build_tiny_components()
    elif family.name.startswith("sd2"):
        components = _sd2_components(family.prediction_type)
    else:
        components = _sdxl_components()
    return family.adjust(components)


def write_tiny_model(family: str, folder: str | Path) -> Path:
    """Save family ``family``'s tiny model as a diffusers folder (what ``model.source`` may name); returns it.

    A variant (``sdxl-turbo``) is written with its base's layout: name the folder after it (``.../sdxl-turbo``)
    or set ``model.family`` for the engine to pick the variant.
    """
    from .families import family_named

    chosen = family_named(family)
    pipe = chosen.pipeline_type()(**build_tiny_family(family), **chosen.pipeline_kwargs())
    pipe.save_pretrained(str(folder))
    return Path(folder)
