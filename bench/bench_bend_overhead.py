"""Overhead of bending: the same frames with no bend, with latent bends, and with a U-Net hook.

Runs are interleaved (none, latent, hook, none, latent, hook, ...) so that load on this shared machine hits all
three alike, and each figure is the median of its runs. Prints the ratios to the unbent time.

    python bench/bench_bend_overhead.py [--model tiny-random] [--size 64] [--steps 20] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from engine.bends import Bend, ParamBatch
from engine.conditioning import PromptBank
from engine.models import load_model
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
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    model = load_model(args.model, device=args.device)
    bank = PromptBank(model.tokenizer, model.text_encoder, ["a floating orb"])
    cond, uncond = bank.mix([[1.0]]), bank.encode([""])
    factor = model.vae_scale_factor
    a, b = noise_fields(46, (model.latent_channels, args.size // factor, args.size // factor))
    noise = circular_walk(a, b, [0.5])
    params = {"rot": ParamBatch((1.0,)), "add": ParamBatch((0.5,)), "mid": ParamBatch((0.1,))}
    samplers = {
        name: BentSampler(model, BendStack(placed), steps=args.steps, guidance=7.5, uncond=uncond)
        for name, placed in CONFIGS.items()
    }

    def render(sampler: BentSampler) -> float:
        started = time.perf_counter()
        sampler.decode(sampler.txt2img(noise, cond, params, seed=46))
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    for sampler in samplers.values():  # warm-up
        render(sampler)
    times: dict[str, list[float]] = {name: [] for name in samplers}
    for _ in range(args.repeats):
        for name, sampler in samplers.items():
            times[name].append(render(sampler))

    base = statistics.median(times["no bend"])
    print(
        f"bend overhead: {args.model} {args.size}x{args.size}, {args.steps} DDIM steps, CFG 7.5, "
        f"{model.device.type} {str(model.dtype).replace('torch.', '')}, median of {args.repeats} interleaved runs"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<55} {median * 1000:8.1f} ms/frame   ratio {median / base:5.3f}")


if __name__ == "__main__":
    main()
