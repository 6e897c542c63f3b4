"""Prompt adherence of the toy model: render held-out prompts over several seeds and check each picture.

    OMP_NUM_THREADS=2 .venv/bin/python -m scripts.toy_model.adherence [--model toy-shapes] [--seeds 4]

The prompts are the (colour, shape, position) and (ground, sky) combinations the training set never shows
(``scenes.HELD_OUT_*``). Each renders through the engine exactly as a job would (``engine.job`` + ``Runner``, so the
job's sampler, guidance and noise), one job per seed. A picture passes when what the caption says can be read
back from its pixels:

* a shape: the bright pixels (the shape, on the dark background) have the caption's colour (nearest of the
  palette), their centre lies in the caption's place (nearest of the five positions), and their outline is the
  caption's shape (the generator's own orb, square, ring, star or triangle drawn over them that overlaps best);
* a landscape: the top rows' mean colour is nearest to the caption's sky, the bottom rows' to its ground, with the
  reference colours measured on the generator's own pictures.

It prints one line per picture, the rate, and how different the seeds' pictures of one prompt are.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import scenes  # noqa: E402

SKY_ROWS = slice(0, 16)  # above every horizon the generator draws (rows 29-38 at 64 px)
GROUND_ROWS = slice(48, 64)
MIN_SHAPE_PIXELS = 12


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    criteria: tuple[tuple[str, bool], ...] = ()  # (what the caption says, whether the picture shows it)


def _references(seed: int = 12345, count: int = 12) -> dict[tuple[str, str], np.ndarray]:
    """Mean sky and ground colours of the generator's own landscapes, per (part, name[, sky])."""
    rng = np.random.default_rng(seed)
    refs: dict[tuple[str, str], list[np.ndarray]] = {}
    for sky_phrase, sky in scenes.SKIES.items():
        for ground in scenes.GROUNDS:
            scene = scenes.Scene(scenes.landscape_caption(ground, sky_phrase), "landscape", sky=sky, ground=ground)
            for _ in range(count):
                image = scenes.draw_scene(scene, rng, sun=bool(rng.uniform() < 0.6)).astype(np.float64)
                refs.setdefault(("sky", sky), []).append(image[SKY_ROWS].mean(axis=(0, 1)))
                refs.setdefault((f"ground/{sky}", ground), []).append(image[GROUND_ROWS].mean(axis=(0, 1)))
    return {key: np.mean(values, axis=0) for key, values in refs.items()}


REFERENCES = _references()


def _nearest(value: np.ndarray, options: dict[str, np.ndarray]) -> str:
    return min(options, key=lambda name: float(np.linalg.norm(value - options[name])))


def read_shape(image: np.ndarray) -> tuple[str, str, str, int] | None:
    """The shape's palette colour, its position phrase, its outline and its pixel count; None when no shape stands
    out."""
    pixels = image.astype(np.float64)
    mask = pixels.max(axis=2) > scenes.BRIGHT_LEVEL
    if mask.sum() < MIN_SHAPE_PIXELS:
        return None
    colour = _nearest(pixels[mask].mean(axis=0), {k: np.array(v, dtype=np.float64) for k, v in scenes.COLOURS.items()})
    ys, xs = np.nonzero(mask)
    centre = np.array([xs.mean(), ys.mean()]) / image.shape[0]
    place = _nearest(centre, {k: np.array(v) for k, v in scenes.POSITIONS.items()})
    return colour, place, shape_of(mask), int(mask.sum())


def _template(shape: str, cx: float, cy: float, r: float, turn: float = 0.0) -> np.ndarray:
    """The generator's ``shape`` centred at (cx, cy) with radius ``r`` (pixels), as a boolean 64×64 mask."""
    from PIL import Image, ImageDraw

    w = scenes.SIZE * scenes.SUPER
    canvas = Image.new("RGB", (w, w))
    k = scenes.SUPER
    scenes.draw_shape(ImageDraw.Draw(canvas), shape, cx * k, cy * k, r * k, (255, 255, 255), turn)
    return np.asarray(canvas.convert("L").resize((scenes.SIZE, scenes.SIZE), Image.Resampling.BOX)) > 127


def shape_of(mask: np.ndarray) -> str:
    """The generator's shape whose outline overlaps the mask best (intersection over union), over a few sizes
    around the mask's own and centres around its bounding box's (a star's and a triangle's centre lies below the
    middle of their box)."""
    ys, xs = np.nonzero(mask)
    cx, cy = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
    half = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) / 2
    star_turns = (-2 * scenes.STAR_TURN / 3, 0.0, 2 * scenes.STAR_TURN / 3)  # within the generator's range
    poses = [
        (shape, scale, shift, turn)
        for shape in scenes.SHAPES
        for scale, shift in itertools.product((0.85, 0.95, 1.05, 1.15), (-0.1, 0.0, 0.1))
        for turn in (star_turns if shape == "star" else (0.0,))
    ]

    def overlap(pose: tuple[str, float, float, float]) -> float:
        shape, scale, shift, turn = pose
        template = _template(shape, cx, cy + shift * half, half * scale, turn)
        return float((template & mask).sum() / max(1, (template | mask).sum()))

    return max(poses, key=overlap)[0]


def landscape_parts(image: np.ndarray, sky_hint: str) -> tuple[str, str]:
    """The sky (day, sunset, night) and the ground (under that sky) the picture's colours are nearest to."""
    pixels = image.astype(np.float64)
    skies = {name: ref for (part, name), ref in REFERENCES.items() if part == "sky"}
    grounds = {name: ref for (part, name), ref in REFERENCES.items() if part == f"ground/{sky_hint}"}
    return _nearest(pixels[SKY_ROWS].mean(axis=(0, 1)), skies), _nearest(pixels[GROUND_ROWS].mean(axis=(0, 1)), grounds)


def check(scene: scenes.Scene, image: np.ndarray) -> Verdict:
    """Does ``image`` show what ``scene``'s caption says?"""
    if scene.kind == "shape":
        found = read_shape(image)
        said = (("colour", scene.colour), ("shape", scene.shape), ("place", scene.position))
        wanted = [name for name, value in said if value]
        if found is None:
            return Verdict(False, "no shape stands out from the background", tuple((w, False) for w in wanted))
        colour, place, shape, area = found
        problems = []
        if scene.colour and colour != scene.colour:
            problems.append(f"colour {colour}")
        if scene.shape and shape != scene.shape:
            problems.append(f"shape {shape}")
        if scene.position and place != scene.position:
            problems.append(f"place {place!r}")
        criteria = tuple((w, not any(p.startswith(w) for p in problems)) for w in wanted)
        return Verdict(not problems, ", ".join(problems) or f"{colour} {shape} {place} ({area} px)", criteria)
    if scene.kind == "landscape":
        sky, ground = landscape_parts(image, scene.sky or "day")
        problems = []
        if sky != scene.sky:
            problems.append(f"sky {sky}")
        if ground != scene.ground:
            problems.append(f"ground {ground!r}")
        criteria = (("sky", sky == scene.sky), ("ground", ground == scene.ground))
        return Verdict(not problems, ", ".join(problems) or f"{sky} sky, {ground}", criteria)
    raise ValueError(f"no check for scene kind {scene.kind!r}")


def criteria_rates(verdicts) -> dict[str, tuple[int, int]]:
    """(passed, checked) per criterion (colour, place, sky, ground) over ``verdicts``."""
    rates: dict[str, tuple[int, int]] = {}
    for verdict in verdicts:
        for name, ok in verdict.criteria:
            passed, total = rates.get(name, (0, 0))
            rates[name] = (passed + ok, total + 1)
    return rates


def job_document(
    model: str, prompts: list[str], seed: int, steps: int, guidance: float, scheduler: str | None = None
) -> dict:
    """One frame per prompt (one-hot weights), all at noise phase 0 with the job's seed."""
    return {
        "format": "diffusion-bender-job",
        "version": 1,
        "model": {"source": model, "device": "cpu", **({"scheduler": scheduler} if scheduler else {})},
        "mode": "txt2img",
        "width": scenes.SIZE,
        "height": scenes.SIZE,
        "steps": steps,
        "guidance": guidance,
        "seed": seed,
        "prompts": prompts,
        "bends": [],
        "frames": [
            {"frame": i, "phase": 0.0, "prompt_weights": [1.0 if j == i else 0.0 for j in range(len(prompts))]}
            for i in range(len(prompts))
        ],
    }


def render(model: str, prompts: list[str], seeds: list[int], steps: int, guidance: float, folder: Path, scheduler=None):
    """Pictures (seed, prompt) → uint8 (H, W, 3), rendered by the engine's runner; the model loads once."""
    from engine.events import EventStream
    from engine.job import load_job
    from engine.runner import Runner

    images: dict[tuple[int, int], np.ndarray] = {}
    loaded = None
    for seed in seeds:
        job_folder = folder / f"seed_{seed}"
        job_folder.mkdir(parents=True, exist_ok=True)
        path = job_folder / "job.json"
        path.write_text(json.dumps(job_document(model, prompts, seed, steps, guidance, scheduler)), encoding="utf-8")
        runner = Runner(load_job(path), EventStream(None), model=loaded)
        runner.run()
        loaded = runner.model
        for i in range(len(prompts)):
            images[seed, i] = runner.store.read(i)
    return images


def measure(
    model: str, seeds: list[int], steps: int, guidance: float, folder: Path, verbose: bool = True, scheduler=None
):
    """(rate, per-picture verdicts, mean seed-to-seed difference per prompt) for the held-out prompts."""
    held_out = scenes.held_out_scenes()
    images = render(model, [s.caption for s in held_out], seeds, steps, guidance, folder, scheduler)
    verdicts = {}
    for (seed, i), image in sorted(images.items()):
        verdicts[seed, i] = check(held_out[i], image)
        if verbose:
            v = verdicts[seed, i]
            print(f"{'PASS' if v.ok else 'fail'}  seed {seed:<4} {held_out[i].caption:<40} {v.reason}")
    rate = sum(v.ok for v in verdicts.values()) / len(verdicts)
    spread = []
    for i in range(len(held_out)):
        pics = [images[s, i].astype(np.float64) for s in seeds]
        pairs = [np.abs(a - b).mean() for k, a in enumerate(pics) for b in pics[k + 1 :]]
        spread.append(float(np.mean(pairs)) if pairs else 0.0)
    return rate, verdicts, spread, images


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "toy-shapes"))
    parser.add_argument("--seeds", type=int, default=4, help="seeds 0..N-1")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--scheduler", default=None, help="a sampler instead of the model's own, e.g. dpm++")
    parser.add_argument("--sheet", type=Path, default=None, help="also save all pictures as one PNG here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        seeds = list(range(args.seeds))
        rate, verdicts, spread, images = measure(
            args.model, seeds, args.steps, args.guidance, Path(tmp), scheduler=args.scheduler
        )
    if args.sheet:
        from PIL import Image

        n = len(scenes.held_out_scenes())
        rows = [np.concatenate([images[s, i] for i in range(n)], axis=1) for s in seeds]
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.sheet)
    passed = sum(v.ok for v in verdicts.values())
    sampler = args.scheduler or "the model's own"
    print(
        f"adherence: {passed}/{len(verdicts)} = {rate:.0%} over {len(seeds)} seeds, {args.steps} steps, "
        f"guidance {args.guidance}, {sampler} sampler"
    )
    for name, (passed, total) in criteria_rates(verdicts.values()).items():
        print(f"  {name:<7} {passed}/{total} = {passed / total:.0%}")
    print(f"seed-to-seed mean pixel difference per prompt: min {min(spread):.1f}, mean {np.mean(spread):.1f} (0-255)")


if __name__ == "__main__":
    main()
