"""Labelled grids of frames: the sweep's contact sheet (rows × columns, as in the paper's figures 1-3).

Tiles are pasted pixel for pixel, enlarged only by a whole factor with nearest-neighbour sampling when frames are
small, so every tile can be cut back out of the sheet and compared with the frame it shows. ``SheetLayout``
records where each tile landed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (250, 250, 248)
INK = (30, 30, 30)
GRID = (222, 222, 218)
# Frames smaller than this are enlarged by a whole factor, so labels do not dwarf them.
MIN_TILE = 128


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's built-in font at ``size`` pixels (a scalable one when Pillow has FreeType).

    It has Latin letters and punctuation but no maths (×, π, →): labels spell those out."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def text_size(draw: ImageDraw.ImageDraw, text: str, typeface: ImageFont.ImageFont) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=typeface)
    return right - left, bottom - top


@dataclass(frozen=True)
class SheetLayout:
    """Where tile (row, column) sits in the sheet: its top-left corner, and the whole-number enlargement."""

    origins: tuple[tuple[tuple[int, int], ...], ...]
    scale: int
    tile_size: tuple[int, int]  # the frames' own (width, height)

    def tile(self, sheet: np.ndarray, row: int, column: int) -> np.ndarray:
        """Cut tile (row, column) out of the sheet's pixels and undo the enlargement."""
        x, y = self.origins[row][column]
        w, h = self.tile_size
        s = self.scale
        return sheet[y : y + h * s : s, x : x + w * s : s]


def grid_sheet(
    tiles: Sequence[Sequence[np.ndarray]],
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    title: str,
) -> tuple[Image.Image, SheetLayout]:
    """A titled grid of equally sized RGB frames with a label per row (left) and per column (top)."""
    if not tiles or not tiles[0]:
        raise ValueError("grid_sheet: no tiles")
    height, width = tiles[0][0].shape[:2]
    scale = max(1, MIN_TILE // max(width, height))
    tile_w, tile_h = width * scale, height * scale
    title_font, label_font = font(22), font(16)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin, gap = 20, 6
    title_h = text_size(probe, "Ag", title_font)[1] + 16
    label_h = text_size(probe, "Ag", label_font)[1] + 10
    row_label_w = max(text_size(probe, label, label_font)[0] for label in row_labels) + 14
    columns = len(tiles[0])
    sheet_w = max(
        margin * 2 + row_label_w + columns * (tile_w + gap) - gap, margin * 2 + text_size(probe, title, title_font)[0]
    )
    sheet_h = margin * 2 + title_h + label_h + len(tiles) * (tile_h + gap) - gap
    sheet = Image.new("RGB", (sheet_w, sheet_h), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.text((margin, margin), title, fill=INK, font=title_font)
    left, top = margin + row_label_w, margin + title_h + label_h
    for column, label in enumerate(column_labels):
        w, _ = text_size(draw, label, label_font)
        draw.text((left + column * (tile_w + gap) + (tile_w - w) // 2, top - label_h), label, fill=INK, font=label_font)
    origins = []
    for row, (row_tiles, label) in enumerate(zip(tiles, row_labels, strict=True)):
        y = top + row * (tile_h + gap)
        _, h = text_size(draw, label, label_font)
        draw.text((margin, y + (tile_h - h) // 2), label, fill=INK, font=label_font)
        row_origins = []
        for column, frame in enumerate(row_tiles):
            if frame.shape[:2] != (height, width):
                raise ValueError(
                    f"grid_sheet: tile ({row}, {column}) is {frame.shape[1]}×{frame.shape[0]}, not {width}×{height}"
                )
            x = left + column * (tile_w + gap)
            picture = Image.fromarray(frame, mode="RGB")
            if scale > 1:
                picture = picture.resize((tile_w, tile_h), Image.Resampling.NEAREST)
            sheet.paste(picture, (x, y))
            draw.rectangle((x - 1, y - 1, x + tile_w, y + tile_h), outline=GRID)
            row_origins.append((x, y))
        origins.append(tuple(row_origins))
    return sheet, SheetLayout(tuple(origins), scale, (width, height))


def save_sheet(sheet: Image.Image, path: Path) -> Path:
    """Write the sheet atomically (a hidden temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.partial")
    sheet.save(temp, format="PNG")
    temp.replace(path)
    return path
