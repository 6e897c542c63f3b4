"""Captioned 64×64 pictures drawn from a small, seeded caption grammar: the toy model's whole training set.

Two kinds of scene, each caption saying what a checker can verify in a rendered image:

* a shape on a dark background: "a large red star on the left", "a floating orb" (the paper's prompt: an orb of
  any colour in the middle). Colour, shape, size and position are drawn; an omitted colour is any colour, an
  omitted position is the middle.
* a landscape: a sky (day, sunset, night) over a ground (green hills, the sea, a desert, snowy mountains), e.g.
  "the sea at sunset"; "a gorgeous landscape" (the paper's) is green hills under a blue sky with a sun. "a photo of
  a crane" (the paper's) is a yellow tower crane against a blue sky.

Some (colour, shape, position) and (ground, sky) combinations never appear in training (``HELD_OUT_*``): the
adherence check renders exactly those, so it measures whether the model composes the words, not recall.
Everything is a pure function of (seed, index), drawn with PIL at 4× and downsampled, so the same seed always
gives the same pictures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
SUPER = 4  # drawn at 4× and downsampled with a box filter: soft, anti-aliased edges
# A shape's pixels have a channel above this; the dark backgrounds behind shapes stay below about 40.
BRIGHT_LEVEL = 90

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 130, 20),
    "yellow": (240, 220, 30),
    "green": (40, 190, 50),
    "blue": (40, 80, 235),
    "purple": (150, 50, 210),
    "white": (240, 240, 240),
}
SHAPES = ("orb", "square", "ring", "star", "triangle")
# Where each position puts the shape's centre, as fractions of the image side.
POSITIONS: dict[str, tuple[float, float]] = {
    "on the left": (0.25, 0.5),
    "on the right": (0.75, 0.5),
    "at the top": (0.5, 0.25),
    "at the bottom": (0.5, 0.75),
    "in the middle": (0.5, 0.5),
}
STAR_TURN = 0.3  # a star is turned by up to this many radians either way
# Radius in pixels; no word is the middle size. With a middle size of 11 the model drew stars and squares as lumps
# (a shape spans a few latent pixels); at 13 it draws most of them, and the held-out captions' shape rate went from
# 60 % to 82 %.
SIZES = {"small": 8.0, "": 13.0, "large": 17.0}
SKIES = {"under a blue sky": "day", "at sunset": "sunset", "at night": "night"}
GROUNDS = ("green hills", "the sea", "a desert", "snowy mountains")

# Never drawn in training; the adherence check renders these.
HELD_OUT_SHAPES = (
    ("red", "ring", "on the right"),
    ("green", "star", "at the top"),
    ("blue", "square", "on the left"),
    ("yellow", "triangle", "at the bottom"),
    ("purple", "orb", "on the left"),
    ("orange", "square", "at the top"),
    ("white", "star", "on the right"),
    ("red", "triangle", "in the middle"),
    ("blue", "orb", "at the bottom"),
    ("green", "ring", "on the left"),
)
HELD_OUT_LANDSCAPES = (("a desert", "at night"), ("the sea", "under a blue sky"))


@dataclass(frozen=True)
class Scene:
    """What a caption promises: enough for ``adherence.check`` to verify a picture against it."""

    caption: str
    kind: str  # "shape", "landscape" or "crane"
    colour: str | None = None  # a shape's colour; None: any
    shape: str | None = None
    position: str | None = None  # a shape's position phrase
    sky: str | None = None  # "day", "sunset" or "night"
    ground: str | None = None


def shape_caption(colour: str | None, shape: str, position: str | None, size: str = "") -> str:
    noun = "floating orb" if shape == "orb" else shape
    words = [w for w in (size, colour or "", noun) if w]
    article = "an" if words[0][0] in "aeiou" else "a"
    return " ".join([article, *words, *([position] if position else [])])


def landscape_caption(ground: str, sky: str) -> str:
    return f"{ground} {sky}"


def held_out_scenes() -> list[Scene]:
    """The prompts the adherence check renders: combinations the training set never shows."""
    scenes = [Scene(shape_caption(c, s, p), "shape", colour=c, shape=s, position=p) for c, s, p in HELD_OUT_SHAPES]
    scenes += [
        Scene(landscape_caption(g, sky), "landscape", sky=SKIES[sky], ground=g) for g, sky in HELD_OUT_LANDSCAPES
    ]
    return scenes


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int = 18) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _star(cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    points = []
    for i in range(10):
        radius = r if i % 2 == 0 else r * 0.45
        angle = turn + i * math.pi / 5 - math.pi / 2
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill, turn: float = 0.0) -> None:
    """``shape`` centred at (cx, cy) with radius ``r``; ``turn`` (radians) turns a star."""
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "orb":
        draw.ellipse(box, fill=fill)
        # a highlight so an orb reads as a sphere, not a disc
        hi = tuple(min(255, c + 60) for c in fill)
        draw.ellipse((cx - r * 0.55, cy - r * 0.6, cx - r * 0.05, cy - r * 0.1), fill=hi)
    elif shape == "square":
        draw.rectangle((cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85), fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=int(r * 0.38))
    elif shape == "star":
        draw.polygon(_star(cx, cy, r * 1.15, turn), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r * 1.05, cy + r * 0.8), (cx - r * 1.05, cy + r * 0.8)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def _vertical_gradient(draw: ImageDraw.ImageDraw, top, bottom, y0: int, y1: int, width: int) -> None:
    for y in range(y0, y1):
        t = (y - y0) / max(1, y1 - y0 - 1)
        draw.line([(0, y), (width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))


SKY_COLOURS = {
    "day": ((60, 120, 230), (150, 200, 250)),
    "sunset": ((120, 50, 140), (250, 140, 50)),
    "night": ((5, 5, 30), (20, 25, 70)),
}


def _draw_sky(draw: ImageDraw.ImageDraw, sky: str, horizon: float, rng, sun: bool) -> None:
    w = SIZE * SUPER
    top, bottom = SKY_COLOURS[sky]
    _vertical_gradient(draw, _jitter(rng, top, 12), _jitter(rng, bottom, 12), 0, int(horizon) + SUPER, w)
    sx, sy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.12, 0.3) * w
    if sky == "night":
        for _ in range(int(rng.integers(6, 14))):  # stars
            x, y = rng.uniform(0, w), rng.uniform(0, horizon * 0.9)
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(230, 230, 200))
        if sun:  # a moon
            r = rng.uniform(4, 6) * SUPER
            draw.ellipse((sx - r, sy - r, sx + r, sy + r), fill=(235, 235, 210))
    elif sun:
        r = rng.uniform(4, 7) * SUPER
        colour = (255, 230, 80) if sky == "day" else (255, 110, 40)
        draw.ellipse((sx - r, sy - r, sx + r, sy + r), fill=colour)


def _draw_ground(draw: ImageDraw.ImageDraw, ground: str, sky: str, horizon: float, rng) -> None:
    w = SIZE * SUPER
    dim = {"day": 1.0, "sunset": 0.75, "night": 0.35}[sky]

    def shade(c):
        return tuple(int(v * dim) for v in _jitter(rng, c, 15))

    if ground == "green hills":
        draw.rectangle((0, horizon, w, w), fill=shade((35, 110, 35)))
        for i in range(3):
            base = horizon + i * 5 * SUPER
            cx, r = rng.uniform(-0.2, 1.2) * w, rng.uniform(0.4, 0.8) * w
            draw.ellipse((cx - r, base, cx + r, base + 2 * r * 0.6), fill=shade((50 + 20 * i, 160 - 20 * i, 50)))
        draw.rectangle((0, horizon + 12 * SUPER, w, w), fill=shade((40, 130, 40)))
    elif ground == "the sea":
        draw.rectangle((0, horizon, w, w), fill=shade((20, 70, 170)))
        for _ in range(6):  # waves
            y = rng.uniform(horizon + 2 * SUPER, w)
            x = rng.uniform(0, w)
            draw.line([(x - 20, y), (x + 20, y)], fill=shade((110, 160, 230)), width=SUPER)
    elif ground == "a desert":
        draw.rectangle((0, horizon, w, w), fill=shade((225, 190, 110)))
        for _ in range(2):  # dunes
            cx, r = rng.uniform(0, w), rng.uniform(0.3, 0.6) * w
            draw.ellipse((cx - r, horizon + 6 * SUPER, cx + r, horizon + 6 * SUPER + r), fill=shade((200, 160, 80)))
    elif ground == "snowy mountains":
        draw.rectangle((0, horizon, w, w), fill=shade((230, 235, 240)))
        for _ in range(3):
            cx, half, height = rng.uniform(0, w), rng.uniform(0.2, 0.35) * w, rng.uniform(0.2, 0.35) * w
            draw.polygon(
                [(cx - half, horizon + 4), (cx, horizon - height), (cx + half, horizon + 4)],
                fill=shade((140, 145, 160)),
            )
            draw.polygon(
                [
                    (cx - half * 0.3, horizon - height * 0.7),
                    (cx, horizon - height),
                    (cx + half * 0.3, horizon - height * 0.7),
                ],
                fill=shade((250, 250, 255)),
            )
    else:
        raise ValueError(f"unknown ground {ground!r}")


def _draw_crane(draw: ImageDraw.ImageDraw, rng) -> None:
    w = SIZE * SUPER
    x = rng.uniform(0.3, 0.6) * w
    top = rng.uniform(0.15, 0.3) * w
    yellow = _jitter(rng, (240, 200, 30), 15)
    draw.rectangle((x - 2 * SUPER, top, x + 2 * SUPER, w), fill=yellow)  # mast
    left, right = x - rng.uniform(0.1, 0.2) * w, x + rng.uniform(0.25, 0.4) * w
    draw.rectangle((left, top, right, top + 3 * SUPER), fill=yellow)  # jib
    hook = rng.uniform(x + 0.1 * w, right)
    drop = top + rng.uniform(0.2, 0.4) * w
    draw.line([(hook, top), (hook, drop)], fill=(40, 40, 40), width=SUPER)
    draw.rectangle((hook - 2 * SUPER, drop, hook + 2 * SUPER, drop + 3 * SUPER), fill=(60, 60, 60))


def draw_scene(scene: Scene, rng: np.random.Generator, size: str = "", sun: bool = True) -> np.ndarray:
    """The picture of ``scene`` as uint8 (64, 64, 3); what the caption leaves open is drawn from ``rng``."""
    w = SIZE * SUPER
    image = Image.new("RGB", (w, w))
    draw = ImageDraw.Draw(image)
    if scene.kind == "shape":
        background = _jitter(rng, (12, 12, 20), 10)
        draw.rectangle((0, 0, w, w), fill=background)
        colour = scene.colour or _pick(rng, list(COLOURS))
        fx, fy = POSITIONS[scene.position or "in the middle"]
        radius = (SIZES[size] + rng.uniform(-1.5, 1.5)) * SUPER
        cx = (fx * SIZE + rng.uniform(-3, 3)) * SUPER
        cy = (fy * SIZE + rng.uniform(-3, 3)) * SUPER
        shape = scene.shape or "orb"
        fill = _jitter(rng, COLOURS[colour])
        turn = float(rng.uniform(-STAR_TURN, STAR_TURN)) if shape == "star" else 0.0
        draw_shape(draw, shape, cx, cy, radius, fill, turn)
    elif scene.kind == "landscape":
        horizon = rng.uniform(0.45, 0.6) * w
        _draw_sky(draw, scene.sky or "day", horizon, rng, sun)
        _draw_ground(draw, scene.ground or "green hills", scene.sky or "day", horizon, rng)
    elif scene.kind == "crane":
        horizon = rng.uniform(0.75, 0.85) * w
        _draw_sky(draw, "day", horizon, rng, sun=False)
        draw.rectangle((0, horizon, w, w), fill=_jitter(rng, (110, 100, 80), 15))
        _draw_crane(draw, rng)
    else:
        raise ValueError(f"unknown scene kind {scene.kind!r}")
    return np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BOX), dtype=np.uint8)


def _training_scene(rng: np.random.Generator) -> tuple[Scene, str, bool]:
    roll = rng.uniform()
    if roll < 0.62:
        while True:
            colour, shape, position = _pick(rng, list(COLOURS)), _pick(rng, SHAPES), _pick(rng, list(POSITIONS))
            if (colour, shape, position) not in HELD_OUT_SHAPES:
                break
        size = _pick(rng, list(SIZES))
        said_colour = colour if rng.uniform() > 0.1 else None
        said_position = None if position == "in the middle" and rng.uniform() < 0.5 else position
        caption = shape_caption(said_colour, shape, said_position, size)
        return Scene(caption, "shape", colour=colour, shape=shape, position=position), size, True
    if roll < 0.95:
        while True:
            ground, sky = _pick(rng, GROUNDS), _pick(rng, list(SKIES))
            if (ground, sky) not in HELD_OUT_LANDSCAPES:
                break
        sun = bool(rng.uniform() < 0.6)
        caption = landscape_caption(ground, sky)
        if ground == "green hills" and sky == "under a blue sky" and sun and rng.uniform() < 0.5:
            caption = "a gorgeous landscape"
        return Scene(caption, "landscape", sky=SKIES[sky], ground=ground), "", sun
    return Scene("a photo of a crane", "crane"), "", False


def training_example(seed: int, index: int) -> tuple[str, np.ndarray]:
    """Caption and picture number ``index`` of the training set drawn with ``seed``."""
    rng = np.random.default_rng([seed, index])
    scene, size, sun = _training_scene(rng)
    # 60 % of the orbs in the middle are captioned with the paper's bare prompt, which the grammar otherwise says
    # about once in 500 pictures: a model that rarely saw it drew a landscape for it. A separate generator keeps
    # every picture the same.
    centred_orb = scene.kind == "shape" and scene.shape == "orb" and scene.position == "in the middle"
    if centred_orb and np.random.default_rng([seed, index, 1]).uniform() < 0.6:
        scene = replace(scene, caption="a floating orb")
    return scene.caption, draw_scene(scene, rng, size=size, sun=sun)


def vocabulary_words() -> list[str]:
    """Every word a caption can use: the tokenizer keeps exactly the BPE merges these words need."""
    captions = [shape_caption(c, s, p, z) for c in COLOURS for s in SHAPES for p in POSITIONS for z in SIZES]
    captions += [landscape_caption(g, s) for g in GROUNDS for s in SKIES]
    captions += ["a gorgeous landscape", "a photo of a crane"]
    return sorted({word for caption in captions for word in caption.split()})
