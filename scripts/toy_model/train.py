"""Train ``toy-shapes``: a small Stable Diffusion model (SD 1.x's own classes) on the pictures ``scenes.py`` draws.

    make toy-model    # or: OMP_NUM_THREADS=1 .venv/bin/python -m scripts.toy_model.train [--out models/toy-shapes]

Three phases, all seeded and on the CPU with deterministic algorithms, so the same seed, settings and thread count
give the same weights on the same machine and library versions (the shipped ones were trained with one thread):

1. the VAE (an ``AutoencoderKL``, 4 latent channels, 64×64 pictures to 16×16 latents) learns to reconstruct the
   pictures from its posterior mean, with a tiny KL weight (a sampled posterior washed the hues out in a probe) and
   the shapes' pixels weighted up (unweighted, it turned red and yellow shapes orange);
2. the training set is encoded once into a latent pool (encoding every step would cost as much as the U-Net);
3. the text encoder (a 2-layer ``CLIPTextModel``) and the ``UNet2DConditionModel`` learn v-prediction, with 10 % of
   captions dropped for classifier-free guidance and offset noise; a layout phase on the noisiest timesteps comes
   first, a quarter of every later batch stays there, and the loss weights keep a floor there (``loss_weights``):
   that is where the words must place a shape. The weights saved are a moving average of the last steps'
   (``--ema``).

On a 2-core CPU shared with other work, one thread was 4× faster than two (two threads wait on each other when
the cores are busy); on an idle machine two are 1.5× faster.

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
        block_out_channels=(32, 64, 96),
        layers_per_block=1,
        # Attention at 8×8 and 4×4 (and the 4×4 middle), none at 16×16: self-attention over 256 positions cost
        # three quarters of a training step, and the words that place a shape act where a position sees the whole
        # picture (the borders), which the coarse levels do. 3.7× the samples per second of attention at 16×16.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=8,
        norm_num_groups=4,  # 8-16 channels per group, like SD's 10: a channel's mean (colour) survives the norm
    )
    return vae, text_encoder, unet


def make_scheduler(prediction_type: str = "epsilon"):
    from diffusers import DDIMScheduler

    # Stable Diffusion 1.x's noise schedule, so the engine's samplers treat it like any SD model; with v-prediction,
    # as SD 2.x's 768 models, which the scheduler's config tells every sampler.
    return DDIMScheduler(
        prediction_type=prediction_type,
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


def _shape_weights(x: torch.Tensor, shape_weight: float) -> torch.Tensor:
    """Per-pixel loss weights, 1 + ``shape_weight`` on a picture's bright pixels, normalised to a mean of 1 per
    picture: a shape covers a tenth of its picture, and unweighted the VAE spent its capacity on the dark background
    and turned red and yellow shapes orange. A landscape, bright everywhere, keeps uniform weights."""
    bright = (x.amax(dim=1, keepdim=True) > scenes.BRIGHT_LEVEL / 127.5 - 1.0).float()
    weights = 1.0 + shape_weight * bright
    return weights / weights.mean(dim=(1, 2, 3), keepdim=True)


def train_vae(vae, images: torch.Tensor, steps: int, batch: int, lr: float, seed: int, shape_weight: float) -> None:
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
        weights = _shape_weights(x, shape_weight)
        error = (recon - x).pow(2) + 0.5 * (recon - x).abs()
        loss = (error * weights).mean()
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


def loss_weights(snr: torch.Tensor, prediction_type: str, min_snr: float, snr_floor: float) -> torch.Tensor:
    """Per-sample weights of the prediction's squared error, so that the error of the predicted clean latent counts
    ``clamp(snr, snr_floor, min_snr)``.

    An error in the predicted noise is an error in the predicted picture scaled by the signal-to-noise ratio
    (``snr``), an error in v by ``snr + 1``. Predicting the noise, unweighted or with min-SNR weights, counts the
    picture's error at the noisiest steps about 0.005 times, and those steps decide where a shape goes and which
    half is sky: that model learnt colours and shapes but drew them wherever the noise put them. The floor gives those
    steps a real share. The cap is min-SNR weighting (Hang et al. 2023): the nearly clean steps, where only texture is
    at stake, weigh less.
    """
    picture_weight = torch.clamp(snr, min=snr_floor, max=min_snr) if min_snr else torch.clamp(snr, min=snr_floor)
    return picture_weight / (snr + 1 if prediction_type == "v_prediction" else snr)


def train_unet(
    unet,
    text_encoder,
    tokenizer,
    latents,
    captions,
    steps,
    batch,
    lr,
    seed,
    offset=0.0,
    min_snr=0.0,
    snr_floor=0.0,
    prediction_type="epsilon",
    layout_steps=0,
    layout_from=700,
    layout_share=0.0,
    ema_decay=0.0,
) -> None:
    from diffusers import DDPMScheduler

    noise_schedule = DDPMScheduler.from_config(make_scheduler(prediction_type).config)
    ids = tokenizer(captions, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
    ids = ids.input_ids
    empty = tokenizer([""], padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
    alphas_cumprod = noise_schedule.alphas_cumprod
    generator = torch.Generator().manual_seed(seed + 2)
    params = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.03)
    unet.train()
    text_encoder.train()
    ema = [p.detach().clone() for p in params] if ema_decay else None
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
        # The layout phase: the first steps see only the noisiest timesteps, where the words must place the shape
        # (a probe learnt left from right there in about 600 steps; spread over every timestep from the start, the
        # same budget learnt colours and shapes but no place).
        # After it, ``layout_share`` of each batch stays there, so that the place is not forgotten while shapes
        # are refined (4000 steps without it placed 65 % of shapes, 3000 steps 100 %).
        last = noise_schedule.config.num_train_timesteps
        low = layout_from if step < layout_steps else 0
        t = torch.randint(low, last, (batch,), generator=generator)
        kept = round(layout_share * batch) if step >= layout_steps else 0
        if kept:
            t[:kept] = torch.randint(layout_from, last, (kept,), generator=generator)
        noisy = noise_schedule.add_noise(x0, noise, t)
        context = text_encoder(tokens)[0]
        predicted = unet(noisy, t, encoder_hidden_states=context).sample
        target = noise_schedule.get_velocity(x0, noise, t) if prediction_type == "v_prediction" else noise
        loss = torch.nn.functional.mse_loss(predicted, target, reduction="none").mean(dim=(1, 2, 3))
        snr = alphas_cumprod[t] / (1 - alphas_cumprod[t])
        loss = (loss * loss_weights(snr, prediction_type, min_snr, snr_floor)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if ema is not None:
            # an exponential moving average of the weights, warmed up so that early steps do not dominate it
            decay = min(ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for averaged, param in zip(ema, params, strict=True):
                    averaged.lerp_(param, 1 - decay)
        average = loss.item() if average is None else 0.98 * average + 0.02 * loss.item()
        if step % 50 == 0 or step == steps - 1:
            log(f"unet step {step}/{steps} loss {average:.4f} ({time.perf_counter() - started:.0f} s)")
    if ema is not None:
        with torch.no_grad():
            for param, averaged in zip(params, ema, strict=True):
                param.copy_(averaged)
    unet.eval()
    text_encoder.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "models" / "toy-shapes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=8000, help="training pictures (drawn, then encoded once)")
    parser.add_argument("--vae-steps", type=int, default=6000)
    parser.add_argument("--vae-shape-weight", type=float, default=10.0, help="extra loss weight of shape pixels")
    parser.add_argument("--vae-batch", type=int, default=8)
    parser.add_argument("--unet-steps", type=int, default=6000)
    parser.add_argument("--unet-batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the text encoder and U-Net")
    parser.add_argument("--min-snr", type=float, default=5.0, help="min-SNR loss weighting's gamma (0: none)")
    parser.add_argument("--snr-floor", type=float, default=1.0, help="least loss weight of the noisiest steps")
    parser.add_argument("--prediction", choices=("epsilon", "v_prediction"), default="v_prediction")
    parser.add_argument("--layout-steps", type=int, default=600, help="first U-Net steps on the noisiest timesteps")
    parser.add_argument(
        "--layout-share", type=float, default=0.25, help="share of each later batch kept on the noisiest timesteps"
    )
    parser.add_argument("--ema", type=float, default=0.999, help="decay of the weights' moving average (0: none)")
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="save the trained VAE here, or reuse it if the file exists"
    )
    parser.add_argument("--offset-noise", type=float, default=0.1, help="per-channel noise offset (0: none)")
    parser.add_argument("--fp16", action="store_true", help="store the weights in half precision")
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

    vae_reused = bool(args.checkpoint and args.checkpoint.exists())
    if vae_reused:
        vae.load_state_dict(torch.load(args.checkpoint, weights_only=True))
        vae.eval()
        log(f"reused the VAE in {args.checkpoint}")
    else:
        train_vae(vae, images, args.vae_steps, args.vae_batch, 2e-3, args.seed, args.vae_shape_weight)
        if args.checkpoint:
            torch.save(vae.state_dict(), args.checkpoint)
    vae_done = time.perf_counter()

    latents = encode_pool(vae, images)
    scale = float(1.0 / latents.std())
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
        args.lr,
        args.seed,
        args.offset_noise,
        args.min_snr,
        args.snr_floor,
        args.prediction,
        args.layout_steps,
        layout_share=args.layout_share,
        ema_decay=args.ema,
    )
    unet_done = time.perf_counter()

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=make_scheduler(args.prediction),
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
        "vae_shape_weight": args.vae_shape_weight,
        "unet_steps": args.unet_steps,
        "unet_batch": args.unet_batch,
        "lr": args.lr,
        "min_snr": args.min_snr,
        "snr_floor": args.snr_floor,
        "prediction": args.prediction,
        "layout_steps": args.layout_steps,
        "layout_share": args.layout_share,
        "ema": args.ema,
        "offset_noise": args.offset_noise,
        "vae_reused_from": str(args.checkpoint) if vae_reused else None,
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
