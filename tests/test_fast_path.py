"""The fast path: any scheduler (few-step ones included), guidance-distilled models, memory modes, batch sizing."""

from __future__ import annotations

import pytest
import torch

from engine.bends import Bend, ParamBatch
from engine.catalog import SCHEDULER_ALIASES
from engine.conditioning import PromptBank
from engine.models import Model, auto_batch_size, load_model, make_scheduler
from engine.sampler import BentSampler, guidance_embedding
from engine.stack import BendStack, PlacedBend, Placement

STEPS = 4


def _render(model, stack=(), params=None, steps=STEPS, guidance=7.5, on_step=None):
    bank = PromptBank(model.tokenizer, model.text_encoder, ["a floating orb"])
    sampler = BentSampler(
        model, BendStack(list(stack)), steps=steps, guidance=guidance, uncond=bank.encode([""]), on_step=on_step
    )
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    return sampler, sampler.txt2img(noise, bank.mix([[1.0]]), params or {}, seed=46)


@pytest.mark.parametrize("name", list(SCHEDULER_ALIASES))
def test_every_scheduler_keeps_the_layer_semantics(tiny_model, name):
    model = Model(**{**vars(tiny_model), "scheduler": make_scheduler(name, tiny_model.scheduler.config)})
    steps_seen: list[int] = []
    final = PlacedBend(Bend(name="final", op="ablate"), Placement(latent_layer=10_000))
    _, out = _render(model, [final], {"final": ParamBatch((0.0,))}, on_step=lambda s, n: steps_seen.append(n))
    runs = len(model.scheduler.timesteps)
    assert steps_seen == [runs] * runs and runs >= STEPS
    assert torch.count_nonzero(out) == 0  # layer S, whatever S is for this scheduler, is the final latent
    _, unbent = _render(model)
    assert torch.isfinite(unbent).all() and unbent.abs().sum() > 0


def test_guidance_embedding_matches_the_lcm_training_embedding():
    from diffusers import LatentConsistencyModelPipeline

    for scale, dim in ((8.0, 256), (1.5, 255), (4.0, 64)):
        ref = LatentConsistencyModelPipeline.get_guidance_scale_embedding(
            None, torch.tensor([scale - 1]), embedding_dim=dim, dtype=torch.float32
        )
        torch.testing.assert_close(guidance_embedding(scale, dim, 1, torch.float32), ref, rtol=0, atol=0)


def test_a_guidance_distilled_unet_runs_one_branch_with_the_embedded_scale(tiny_model):
    from diffusers import UNet2DConditionModel

    # Private keys such as _use_default_values would reset time_cond_proj_dim to its default.
    config = {k: v for k, v in tiny_model.unet.config.items() if not k.startswith("_")}
    config["time_cond_proj_dim"] = 16
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(config).eval()
    model = Model(**{**vars(tiny_model), "unet": unet, "scheduler": make_scheduler("lcm", tiny_model.scheduler.config)})
    batches: list[int] = []
    unet.register_forward_pre_hook(lambda module, args, kwargs: batches.append(args[0].shape[0]), with_kwargs=True)
    sampler, low = _render(model, guidance=1.5)
    assert not sampler.uses_guidance and batches == [1] * STEPS
    _, high = _render(model, guidance=8.0)
    assert not torch.allclose(low, high)  # the scale reaches the model through timestep_cond


def test_low_memory_mode_gives_the_same_frames(tiny_model):
    low = load_model("tiny-random", device="cpu", memory="low")
    assert low.vae.use_tiling
    _, normal_out = _render(tiny_model)
    _, low_out = _render(low)
    torch.testing.assert_close(low_out, normal_out, atol=1e-4, rtol=1e-4)


def test_compile_is_opt_in():
    assert load_model("tiny-random", device="cpu").unet._compiled_call_impl is None
    assert load_model("tiny-random", device="cpu", compile_unet=True).unet._compiled_call_impl is not None


def test_auto_batch_size_follows_free_gpu_memory(tiny_model, monkeypatch):
    assert auto_batch_size(tiny_model, 512, 512) == 1  # off the GPU
    gpu = Model(**{**vars(tiny_model), "device": torch.device("cuda"), "dtype": torch.float16})
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * 10**9, 80 * 10**9))
    assert auto_batch_size(gpu, 512, 512) == 8
    assert auto_batch_size(gpu, 1024, 1024) == 2
    assert auto_batch_size(gpu, 4096, 4096) == 1
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (70 * 10**9, 80 * 10**9))
    assert auto_batch_size(gpu, 256, 256) == 16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="channels-last placement applies on CUDA only")
def test_cuda_placement_is_half_precision_and_channels_last():
    model = load_model("tiny-random")
    assert model.dtype == torch.float16
    weight = model.unet.conv_in.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
