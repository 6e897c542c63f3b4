"""The demo's two pictures, with Pillow and numpy only: a contact sheet of frames, and the curves that drove them.

Nothing here knows Blender: the demo reads the frames, the baked features and the job, and hands plain lists over,
so every function can be tested on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from engine.contact_sheet import BACKGROUND, GRID, INK, font, text_size

WIDTH = 1200
MUTED = (110, 110, 110)
# Colour-blind-safe (Okabe-Ito) line colours.
PALETTE = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233)]


def nice_step(span: float, target: int) -> float:
    """A round step (1, 2, 2.5 or 5 × 10^k) that cuts ``span`` into about ``target`` intervals."""
    if not span > 0:
        return 1.0
    raw = span / max(target, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def nice_ticks(low: float, high: float, target: int = 8) -> list[float]:
    """Round tick values covering ``low..high`` (both included when they are round), about ``target`` of them."""
    step = nice_step(high - low, target)
    first = math.ceil(low / step - 1e-9) * step
    count = math.floor((high - first) / step + 1e-9) + 1
    return [round(first + i * step, 10) for i in range(max(count, 0))]


def tick_label(value: float, step: float) -> str:
    """``value`` with as many decimals as the tick step needs (0.25 → 2, 2.5 → 1, 5 → 0)."""
    decimals = next((d for d in range(5) if abs(step * 10**d - round(step * 10**d)) < 1e-6), 4)
    return f"{value:.{decimals}f}"


# ---------------------------------------------------------------------------------------------------------------
# Contact sheet


def sheet_frames(first: int, last: int, every: int) -> list[int]:
    """Every ``every``-th frame from ``first``, and the last frame too."""
    frames = list(range(first, last + 1, max(every, 1)))
    if frames and frames[-1] != last:
        frames.append(last)
    return frames


def every_for(n_frames: int, tiles: int = 20) -> int:
    """The frame step that shows about ``tiles`` frames: 10 for 200 frames, 1 for a dozen."""
    return max(1, round(n_frames / tiles))


def fit_tile(picture: Image.Image, tile: int) -> Image.Image:
    """Scale a frame to fit a ``tile``-pixel square: small frames by a whole factor with hard pixel edges (so
    nothing is invented), others smoothly."""
    longest = max(picture.width, picture.height)
    factor = tile // longest
    if factor >= 2:
        return picture.resize((picture.width * factor, picture.height * factor), Image.Resampling.NEAREST)
    if longest == tile:
        return picture
    scale = tile / longest
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.LANCZOS)


def contact_sheet(
    frames: Sequence[tuple[int, Path]],
    fps: float,
    path: Path,
    title: str,
    first_frame: int = 1,
    width: int = WIDTH,
    columns: int = 7,
) -> Path:
    """A grid of the given ``(frame number, image file)`` pairs, each labelled with its frame and time."""
    if not frames:
        raise ValueError("contact_sheet: no frames to show")
    columns = max(1, min(columns, len(frames)))
    rows = math.ceil(len(frames) / columns)
    margin, gap = 24, 12
    title_font, label_font = font(26), font(18)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_h = text_size(probe, "Ag", title_font)[1] + 20
    label_h = text_size(probe, "Ag", label_font)[1] + 10
    tile = (width - 2 * margin - (columns - 1) * gap) // columns
    height = margin + title_h + rows * (tile + label_h + gap) - gap + margin
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((margin, margin), title, fill=INK, font=title_font)
    for i, (frame, file) in enumerate(frames):
        row, column = divmod(i, columns)
        x = margin + column * (tile + gap)
        y = margin + title_h + row * (tile + label_h + gap)
        with Image.open(file) as image:
            picture = image.convert("RGB")
        picture = fit_tile(picture, tile)
        sheet.paste(picture, (x + (tile - picture.width) // 2, y + (tile - picture.height) // 2))
        draw.rectangle((x - 1, y - 1, x + tile, y + tile), outline=GRID)
        label = f"frame {frame}  ·  {(frame - first_frame) / fps:.2f} s"
        draw.text((x, y + tile + 5), label, fill=INK, font=label_font)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Curves


@dataclass
class Series:
    label: str
    values: Sequence[float]


@dataclass
class Panel:
    title: str
    series: list[Series] = field(default_factory=list)
    y_range: tuple[float, float] | None = None  # None: from the data
    y_label: str = ""


def _y_range(panel: Panel) -> tuple[float, float]:
    if panel.y_range is not None:
        return panel.y_range
    values = [v for s in panel.series for v in s.values if math.isfinite(v)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    low = min(low, 0.0)
    if high - low < 1e-9:
        high = low + 1.0
    return low, high + 0.05 * (high - low)


def plot_curves(
    times: Sequence[float],
    panels: Sequence[Panel],
    path: Path,
    title: str,
    width: int = WIDTH,
    panel_height: int = 210,
    supersample: int = 2,
) -> Path:
    """Stacked line charts sharing the time axis (seconds), each with its own y axis, ticks and legend.

    Drawn at ``supersample`` times the size and scaled down, so the lines are anti-aliased.
    """
    if not panels:
        raise ValueError("plot_curves: no panels")
    s = supersample
    title_font, panel_font, tick_font = font(26 * s), font(19 * s), font(15 * s)
    left, right, top = 86 * s, 24 * s, 100 * s
    panel_gap, axis_h = 62 * s, 48 * s
    plot_w = width * s - left - right
    plot_h = panel_height * s
    height = top + len(panels) * (plot_h + panel_gap) - panel_gap + axis_h + 16 * s
    image = Image.new("RGB", (width * s, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.text((left, 18 * s), title, fill=INK, font=title_font)

    t0, t1 = (float(times[0]), float(times[-1])) if len(times) > 1 else (0.0, 1.0)
    if t1 <= t0:
        t1 = t0 + 1.0
    x_step = nice_step(t1 - t0, 10)
    x_ticks = nice_ticks(t0, t1, 10)

    def x_of(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * plot_w

    for p, panel in enumerate(panels):
        y_top = top + p * (plot_h + panel_gap)
        y_bottom = y_top + plot_h
        low, high = _y_range(panel)

        def y_of(v: float, low: float = low, high: float = high, y_bottom: float = y_bottom) -> float:
            return y_bottom - (v - low) / (high - low) * plot_h

        draw.text((left, y_top - 30 * s), panel.title, fill=INK, font=panel_font)
        y_step = nice_step(high - low, 4)
        for value in nice_ticks(low, high, 4):
            y = y_of(value)
            draw.line((left, y, left + plot_w, y), fill=GRID, width=s)
            label = tick_label(value, y_step)
            w, h = text_size(draw, label, tick_font)
            draw.text((left - 10 * s - w, y - h / 2 - 3 * s), label, fill=MUTED, font=tick_font)
        for t in x_ticks:
            x = x_of(t)
            draw.line((x, y_top, x, y_bottom), fill=GRID, width=s)
            draw.line((x, y_bottom, x, y_bottom + 6 * s), fill=INK, width=s)
            if p == len(panels) - 1:
                label = tick_label(t, x_step)
                w, _ = text_size(draw, label, tick_font)
                draw.text((x - w / 2, y_bottom + 9 * s), label, fill=INK, font=tick_font)
        draw.rectangle((left, y_top, left + plot_w, y_bottom), outline=INK, width=s)
        if panel.y_label:
            x0, y0, x1, y1 = draw.textbbox((0, 0), panel.y_label, font=tick_font)
            label_image = Image.new("RGB", (x1 - x0 + 4 * s, y1 - y0 + 4 * s), BACKGROUND)
            ImageDraw.Draw(label_image).text((2 * s - x0, 2 * s - y0), panel.y_label, fill=MUTED, font=tick_font)
            rotated = label_image.rotate(90, expand=True)
            image.paste(rotated, (10 * s, int(y_top + (plot_h - rotated.height) / 2)))

        legend_x = left + plot_w - 12 * s
        for k, series in reversed(list(enumerate(panel.series))):
            colour = PALETTE[k % len(PALETTE)]
            points = [(x_of(t), y_of(v)) for t, v in zip(times, series.values, strict=True) if math.isfinite(v)]
            if len(points) > 1:
                draw.line(points, fill=colour, width=3 * s, joint="curve")
            elif points:
                x, y = points[0]
                draw.ellipse((x - 3 * s, y - 3 * s, x + 3 * s, y + 3 * s), fill=colour)
            w, h = text_size(draw, series.label, tick_font)
            legend_x -= w
            draw.text((legend_x, y_top - 26 * s), series.label, fill=INK, font=tick_font)
            draw.line((legend_x - 30 * s, y_top - 17 * s, legend_x - 6 * s, y_top - 17 * s), fill=colour, width=4 * s)
            legend_x -= 46 * s

    axis_label = "time (s)"
    w, _ = text_size(draw, axis_label, tick_font)
    draw.text((left + (plot_w - w) / 2, height - axis_h + 14 * s), axis_label, fill=INK, font=tick_font)
    if s > 1:
        image = image.resize((width, height // s), Image.Resampling.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
