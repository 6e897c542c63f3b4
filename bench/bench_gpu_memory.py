"""Peak GPU memory by batch size: the SD 1.5 architecture at 512x512 in fp16 through the engine's sampler.

The model is loaded as the engine loads it (``engine.models.load_model``: channels-last U-Net and VAE). For each
batch size (1, 2, 4, 8, ... up to ``--max-batch`` or the first out-of-memory), one text-to-image batch runs
through ``engine.sampler.BentSampler`` (``txt2img`` with classifier-free guidance, so the U-Net sees twice the
batch, then ``decode``, which decodes 8 frames at a time), with the peak of ``torch.cuda.max_memory_allocated``
taken separately over the denoising loop and over the VAE decode, weights included. Memory does not depend on the
number of steps, so a few steps are enough; the seconds per frame printed beside are for those steps only. Random
weights take exactly the memory trained ones do. Without CUDA it prints one line and exits 0.

    python bench/bench_gpu_memory.py [--max-batch 32] [--steps 3] [--size 512]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--guidance", type=float, default=7.5)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu memory: not measured: this benchmark needs a CUDA GPU, and torch sees none on this machine")
        return
    from bench_txt2img import PROMPT, SD15_RANDOM, SEED, load_engine_model, machine, model_path

    from engine.conditioning import PromptBank
    from engine.noise import circular_walk, noise_fields, paper_phases
    from engine.sampler import BentSampler
    from engine.stack import BendStack

    warnings.filterwarnings("ignore", message="invalid value encountered in cast")
    device = torch.device("cuda")
    with tempfile.TemporaryDirectory(prefix="bench-gpu-memory-") as work:
        model, _ = load_engine_model(SD15_RANDOM, model_path(SD15_RANDOM, device, Path(work)), device)
    torch.cuda.synchronize()
    weights = torch.cuda.memory_allocated()
    bank = PromptBank(model.tokenizer, model.text_encoder, [PROMPT])
    sampler = BentSampler(model, BendStack([]), steps=args.steps, guidance=args.guidance, uncond=bank.encode([""]))
    factor = model.vae_scale_factor
    a, b = noise_fields(SEED, (model.latent_channels, args.size // factor, args.size // factor))
    total = torch.cuda.get_device_properties(device).total_memory
    print(
        f"gpu memory: SD 1.5 architecture (random weights), fp16, {args.size}x{args.size}, CFG "
        f"{args.guidance:g} (U-Net batch = 2 x frames), engine BentSampler.txt2img + decode, no bends"
    )
    print(
        f"  on {machine(device)}; weights {weights / 2**30:.2f} GiB; peaks below are allocated memory, weights included"
    )
    print(
        f"  {'batch':>5}  {'denoise peak':>12}  {'decode peak':>11}  {'reserved':>9}  {'of card':>7}  "
        f"{'s/frame, ' + str(args.steps) + ' steps':>18}"
    )
    sampler.decode(sampler.txt2img(circular_walk(a, b, [0.0]), bank.mix([[1.0]]), {}, seed=SEED))  # warm-up
    batch = 1
    while batch <= args.max_batch:
        try:
            torch.cuda.empty_cache()
            noise = circular_walk(a, b, paper_phases(batch))
            cond = bank.mix([[1.0]] * batch)
            torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            latents = sampler.txt2img(noise, cond, {}, seed=SEED)
            torch.cuda.synchronize()
            denoise_peak = torch.cuda.max_memory_allocated()
            reserved = torch.cuda.max_memory_reserved()
            torch.cuda.reset_peak_memory_stats()
            sampler.decode(latents)
            torch.cuda.synchronize()
            seconds = (time.perf_counter() - started) / batch
            decode_peak = torch.cuda.max_memory_allocated()
            reserved = max(reserved, torch.cuda.max_memory_reserved())
        except torch.cuda.OutOfMemoryError:
            print(f"  {batch:>5}  out of memory")
            break
        peak = max(denoise_peak, decode_peak)
        print(
            f"  {batch:>5}  {denoise_peak / 2**30:8.2f} GiB  {decode_peak / 2**30:7.2f} GiB  "
            f"{reserved / 2**30:5.2f} GiB  {100 * peak / total:6.1f}%  {seconds:18.3f}"
        )
        del latents
        batch *= 2


if __name__ == "__main__":
    main()
