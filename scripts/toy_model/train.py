"""Train ``toy-shapes``: a small Stable Diffusion model (SD 1.x's own classes) on the pictures ``scenes.py`` draws.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/toy_model/train.py --out models/toy-shapes

Three phases, all seeded and on the CPU with deterministic algorithms, so the same seed and settings give the same
weights on the same machine and library versions:

1. the VAE (an ``AutoencoderKL``, 4 latent channels, 64×64 pictures to 16×16 latents) learns to reconstruct the
   pictures from its posterior mean, with a tiny KL weight (a sampled posterior washed the hues out in a probe);
2. the training set is encoded once into a latent pool (encoding every step would cost as much as the U-Net);
3. the text encoder (a 2-layer ``CLIPTextModel``) and the ``UNet2DConditionModel`` learn to predict the noise,
   with 10 % of captions dropped for classifier-free guidance.

The tokenizer is CLIP's BPE tokenizer (the merges the project ships under ``engine/model_configs``) cut down to
the byte symbols and the merges the caption words use: it tokenizes those words exactly as CLIP does, and any
other text falls back to bytes, so the vocabulary is about 600 entries instead of 49408.

The result is a diffusers folder (safetensors, DDIM scheduler) that ``load_model`` loads like any other.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import scenes  # noqa: E402

MAX_TOKENS = 32  # the longest caption is 12 tokens; a short context keeps cross-attention cheap
CLIP_MERGES = ROOT / "engine" / "model_configs" / "sd-v1" / "tokenizer" / "bpe_simple_vocab_16e6.txt.gz"


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP's byte-to-unicode table, in CLIP's order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def _bpe_merges_used(word: str, ranks: dict[tuple[str, str], int]) -> list[tuple[str, str]]:
    """The merges CLIP's BPE applies to ``word``, in order (lowest rank first, as CLIP's tokenizer does)."""
    parts = [*word[:-1], word[-1] + "</w>"]
    used = []
    while len(parts) > 1:
        pairs = [(parts[i], parts[i + 1]) for i in range(len(parts) - 1)]
        best = min(pairs, key=lambda p: ranks.get(p, 1 << 30))
        if best not in ranks:
            break
        used.append(best)
        merged, i = [], 0
        while i < len(parts):
            if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                merged.append(parts[i] + parts[i + 1])
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
    return used


def build_tokenizer(words: list[str]):
    """CLIP's tokenizer restricted to the byte symbols and the merges ``words`` need, in CLIP's merge order.

    Dropping merges a word never applies cannot change how BPE splits it (BPE only ever applies the best-ranked
    merge present), so these words tokenize exactly as with the full tokenizer.
    """
    from transformers import CLIPTokenizer

    lines = gzip.decompress(CLIP_MERGES.read_bytes()).decode("utf-8").split("\n")
    all_merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    ranks = {m: i for i, m in enumerate(all_merges)}
    needed = {m for w in words for m in _bpe_merges_used(w, ranks)}
    merges = sorted(needed, key=ranks.__getitem__)
    symbols = _byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges)]
    tokens = [*dict.fromkeys(tokens), "<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, model_max_length=MAX_TOKENS)


def build_models(vocab_size: int, seed: int):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16, 32),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        latent_channels=4,
        # One group: GroupNorm with one or two channels per group erases each channel's mean over the picture,
        # which is its colour, and a probe's VAE came out grey. One group keeps the channels' relative levels.
        norm_num_groups=1,
        sample_size=scenes.SIZE,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=256,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=MAX_TOKENS,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=scenes.SIZE // 4,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=8,
        norm_num_groups=4,  # 8-16 channels per group, like SD's 10: a channel's mean (colour) survives the norm
    )
    return vae, text_encoder, unet


def make_scheduler():
    from diffusers import DDIMScheduler

    # Stable Diffusion 1.x's noise schedule, so the engine's samplers treat it like any SD model.
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        num_train_timesteps=1000,
    )


def pictures(seed: int, count: int) -> tuple[list[str], torch.Tensor]:
    examples = [scenes.training_example(seed, i) for i in range(count)]
    images = np.stack([e[1] for e in examples]).astype(np.float32) / 127.5 - 1.0
    return [e[0] for e in examples], torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def train_vae(vae, images: torch.Tensor, steps: int, batch: int, lr: float, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed + 1)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    vae.train()
    started = time.perf_counter()
    for step in range(steps):
        index = torch.randint(len(images), (batch,), generator=generator)
        x = images[index]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.mean).sample
        loss = torch.nn.functional.mse_loss(recon, x) + 0.5 * torch.nn.functional.l1_loss(recon, x)
        # the colour of each 4×4 patch, weighted up: hue is what the prompts name and what a probe's VAE lost
        pooled = torch.nn.functional.avg_pool2d
        loss = loss + 2.0 * torch.nn.functional.l1_loss(pooled(recon, 4), pooled(x, 4))
        loss = loss + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            log(f"vae step {step}/{steps} loss {loss.item():.4f} ({time.perf_counter() - started:.0f} s)")
    vae.eval()


@torch.no_grad()
def encode_pool(vae, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    return torch.cat([vae.encode(images[i : i + batch]).latent_dist.mean for i in range(0, len(images), batch)])


def train_unet(unet, text_encoder, tokenizer, latents, captions, steps, batch, lr, seed, offset=0.0) -> None:
    from diffusers import DDPMScheduler

    noise_schedule = DDPMScheduler.from_config(make_scheduler().config)
    ids = tokenizer(captions, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
    ids = ids.input_ids
    empty = tokenizer([""], padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
    generator = torch.Generator().manual_seed(seed + 2)
    params = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.03)
    unet.train()
    text_encoder.train()
    started = time.perf_counter()
    average = None
    for step in range(steps):
        index = torch.randint(len(latents), (batch,), generator=generator)
        x0 = latents[index]
        tokens = ids[index].clone()
        drop = torch.rand(batch, generator=generator) < 0.1  # unconditional, for classifier-free guidance
        tokens[drop] = empty[0]
        noise = torch.randn(x0.shape, generator=generator)
        if offset:
            # Offset noise: SD's schedule leaves some of a picture's mean in the last step, which pure noise at
            # sampling time lacks, so a model trained without it cannot pick a picture's overall colour (the dark
            # backgrounds came out green). A per-channel constant in the noise teaches it to.
            noise = noise + offset * torch.randn((batch, x0.shape[1], 1, 1), generator=generator)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (batch,), generator=generator)
        noisy = noise_schedule.add_noise(x0, noise, t)
        context = text_encoder(tokens)[0]
        prediction = unet(noisy, t, encoder_hidden_states=context).sample
        loss = torch.nn.functional.mse_loss(prediction, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        average = loss.item() if average is None else 0.98 * average + 0.02 * loss.item()
        if step % 50 == 0 or step == steps - 1:
            log(f"unet step {step}/{steps} loss {average:.4f} ({time.perf_counter() - started:.0f} s)")
    unet.eval()
    text_encoder.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "toy-shapes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=3000, help="training pictures (drawn, then encoded once)")
    parser.add_argument("--vae-steps", type=int, default=1400)
    parser.add_argument("--vae-batch", type=int, default=8)
    parser.add_argument("--unet-steps", type=int, default=800)
    parser.add_argument("--unet-batch", type=int, default=16)
    parser.add_argument("--checkpoint", type=Path, default=None, help="save/reuse the trained VAE here")
    parser.add_argument("--offset-noise", type=float, default=0.0, help="per-channel noise offset (0: none)")
    parser.add_argument("--fp16", action="store_true", help="store the weights in half precision")
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        help="continue a saved model: its VAE is kept, its text encoder and U-Net train --unet-steps more",
    )
    args = parser.parse_args(argv)

    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    tokenizer = build_tokenizer(scenes.vocabulary_words())
    vae, text_encoder, unet = build_models(len(tokenizer), args.seed)
    for name, module in (("vae", vae), ("text_encoder", text_encoder), ("unet", unet)):
        log(f"{name}: {sum(p.numel() for p in module.parameters()) / 1e6:.2f} M parameters")
    captions, images = pictures(args.seed, args.images)
    log(f"drew {len(images)} pictures; vocabulary {len(tokenizer)} tokens")

    if args.resume:
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel

        vae = AutoencoderKL.from_pretrained(args.resume / "vae").eval()
        text_encoder = CLIPTextModel.from_pretrained(args.resume / "text_encoder")
        unet = UNet2DConditionModel.from_pretrained(args.resume / "unet")
        log(f"resumed from {args.resume}")
    elif args.checkpoint and args.checkpoint.exists():
        vae.load_state_dict(torch.load(args.checkpoint, weights_only=True))
        vae.eval()
        log(f"reused the VAE in {args.checkpoint}")
    else:
        train_vae(vae, images, args.vae_steps, args.vae_batch, 2e-3, args.seed)
        if args.checkpoint:
            torch.save(vae.state_dict(), args.checkpoint)
    vae_done = time.perf_counter()

    latents = encode_pool(vae, images)
    scale = vae.config.scaling_factor if args.resume else float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scale)  # the sampler divides by it: latents of unit variance
    latents = latents * scale
    log(f"encoded the pool: latent std before scaling {1 / scale:.3f}")

    train_unet(
        unet,
        text_encoder,
        tokenizer,
        latents,
        captions,
        args.unet_steps,
        args.unet_batch,
        1e-3,
        args.seed + (1000 if args.resume else 0),  # a resumed run draws other batches
        args.offset_noise,
    )
    unet_done = time.perf_counter()

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=make_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if args.fp16:
        pipe.to(dtype=torch.float16)
    pipe.save_pretrained(str(args.out), safe_serialization=True)
    timing = {
        "seed": args.seed,
        "images": args.images,
        "vae_steps": args.vae_steps,
        "unet_steps": args.unet_steps,
        "offset_noise": args.offset_noise,
        "resumed_from": str(args.resume) if args.resume else None,
        "vae_seconds": round(vae_done - started),
        "unet_seconds": round(unet_done - vae_done),
        "total_seconds": round(time.perf_counter() - started),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    (args.out / "training.json").write_text(json.dumps(timing, indent=1) + "\n", encoding="utf-8")
    log(f"saved {args.out}: {timing}")


if __name__ == "__main__":
    main()
