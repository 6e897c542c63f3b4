"""Image-to-image feedback, per frame: the engine's img2img chain against a plain diffusers img2img loop.

The engine side is the model loaded by ``engine.models.load_model``, then an ``engine.runner.Runner`` on a job in
mode ``img2img`` (strength 0.5, no bends), starting from an init image: each frame is encoded from the previous
frame's image (kept in memory), noised to the strength, denoised, decoded and written as a PNG with its manifest
line. The diffusers side is one ``StableDiffusionImg2ImgPipeline.__call__`` per frame on the same weights loaded
diffusers' own way (see bench_txt2img.py), each output fed back as the next input, with the engine's per-frame
seeds (seed + i), strength, steps, guidance and prompt, and its image saved as a PNG at the engine's compression
level. The images are not identical: diffusers draws the img2img noise from the same generator right after the
VAE posterior sample, the engine from a fresh generator at the frame's seed.

Runs are interleaved, rotating which goes first; each figure is the median. Defaults: on the CPU,
tiny-random at 64x64, 20 DDIM steps (10 run per frame), CFG 7.5, 8 frames; with CUDA, the SD 1.5 architecture
with random weights, fp16, 512x512, 50 steps (25 run per frame).

    python bench/bench_img2img.py [--gpu | --cpu] [--model tiny-random|sd15-random|PATH] [--size N] [--steps N]
                                  [--strength 0.5] [--frames N] [--repeats N] [--threads N] [--profile]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from bench_txt2img import (
    PNG_LEVEL,
    PROFILE_KEYS,
    PROMPT,
    SEED,
    add_device_arguments,
    describe_model,
    diffusers_pipeline,
    interleaved,
    load_engine_model,
    machine,
    model_path,
    prepare_run,
    profile_breakdown,
    save_png,
    sync,
)
from PIL import Image

from engine.events import EventStream
from engine.job import parse_job
from engine.runner import Runner


def init_image(size: int) -> Image.Image:
    """A deterministic picture to start from: smooth colour gradients with some texture."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:size, 0:size] / size
    rgb = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * np.pi * x * y)], axis=-1) * 200 + rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_device_arguments(parser)
    parser.add_argument("--model", help="tiny-random (CPU default), sd15-random (CUDA default), or a model source")
    parser.add_argument("--size", type=int, help="width and height (64 on the CPU, 512 on CUDA)")
    parser.add_argument("--steps", type=int, help="DDIM steps before strength (20 on the CPU, 50 on CUDA)")
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile breakdown of one run of each")
    args = parser.parse_args()
    device, work = prepare_run(args, "img2img")
    path = model_path(args.model, device, work)
    model, load_s = load_engine_model(args.model, path, device)
    pipe, pipe_how = diffusers_pipeline(args.model, path, model, img2img=True)
    start = init_image(args.size)
    start.save(work / "init.png")
    names = [f"frame_{i + 1:05d}.png" for i in range(args.frames)]
    document = {
        "format": "diffusion-bender-job",
        "version": 1,
        "model": {"source": model.source, "device": device.type, "scheduler": "ddim", "threads": args.threads},
        "mode": "img2img",
        "width": args.size,
        "height": args.size,
        "steps": args.steps,
        "guidance": args.guidance,
        "seed": SEED,
        "prompts": [PROMPT],
        "img2img": {"init_image": str(work / "init.png")},
        "frames": [{"frame": i + 1, "strength": args.strength} for i in range(args.frames)],
    }

    def engine_run(round_: int) -> float:
        job = parse_job(document, work / f"engine-{round_}")
        started = time.perf_counter()
        Runner(job, EventStream(io.StringIO()), model=model).run()
        sync(device)
        return time.perf_counter() - started

    def diffusers_run(round_: int) -> float:
        folder = work / f"diffusers-{round_}"
        folder.mkdir()
        started = time.perf_counter()
        image = start
        for i, name in enumerate(names):
            generator = torch.Generator(device="cpu").manual_seed(SEED + i)
            image = pipe(
                PROMPT,
                image=image,
                strength=args.strength,
                num_inference_steps=args.steps,
                guidance_scale=args.guidance,
                generator=generator,
                output_type="pil",
            ).images[0]
            save_png(image, folder / name)
        sync(device)
        return time.perf_counter() - started

    times = interleaved({"engine": engine_run, "diffusers": diffusers_run}, args.repeats)
    engine_s, diffusers_s = statistics.median(times["engine"]), statistics.median(times["diffusers"])
    steps_run = int(args.steps * args.strength)
    print(
        f"img2img feedback: {describe_model(model)}, {args.size}x{args.size}, {args.steps} DDIM steps at "
        f"strength {args.strength:g} ({steps_run} run per frame), CFG {args.guidance:g}, prompt {PROMPT!r}, "
        f"{args.frames} frames from one init image, median of {args.repeats} interleaved runs"
    )
    print(f"  on {machine(device)}")
    print(
        "  engine: load_model() then Runner.run() on an img2img job, no bends (encode previous frame, noise, "
        "denoise, decode; PNG-encoded on the engine's thread pool, written with a manifest line, fsynced)"
    )
    print(
        f"  diffusers: {pipe_how}; pipe(prompt, image=previous output, generator=seed+i) per frame, saved as PNG "
        f"(compress_level {PNG_LEVEL}) on the same thread"
    )
    for name, seconds in (("engine img2img chain", engine_s), ("diffusers img2img loop", diffusers_s)):
        print(f"  {name:<40} {1000 * seconds / args.frames:8.1f} ms/frame  {args.frames / seconds:8.2f} frames/s")
    print(
        f"  ratio engine / diffusers frames per second: {diffusers_s / engine_s:.2f}x (goal >= 1: no slower) "
        f"(engine model load, once, untimed: {load_s:.2f} s)"
    )
    if args.profile:
        profile_breakdown("engine img2img", lambda: engine_run(1000), PROFILE_KEYS)
        profile_breakdown("diffusers img2img loop", lambda: diffusers_run(1001), PROFILE_KEYS)


if __name__ == "__main__":
    main()
