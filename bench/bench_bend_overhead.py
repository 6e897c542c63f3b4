"""Overhead of bending: the same frames with no bend, with latent bends, and with a U-Net hook.

Runs are interleaved (none, latent, hook, none, latent, hook, ...) so that load on this shared machine hits all
three alike, and each figure is the median of its runs. Prints the ratios to the unbent time.

Each run is one frame through the engine's ``BentSampler`` (prompt and negative encoded once, as the model's family
encodes them), decoded by the VAE. ``--model`` is any source the engine loads, or one of bench_txt2img's generated
models (random weights written to a temporary folder): ``sd15-random``, ``sdxl-random`` (the full SDXL 1.0 base
architecture; defaults 1024x1024, 30 steps), ``sdxl-tiny`` (the tiny SDXL, to check the SDXL path on a CPU). The
U-Net hook is on ``mid_block``, which every family has.

    python bench/bench_bend_overhead.py [--model tiny-random|sd15-random|sdxl-random|sdxl-tiny|PATH] [--size N]
                                        [--steps N] [--repeats 7] [--device auto|cpu|cuda]
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from bench_txt2img import CPU_REFUSED, GENERATED, PROMPT, SDXL_RANDOM, SEED, model_path, quiet_progress_bars

from engine.bends import Bend, ParamBatch
from engine.conditioning import PromptBank
from engine.errors import ModelError
from engine.models import load_model, pick_device
from engine.noise import circular_walk, noise_fields
from engine.sampler import BentSampler
from engine.selection import Selection
from engine.stack import BendStack, PlacedBend, Placement

CONFIGS = {
    "no bend": [],
    "latent bends (R1 at layer 0, add to 5% at layer 10)": [
        PlacedBend(Bend(name="rot", op="rotate_r1"), Placement(latent_layer=0)),
        PlacedBend(
            Bend(name="add", op="add", selection=Selection(kind="random", fraction=0.05)), Placement(latent_layer=10)
        ),
    ],
    "U-Net hook (add on mid_block, every step)": [
        PlacedBend(Bend(name="mid", op="add"), Placement(unet_target="mid_block")),
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-random", help="tiny-random, sd15-random, sdxl-random, sdxl-tiny, PATH")
    parser.add_argument("--size", type=int, help="width and height (64; 1024 for sdxl-random)")
    parser.add_argument("--steps", type=int, help="DDIM steps (20; 30 for sdxl-random)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    native = args.model == SDXL_RANDOM  # SDXL renders broken images below its native size
    args.size = args.size or (1024 if native else 64)
    args.steps = args.steps or (30 if native else 20)

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="invalid value encountered in cast")  # random fp16 weights: NaNs
    quiet_progress_bars()
    work = Path(tempfile.mkdtemp(prefix="bench-bend-overhead-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    try:
        device = pick_device(args.device)
    except ModelError as exc:
        sys.exit(f"--device: {exc}")
    if native and device.type == "cpu":
        sys.exit(CPU_REFUSED)
    model = load_model(model_path(args.model, device, work), device=args.device)
    model.source = args.model
    bank = PromptBank.for_model(model, [PROMPT])
    cond = bank.mixed([[1.0]])
    uncond = model.family.negative(model, bank.conditioning, "")  # SDXL: zeros, as diffusers' pipeline does
    factor = model.vae_scale_factor
    a, b = noise_fields(SEED, (model.latent_channels, args.size // factor, args.size // factor))
    noise = circular_walk(a, b, [0.5])
    params = {"rot": ParamBatch((1.0,)), "add": ParamBatch((0.5,)), "mid": ParamBatch((0.1,))}
    # "clamp" costs what the engine's default "error" costs while values stay finite (the same check per bend), and
    # random weights must not stop the run if they ever overflow; finiteness is reported below instead
    samplers = {
        name: BentSampler(model, BendStack(placed, nonfinite="clamp"), steps=args.steps, guidance=7.5, uncond=uncond)
        for name, placed in CONFIGS.items()
    }

    def render(sampler: BentSampler) -> float:
        started = time.perf_counter()
        sampler.decode(sampler.txt2img(noise, cond, params, seed=SEED))
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    for sampler in samplers.values():  # warm-up
        render(sampler)
    unbent = samplers["no bend"].txt2img(noise, cond, params, seed=SEED)
    finite = bool(torch.isfinite(unbent).all())
    times: dict[str, list[float]] = {name: [] for name in samplers}
    for _ in range(args.repeats):
        for name, sampler in samplers.items():
            times[name].append(render(sampler))

    base = statistics.median(times["no bend"])
    print(
        f"bend overhead: {GENERATED.get(args.model, args.model)} {args.size}x{args.size}, {args.steps} DDIM steps, "
        f"CFG 7.5, {model.device.type} {str(model.dtype).replace('torch.', '')}, median of {args.repeats} "
        "interleaved runs"
    )
    if not finite:
        print("  note: the unbent latents are not finite (random weights): the bent rows include the clamp's repairs")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<55} {median * 1000:8.1f} ms/frame   ratio {median / base:5.3f}")


if __name__ == "__main__":
    main()
