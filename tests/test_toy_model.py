"""The toy model (``toy-shapes``, trained by scripts/toy_model/): pictures that mean something, so tests can check
what prompts and bends do to them. Every picture renders through the engine's job runner, as a render would.

Thresholds are loose on purpose: they say what a person would see (a blue sky, fewer colours), not exact pixels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.catalog import TOY_SHAPES
from scripts.toy_model import adherence, scenes

STEPS = 20
# Measured on the shipped model (scripts/toy_model/adherence.py, 4 seeds × 12 held-out prompts): the caption's colour
# 100 % (chance 1 in 7), shape 100 % (chance 1 in 5), place 100 % (chance 1 in 5), sky 100 % (chance 1 in 3), ground
# 12 %; all of a caption 85 %, where the issue aims for 80 %. At this test's seeds 0 and 1: colour, shape, place and
# sky 100 %, ground 0 %. The floors guard what works.
COLOUR_FLOOR = 0.8
SHAPE_FLOOR = 0.7
PLACE_FLOOR = 0.8
SKY_FLOOR = 0.75
# Two seeds' pictures of one held-out prompt differ by 4.4 at least and 11.9 on average (mean absolute difference,
# 0-255), where the generator's own pictures of a caption differ by 10-13.
SEED_DIFFERENCE = 1.0
# The model repairs early bends on its own prompt; late ones show. A threshold on the last latent but one leaves a
# two-level latent: fewer colours (seeds 0-3: 49 → 31, 55 → 31, 68 → 33, 35 → 23).
THRESHOLD_LAYER = 19
THRESHOLD_RATIO = 0.75
# R1 by π recolours "a red floating orb" (the chroma of its bright pixels) 0-0.06 at layer 4, 0.14-0.22 at layer 12
# and 0.53-0.56 at layer 16 (seeds 0-3): the later it acts, the less the model restores the colour the prompt asked
# for.
ROTATION_LAYERS = (4, 16)
ROTATION_SHIFT = 0.25
# The demo's R1 (scripts/demo.py: layer 10 of 20) by π recolours "a floating orb" (any colour) 0.25-0.91 at seeds
# 0-3 (0.49 and 0.71 at seeds 0 and 1); at layer 0 the same turn of the starting noise gives an orb of another colour
# at three seeds (0.04-0.65).
DEMO_ORB_SHIFT = 0.3
GUIDANCE = 5.0


@pytest.fixture(scope="module")
def toy_model():
    from engine.models import load_model

    return load_model(TOY_SHAPES, device="cpu")


def render(folder: Path, model, prompts: list[str], frames: list[dict], bends: list[dict] | None = None, seed: int = 0):
    """The frames' pictures as uint8 (H, W, 3), rendered by the engine's runner from a job document."""
    from engine.events import EventStream
    from engine.job import load_job
    from engine.runner import Runner

    document = adherence.job_document(TOY_SHAPES, prompts, seed, STEPS, GUIDANCE)
    document["frames"] = [{"frame": i, "phase": 0.0, **frame} for i, frame in enumerate(frames)]
    document["bends"] = bends or []
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    runner = Runner(load_job(path), EventStream(None), model=model)
    runner.run()
    return [runner.store.read(i) for i in range(len(frames))]


def distinct_colours(image: np.ndarray, levels: int = 8, min_pixels: int = 4) -> int:
    """Colours in use after quantising each channel to ``levels`` steps (ignoring a few stray pixels)."""
    q = (image.astype(np.int64) * levels // 256).reshape(-1, 3)
    codes = q[:, 0] * levels * levels + q[:, 1] * levels + q[:, 2]
    return int((np.bincount(codes) >= min_pixels).sum())


def test_the_model_loads_by_name_as_an_sd_folder(toy_model):
    assert toy_model.latent_channels == 4
    assert toy_model.vae_scale_factor == 4
    ids = toy_model.tokenizer(["a red ring", "a blue ring"]).input_ids
    assert ids[0] != ids[1]  # the tokenizer tells colour words apart (a word vocabulary without merges would not)


@pytest.fixture(scope="module")
def held_out_pictures(toy_model, tmp_path_factory):
    """Every held-out prompt (combinations training never showed) at seeds 0 and 1, one job per seed."""
    held_out = scenes.held_out_scenes()
    prompts = [s.caption for s in held_out]
    one_hot = [{"prompt_weights": [float(i == j) for j in range(len(prompts))]} for i in range(len(prompts))]
    folder = tmp_path_factory.mktemp("held-out")
    return held_out, {seed: render(folder / f"s{seed}", toy_model, prompts, one_hot, seed=seed) for seed in (0, 1)}


def held_out_criteria(held_out_pictures) -> dict[str, float]:
    held_out, by_seed = held_out_pictures
    verdicts = [adherence.check(scene, by_seed[seed][i]) for seed in by_seed for i, scene in enumerate(held_out)]
    return {name: passed / total for name, (passed, total) in adherence.criteria_rates(verdicts).items()}


def test_the_checker_reads_the_generators_own_shapes():
    """The shape criterion names the shape of every picture the generator draws (colours, places, sizes, turns)."""
    rng = np.random.default_rng(5)
    colours, places, sizes = list(scenes.COLOURS), list(scenes.POSITIONS), list(scenes.SIZES)
    for i in range(40):
        scene = scenes.Scene("", "shape", colour=colours[i % 7], shape=scenes.SHAPES[i % 5], position=places[i // 8])
        image = scenes.draw_scene(scene, rng, size=sizes[i % 3])
        assert adherence.check(scene, image).ok, (scene, adherence.check(scene, image).reason)
    # A blob where the caption says star is refused on its shape, not on its colour or place.
    orb = scenes.draw_scene(scenes.Scene("", "shape", colour="red", shape="orb", position="on the left"), rng)
    verdict = adherence.check(scenes.Scene("", "shape", colour="red", shape="star", position="on the left"), orb)
    assert dict(verdict.criteria) == {"colour": True, "shape": False, "place": True}, verdict


def test_held_out_prompts_get_their_colour_shape_place_and_sky(held_out_pictures):
    rates = held_out_criteria(held_out_pictures)
    assert set(rates) == {"colour", "shape", "place", "sky", "ground"}
    assert rates["colour"] >= COLOUR_FLOOR, rates  # chance: 1 in 7
    assert rates["shape"] >= SHAPE_FLOOR, rates  # chance: 1 in 5
    assert rates["place"] >= PLACE_FLOOR, rates  # chance: 1 in 5
    assert rates["sky"] >= SKY_FLOOR, rates  # chance: 1 in 3


@pytest.mark.xfail(strict=True, reason="the toy model draws the ground of an unseen landscape badly")
def test_held_out_landscapes_get_their_ground(held_out_pictures):
    assert held_out_criteria(held_out_pictures)["ground"] >= 0.6


def test_seeds_give_different_pictures(held_out_pictures):
    held_out, by_seed = held_out_pictures
    differences = [np.abs(by_seed[0][i].astype(float) - by_seed[1][i]).mean() for i in range(len(held_out))]
    assert min(differences) > SEED_DIFFERENCE, "two seeds gave (nearly) the same picture"


def test_a_landscape_has_a_blue_sky_above_its_ground(toy_model, tmp_path):
    (image,) = render(tmp_path, toy_model, ["a gorgeous landscape"], [{}])
    sky, _ = adherence.landscape_parts(image, "day")
    assert sky == "day"
    top, bottom = image[:16].astype(float).mean(axis=(0, 1)), image[48:].astype(float).mean(axis=(0, 1))
    assert top[2] > top[0] + 30, top  # blue above
    assert np.abs(top - bottom).sum() > 30, (top, bottom)  # and something else below


def test_the_crossfade_moves_from_the_orb_to_the_landscape(toy_model, tmp_path):
    weights = [0.0, 0.25, 0.5, 0.75, 1.0]
    frames = [{"prompt_weights": [1 - w, w]} for w in weights]
    pictures = render(tmp_path, toy_model, ["a floating orb", "a gorgeous landscape"], frames)
    # The orb sits on a dark background; the landscape has none.
    dark = [float((p.max(axis=2) < 40).mean()) for p in pictures]
    assert dark[0] > 0.5 and dark[-1] < 0.1, dark
    assert float(pictures[-1][:16].astype(float).mean()) > 100  # a bright sky on top
    assert adherence.landscape_parts(pictures[-1], "day")[0] == "day"


def test_a_threshold_reduces_the_number_of_colours(toy_model, tmp_path):
    bend = {"name": "t", "op": "threshold", "latent_layer": THRESHOLD_LAYER}
    plain = render(tmp_path / "plain", toy_model, ["a gorgeous landscape"], [{}], seed=3)[0]
    bent = render(tmp_path / "bent", toy_model, ["a gorgeous landscape"], [{"bends": {"t": 0.0}}], [bend], seed=3)[0]
    assert distinct_colours(bent) < distinct_colours(plain) * THRESHOLD_RATIO, (
        distinct_colours(bent),
        distinct_colours(plain),
    )


def shape_recoloured(model, folder: Path, prompt: str, layer: int, seed: int) -> float:
    """How far R1 by π at ``layer`` moves the colour of the prompt's shape: the L1 distance between the chroma
    (r, g, b over their sum) of the bright pixels, unbent and bent."""
    bend = {"name": "r", "op": "rotate_r1", "latent_layer": layer}
    frames = [{"bends": {"r": 0.0}}, {"bends": {"r": np.pi}}]
    chroma = []
    for picture in render(folder, model, [prompt], frames, [bend], seed=seed):
        pixels = picture.reshape(-1, 3).astype(float)
        shape = pixels[pixels.max(axis=1) > scenes.BRIGHT_LEVEL].mean(axis=0)
        chroma.append(shape / shape.sum())
    return float(np.abs(chroma[0] - chroma[1]).sum())


def test_a_rotation_recolours_a_red_orb_more_the_later_it_acts(toy_model, tmp_path):
    for seed in (0, 1):
        early, late = (
            shape_recoloured(toy_model, tmp_path / f"{k}{seed}", "a red floating orb", k, seed) for k in ROTATION_LAYERS
        )
        assert late > ROTATION_SHIFT and late > 2 * early, (seed, early, late)


def test_the_demos_rotation_recolours_the_orb(toy_model, tmp_path):
    from scripts.demo import render_settings

    layer = render_settings(None).bend_layer
    shifts = [shape_recoloured(toy_model, tmp_path / f"s{seed}", "a floating orb", layer, seed) for seed in (0, 1)]
    assert min(shifts) > DEMO_ORB_SHIFT, shifts


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_the_training_loss_weighs_the_pictures_error_by_the_clamped_snr(prediction_type):
    """``train.loss_weights`` × the prediction's squared error == clamp(SNR, floor, cap) × the predicted picture's."""
    import torch
    from diffusers import DDPMScheduler

    from scripts.toy_model import train

    schedule = DDPMScheduler.from_config(train.make_scheduler(prediction_type).config)
    generator = torch.Generator().manual_seed(0)
    t = torch.tensor([1, 60, 250, 500, 800, 999])
    x0, noise = torch.randn(6, 4, 8, 8, generator=generator), torch.randn(6, 4, 8, 8, generator=generator)
    x0_guess = x0 + 0.3 * torch.randn(6, 4, 8, 8, generator=generator)  # a model's imperfect picture
    noisy = schedule.add_noise(x0, noise, t)
    a = schedule.alphas_cumprod[t].sqrt()[:, None, None, None]
    s = (1 - schedule.alphas_cumprod[t]).sqrt()[:, None, None, None]
    noise_guess = (noisy - a * x0_guess) / s  # the noise that picture implies
    if prediction_type == "v_prediction":
        target, guess = schedule.get_velocity(x0, noise, t), a * noise_guess - s * x0_guess
    else:
        target, guess = noise, noise_guess
    snr = schedule.alphas_cumprod[t] / (1 - schedule.alphas_cumprod[t])
    weighted = (guess - target).pow(2).mean(dim=(1, 2, 3)) * train.loss_weights(snr, prediction_type, 5.0, 1.0)
    picture = (x0_guess - x0).pow(2).mean(dim=(1, 2, 3)) * snr.clamp(min=1.0, max=5.0)
    torch.testing.assert_close(weighted, picture, rtol=1e-3, atol=1e-6)
    # Without the floor, noise prediction keeps plain min-SNR weights, which count the picture's error at t = 999
    # about 0.005 times: what left the shapes' place to the noise.
    plain = train.loss_weights(snr, "epsilon", 5.0, 0.0)
    torch.testing.assert_close(plain, snr.clamp(max=5.0) / snr)
    assert float(plain[-1] * snr[-1]) < 0.01


def test_the_training_script_makes_a_folder_the_engine_loads(tmp_path):
    """The training script end to end at a toy size (every phase and option runs, in its own process: it sets
    torch's global determinism), then loaded and rendered like any diffusers folder."""
    from engine.models import load_model

    out = tmp_path / "tiny-toy"
    settings = ["--images", "64", "--vae-steps", "2", "--unet-steps", "4", "--layout-steps", "2"]
    settings += ["--layout-share", "0.25", "--ema", "0.9"]
    done = subprocess.run(
        [sys.executable, "-m", "scripts.toy_model.train", "--out", str(out), *settings],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "training.json").read_text())
    assert (record["unet_steps"], record["layout_share"], record["ema"]) == (4, 0.25, 0.9)
    model = load_model(str(out), device="cpu")
    (picture,) = render(tmp_path / "render", model, ["a red ring on the left"], [{}])
    assert picture.shape == (scenes.SIZE, scenes.SIZE, 3)
