"""Overhead of a LoRA per U-Net step: the same guided step (batch 2) without a LoRA and with one, side by side.

The LoRA is random, rank 32, on every Linear and Conv2d inside the U-Net's transformer blocks (attention q/k/v/out,
feed-forward, proj_in/proj_out: what kohya's default LoRA network adapts), applied by the engine's per-sample hooks
(engine/lora.py) rather than merged into the weights. "mixed" is a batch whose frames have different weights, one
of them 0 (the path that keeps a weight-0 frame exactly unchanged). For reference, the same LoRA loaded by diffusers
(``load_lora_adapter`` + ``set_adapters``: PEFT layers, unmerged) runs on a copy of the U-Net.

Runs are interleaved (base, LoRA, mixed, reference, base, ...) and each figure is the median of the process's CPU
time per step, which other processes on a shared machine do not inflate: run it with one thread.

    OMP_NUM_THREADS=1 python bench/bench_lora.py [--model tiny-random|sd15-random] [--size 64] [--repeats 5]

``sd15-random`` is the full SD 1.5 U-Net architecture (engine/model_configs/sd-v1) with random weights: it costs
what the trained one costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from engine.bends import ParamBatch
from engine.lora import LoraSet, LoraSpec, fit_lora

RANK = 32


def build_unet(model: str) -> torch.nn.Module:
    if model == "tiny-random":
        from engine.tiny_random import build_tiny_components

        return build_tiny_components()["unet"]
    from diffusers import UNet2DConditionModel

    from engine.models import SINGLE_FILE_CONFIG

    torch.manual_seed(0)
    return UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SINGLE_FILE_CONFIG / "unet"))


def random_lora(unet: torch.nn.Module) -> LoraSet:
    """A kohya-layout LoRA on the transformer blocks, fitted as a job's LoRA is."""
    generator = torch.Generator().manual_seed(1)
    tensors = {}
    for name, module in unet.named_modules():
        if ".transformer_blocks." not in f".{name}." and not name.endswith(("proj_in", "proj_out")):
            continue
        if not isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
            continue
        key = "lora_unet_" + name.replace(".", "_")
        if isinstance(module, torch.nn.Linear):
            down = torch.randn(RANK, module.in_features, generator=generator)
            up = torch.randn(module.out_features, RANK, generator=generator)
        else:
            down = torch.randn(RANK, module.in_channels, *module.kernel_size, generator=generator)
            up = torch.randn(module.out_channels, RANK, 1, 1, generator=generator)
        tensors |= {f"{key}.lora_down.weight": down * 0.01, f"{key}.lora_up.weight": up * 0.01}
        tensors[f"{key}.alpha"] = torch.tensor(float(RANK))
    lora = fit_lora(LoraSpec("style", Path("style.safetensors")), tensors, {}, {"unet": unet})
    return LoraSet([lora])


def peft_unet(unet: torch.nn.Module, loras: LoraSet) -> torch.nn.Module | None:
    """A copy of the U-Net with the same LoRA loaded by diffusers (PEFT layers, unmerged), for reference; None when
    peft (a dev dependency) is missing."""
    try:
        import peft  # noqa: F401
    except ImportError:
        return None
    import copy

    layers = loras.loras[0].layers["unet"]
    state = {}
    for layer in layers:
        down, up = layer.down, layer.up
        state |= {f"{layer.path}.lora_A.weight": down, f"{layer.path}.lora_B.weight": up}
    metadata = {"r": RANK, "lora_alpha": RANK, "target_modules": [layer.path for layer in layers]}  # alpha/rank 1
    other = copy.deepcopy(unet)
    other.load_lora_adapter(state, prefix=None, adapter_name="style", metadata=metadata)
    other.set_adapters(["style"], [0.8])
    return other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-random", choices=("tiny-random", "sd15-random"))
    parser.add_argument("--size", type=int, default=0, help="image side in pixels (default: 64 tiny, 256 SD 1.5)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    size = args.size or (64 if args.model == "tiny-random" else 256)

    unet = build_unet(args.model).eval().requires_grad_(False)
    loras = random_lora(unet)
    layers = sum(len(lora.layers.get("unet", ())) for lora in loras.loras)
    side = size // 8
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, unet.config.in_channels, side, side, generator=generator)
    states = torch.randn(2, 77, unet.config.cross_attention_dim, generator=generator)
    t = torch.tensor(500)
    weights = {
        "base (no LoRA)": None,
        "LoRA at 0.8": {"style": ParamBatch((0.8,))},  # one frame: both guidance halves get 0.8
        "mixed batch (0 and 0.8)": {"style": ParamBatch((0.0, 0.8))},
    }

    reference = peft_unet(unet, loras)
    if reference is not None:
        weights["diffusers' PEFT LoRA at 0.8"] = "peft"

    def step(name: str) -> float:
        started = time.process_time()
        with torch.inference_mode():
            if weights[name] == "peft":
                reference(x, t, encoder_hidden_states=states)
            elif weights[name] is None:
                unet(x, t, encoder_hidden_states=states)
            else:
                with loras.hooks("unet", unet, weights[name]):
                    unet(x, t, encoder_hidden_states=states)
        return time.process_time() - started

    for name in weights:  # warm-up
        step(name)
    if reference is not None:  # the reference must compute what the engine computes, or its time means nothing
        with torch.inference_mode(), loras.hooks("unet", unet, weights["LoRA at 0.8"]):
            ours = unet(x, t, encoder_hidden_states=states).sample
        with torch.inference_mode():
            theirs = reference(x, t, encoder_hidden_states=states).sample
        print(f"engine vs diffusers' PEFT output: max difference {(ours - theirs).abs().max().item():.2e}")
    times: dict[str, list[float]] = {name: [] for name in weights}
    for _ in range(args.repeats):
        for name in weights:
            times[name].append(step(name))
    base = statistics.median(times["base (no LoRA)"])
    print(
        f"LoRA overhead per U-Net step: {args.model} at {size}x{size} (latent {side}x{side}), batch 2 (one guided "
        f"frame), rank {RANK} on {layers} layers, {torch.get_num_threads()} thread(s), median CPU time of "
        f"{args.repeats}"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:29s} {median * 1000:9.1f} ms   {median / base:5.3f}x")


if __name__ == "__main__":
    main()
