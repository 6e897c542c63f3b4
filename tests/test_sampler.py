"""The bent sampler: layer semantics against diffusers' own pipeline, batching, img2img step counts, U-Net hooks."""

from __future__ import annotations

import pytest
import torch

from engine.bends import Bend, ParamBatch
from engine.noise import circular_walk, noise_fields
from engine.sampler import BentSampler
from engine.stack import BendStack, HookState, PlacedBend, Placement

STEPS = 4
GUIDANCE = 7.5


def _embeddings(model, prompts):
    from engine.conditioning import PromptBank

    bank = PromptBank(model.tokenizer, model.text_encoder, prompts)
    return bank, bank.encode([""])


def _sampler(model, placed=(), **kwargs):
    bank, uncond = _embeddings(model, ["a floating orb"])
    sampler = BentSampler(model, BendStack(list(placed)), steps=STEPS, guidance=GUIDANCE, uncond=uncond, **kwargs)
    return sampler, bank.mix([[1.0]])


def _noise(model, n=1):
    a, b = noise_fields(46, (4, 16, 16))
    return circular_walk(a, b, [0.7 * i for i in range(n)])


def _diffusers_reference(model, noise, cond, uncond, layer: int | None, bend):
    """What the notes define: layer 0 is the initial latents, layer k ≥ 1 the latents handed back from
    callback_on_step_end after step k-1 (so layer S is the final latent before decoding)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=model.vae,
        text_encoder=model.text_encoder,
        tokenizer=model.tokenizer,
        unet=model.unet,
        scheduler=model.scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)

    def callback(pipe, i, t, tensors):
        if layer is not None and i + 1 == layer:
            tensors["latents"] = bend(tensors["latents"])
        return tensors

    latents = bend(noise) if layer == 0 else noise
    return pipe(
        prompt_embeds=cond,
        negative_prompt_embeds=uncond,
        latents=latents,
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        output_type="latent",
        callback_on_step_end=callback,
        callback_on_step_end_tensor_inputs=["latents"],
    ).images


def test_unbent_sampler_equals_diffusers(tiny_model):
    sampler, cond = _sampler(tiny_model)
    noise = _noise(tiny_model)
    ours = sampler.txt2img(noise, cond, {}, seed=46)
    reference = _diffusers_reference(tiny_model, noise, cond, sampler.uncond, None, lambda x: x)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", [0, 1, 2, STEPS - 1, STEPS, STEPS + 10])
def test_latent_layer_k_bends_the_input_of_step_k(tiny_model, layer):
    r = 0.8
    placed = [PlacedBend(Bend(name="add", op="add"), Placement(latent_layer=layer))]
    sampler, cond = _sampler(tiny_model, placed)
    noise = _noise(tiny_model)
    ours = sampler.txt2img(noise, cond, {"add": ParamBatch((r,))}, seed=46)
    # Any layer ≥ S bends the final latent, as in the authors' code.
    reference = _diffusers_reference(tiny_model, noise, cond, sampler.uncond, min(layer, STEPS), lambda x: x + r)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    unbent = _diffusers_reference(tiny_model, noise, cond, sampler.uncond, None, lambda x: x)
    assert not torch.allclose(ours, unbent, atol=1e-3)


def test_a_stack_applies_in_order(tiny_model):
    placed = [
        PlacedBend(Bend(name="add", op="add"), Placement(latent_layer=STEPS)),
        PlacedBend(Bend(name="mul", op="multiply"), Placement(latent_layer=STEPS)),
    ]
    sampler, cond = _sampler(tiny_model, placed)
    noise = _noise(tiny_model)
    ours = sampler.txt2img(noise, cond, {"add": ParamBatch((1.0,)), "mul": ParamBatch((3.0,))}, seed=46)
    unbent = _sampler(tiny_model)[0].txt2img(noise, cond, {}, seed=46)
    torch.testing.assert_close(ours, (unbent + 1.0) * 3.0)


def test_batched_frames_equal_frames_rendered_alone(tiny_model):
    placed = [
        PlacedBend(Bend(name="rot", op="rotate_r1"), Placement(latent_layer=1)),
        PlacedBend(Bend(name="mid", op="multiply"), Placement(unet_target="mid_block", step_start=0, step_end=2)),
    ]
    sampler, _ = _sampler(tiny_model, placed)
    bank, _ = _embeddings(tiny_model, ["a floating orb", "a gorgeous landscape"])
    weights = [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    angles, gains = (0.0, 1.5, 3.0), (1.0, 0.5, 2.0)
    noise = _noise(tiny_model, 3)
    batched = sampler.txt2img(noise, bank.mix(weights), {"rot": ParamBatch(angles), "mid": ParamBatch(gains)}, seed=46)
    for i in range(3):
        alone = sampler.txt2img(
            noise[i : i + 1],
            bank.mix([weights[i]]),
            {"rot": ParamBatch((angles[i],)), "mid": ParamBatch((gains[i],))},
            seed=46,
        )
        torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(batched[0], batched[1], atol=1e-2)


@pytest.mark.parametrize(("steps", "strength", "expected"), [(10, 0.5, 5), (50, 0.5, 25), (10, 1.0, 10), (10, 0.0, 0)])
def test_img2img_layers_count_the_steps_that_run(tiny_model, steps, strength, expected):
    seen: list[tuple[int, int]] = []
    final = PlacedBend(Bend(name="final", op="ablate"), Placement(latent_layer=expected))
    bank, uncond = _embeddings(tiny_model, ["a floating orb"])
    sampler = BentSampler(
        tiny_model,
        BendStack([final]),
        steps=steps,
        guidance=GUIDANCE,
        uncond=uncond,
        on_step=lambda step, total: seen.append((step, total)),
    )
    clean = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    out = sampler.img2img(clean, bank.mix([[1.0]]), {"final": ParamBatch((0.0,))}, strength, seed=47)
    assert [s for s, _ in seen] == list(range(1, expected + 1))
    assert all(total == expected for _, total in seen)
    # Layer S is the final latent: ablating it there leaves exactly zeros.
    assert torch.count_nonzero(out) == 0


def test_no_unet_bend_registers_no_hook(tiny_model):
    def hook_count():
        return sum(len(m._forward_hooks) for m in tiny_model.unet.modules())

    before = hook_count()
    with BendStack([PlacedBend(Bend(name="a", op="add"), Placement(latent_layer=0))]).unet_hooks(
        tiny_model.unet, HookState()
    ):
        assert hook_count() == before
    stack = BendStack([PlacedBend(Bend(name="m", op="add"), Placement(unet_target="mid_block"))])
    with stack.unet_hooks(tiny_model.unet, HookState()):
        assert hook_count() == before + 1
    assert hook_count() == before


def test_unet_hooks_are_active_only_in_their_step_range(tiny_model):
    placed = PlacedBend(Bend(name="off", op="ablate"), Placement(unet_target="conv_out", step_start=2, step_end=3))
    state = HookState(params={"off": ParamBatch((0.0,))})
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    cond = torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode(), BendStack([placed]).unet_hooks(tiny_model.unet, state):
        for step, expect_zero in [(1, False), (2, True), (3, False)]:
            state.step = step
            out = tiny_model.unet(x, 500, encoder_hidden_states=cond).sample
            assert (torch.count_nonzero(out) == 0) == expect_zero, step


UNET_TARGETS = ["conv_in", "down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.0", "up_blocks.1"]


@pytest.mark.parametrize("target", UNET_TARGETS)
def test_every_unet_target_changes_the_output(tiny_model, target):
    from engine.selection import Selection

    # A uniform scale would vanish in the GroupNorm after up_blocks.1; a sparse add cannot.
    sparse = Selection(kind="random", fraction=0.5, seed=1)
    placed = PlacedBend(Bend(name="t", op="add", selection=sparse), Placement(unet_target=target))
    state = HookState(params={"t": ParamBatch((3.0,))})
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    cond = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        plain = tiny_model.unet(x, 500, encoder_hidden_states=cond).sample
        with BendStack([placed]).unet_hooks(tiny_model.unet, state):
            bent = tiny_model.unet(x, 500, encoder_hidden_states=cond).sample
    assert not torch.allclose(plain, bent, atol=1e-4)


def test_stop_request_stops_within_a_step(tiny_model):
    from engine.errors import RenderCancelled

    calls = []
    sampler, cond = _sampler(tiny_model, should_stop=lambda: len(calls) >= 2, on_step=lambda s, n: calls.append(s))
    with pytest.raises(RenderCancelled):
        sampler.txt2img(_noise(tiny_model), cond, {}, seed=46)
    assert calls == [1, 2]
