"""Operator sweeps: one bend's parameter over a range (columns) × the layers it applies at (rows), as a labelled
contact sheet. These are the grids of the paper's figures 1-3, e.g. R1 at 8 angles over 0..2π × latent layers
0, 10, 20, 30, 40, 49.

A sweep file is a job file with a ``sweep`` section (README.md, "Sweeps")::

    "sweep": {"bend": "R1",
              "values": {"start": 0, "stop": 6.283185, "count": 8, "endpoint": false},
              "layers": [0, 10, 20, 30, 40, 49],
              "frame": 0}

``values`` is a list of numbers or an evenly spaced range; ``layers`` holds latent layers (integers) or U-Net
targets (``"mid_block"``); ``frame`` picks the job frame whose prompt mix, noise phase and other bend
parameters every tile shares (default: the first).

Each row renders as an ordinary text-to-image job of its own, with the bend moved to that row's layer and one
frame per column carrying that column's value. So a tile is exactly the frame the same settings render on their
own, and an interrupted sweep resumes like any render. Rows live in ``row_NN-<sweep>/`` beside the sweep file,
named after it, so two sweeps in one folder never share (and re-render) each other's rows; a row that fails before
its first tile leaves no folder behind.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .bends import check_params
from .catalog import OPERATORS, UNET_TARGET
from .contact_sheet import grid_sheet, save_sheet
from .errors import BendError, JobError
from .events import EventStream
from .files import remove_planted
from .frame_store import FrameStore
from .job import FrameSpec, Job, _coerce, _Fields, load_job, read_job_document
from .limits import MAX_SWEEP_AXIS, MAX_SWEEP_PIXELS
from .models import Model
from .stack import PlacedBend, Placement

Layer = int | str


@dataclass(frozen=True)
class SweepSpec:
    bend: str
    values: tuple[float, ...]  # one per column; empty for a bend without a parameter (one column)
    layers: tuple[Layer, ...]  # one per row
    frame: int  # index into the job's frames
    name: str = "sweep"  # the sweep file's name without its extension: its rows' folders carry it


def _values(fields: _Fields, takes_param: bool, bend: str) -> tuple[float, ...]:
    if "values" not in fields.data:
        if takes_param:
            raise JobError(f"sweep.values: required (bend {bend!r} has a parameter to sweep)")
        return ()
    if not takes_param:
        raise JobError(f"sweep.values: bend {bend!r} has no parameter; leave values out to sweep layers only")
    raw = fields.data["values"]
    if isinstance(raw, dict):
        span = fields.child("values")
        start, stop = span.get("start", "float"), span.get("stop", "float")
        count = span.get(
            "count",
            "int",
            check=lambda v: None if 1 <= v <= MAX_SWEEP_AXIS else f"must be between 1 and {MAX_SWEEP_AXIS}",
        )
        endpoint = span.get("endpoint", "bool", True)
        span.finish()
        return tuple(float(v) for v in np.linspace(start, stop, count, endpoint=endpoint))
    items = fields.get("values", "list")
    if not 1 <= len(items) <= MAX_SWEEP_AXIS:
        raise JobError(f"sweep.values: give 1 to {MAX_SWEEP_AXIS} values, got {len(items)}")
    return tuple(_coerce(v, "float", f"sweep.values[{i}]") for i, v in enumerate(items))


def _layers(fields: _Fields) -> tuple[Layer, ...]:
    items = fields.get("layers", "list")
    if not 1 <= len(items) <= MAX_SWEEP_AXIS:
        raise JobError(f"sweep.layers: give 1 to {MAX_SWEEP_AXIS} layers, got {len(items)}")
    layers: list[Layer] = []
    for i, item in enumerate(items):
        where = f"sweep.layers[{i}]"
        if isinstance(item, str):
            if not UNET_TARGET.match(item):
                raise JobError(
                    f"{where}: expected a latent layer (an integer ≥ 0) or a U-Net target "
                    f"(conv_in, down_blocks.N, mid_block, up_blocks.N, conv_out), got {item!r}"
                )
            layers.append(item)
        else:
            layer = _coerce(item, "int", where)
            if layer < 0:
                raise JobError(f"{where}: must be ≥ 0, got {layer}")
            layers.append(layer)
    return tuple(layers)


def parse_sweep(data: Any, job: Job, name: str = "sweep") -> SweepSpec:
    """Validate a ``sweep`` section against the job it sweeps; errors name the field."""
    sweep_name = name
    fields = _Fields(data, "sweep")
    name = fields.get("bend", "str")
    placed = next((p for p in job.bends if p.bend.name == name), None)
    if placed is None:
        names = ", ".join(repr(p.bend.name) for p in job.bends) or "none"
        raise JobError(f"sweep.bend: the job has no bend named {name!r} (its bends: {names})")
    values = _values(fields, OPERATORS[placed.bend.op].takes_param, name)
    layers = _layers(fields)
    frame = fields.get(
        "frame",
        "int",
        0,
        lambda v: None if 0 <= v < len(job.frames) else f"must be a frame index from 0 to {len(job.frames) - 1}",
    )
    fields.finish()
    if values:
        try:
            check_params(placed.bend, values)
        except BendError as exc:
            raise JobError(f"sweep.values: {exc}") from exc
    tiles = len(layers) * (len(values) or 1)
    if tiles * job.width * job.height > MAX_SWEEP_PIXELS:
        raise JobError(
            f"sweep: {tiles} tiles of {job.width}×{job.height} is {tiles * job.width * job.height:,} pixels held "
            f"for the sheet, more than the limit of {MAX_SWEEP_PIXELS:,}; use fewer values or layers, or smaller "
            "frames"
        )
    return SweepSpec(bend=name, values=values, layers=layers, frame=frame, name=sweep_name)


def load_sweep(path: str | os.PathLike) -> tuple[Job, SweepSpec]:
    """Read a sweep file: a job document with a ``sweep`` section."""
    path = Path(path)
    data = read_job_document(path)
    if not isinstance(data, dict) or "sweep" not in data:
        raise JobError(f'{path}: a sweep file needs a "sweep" section (bend, values, layers)')
    section = data.pop("sweep")
    job = load_job(path, data)
    return job, parse_sweep(section, job, path.stem or "sweep")


def _placement(layer: Layer, original: Placement) -> Placement:
    if isinstance(layer, int):
        return Placement(latent_layer=layer)
    if original.unet_target is not None:  # keep the bend's step range when it already lives in the U-Net
        return dataclasses.replace(original, unet_target=layer)
    return Placement(unet_target=layer)


def row_job(job: Job, spec: SweepSpec, row: int) -> Job:
    """Row ``row`` of the sweep as a text-to-image job: the bend at that layer, one frame per column."""
    base = job.frames[spec.frame]
    bends = tuple(
        PlacedBend(p.bend, _placement(spec.layers[row], p.placement)) if p.bend.name == spec.bend else p
        for p in job.bends
    )
    frames = tuple(
        FrameSpec(
            frame=column,
            prompt_weights=base.prompt_weights,
            phase=base.phase,
            strength=base.strength,
            params={**base.params, spec.bend: value} if spec.values else dict(base.params),
            loras=base.loras,
        )
        for column, value in enumerate(spec.values or (0.0,))
    )
    return dataclasses.replace(
        job, mode="txt2img", bends=bends, frames=frames, output_folder=job.output_folder / row_folder_name(spec, row)
    )


def row_folder_name(spec: SweepSpec, row: int) -> str:
    """``row_NN-<sweep>``: named after the sweep, so sweeps sharing a folder keep their rows apart."""
    return f"row_{row:02d}-{spec.name}"


def _value_label(op: str, value: float) -> str:
    if op.startswith("rotate_"):  # radians, read best as multiples of pi (the built-in font has no π)
        return f"{value / math.pi:.3g} pi"
    return f"{value:.3g}"


def labels(job: Job, spec: SweepSpec) -> tuple[list[str], list[str]]:
    """Row labels (layers) and column labels (values) for the sheet."""
    op = next(p.bend.op for p in job.bends if p.bend.name == spec.bend)
    rows = [f"layer {layer}" if isinstance(layer, int) else layer for layer in spec.layers]
    columns = [_value_label(op, v) for v in spec.values] if spec.values else [op]
    return rows, columns


def run_sweep(
    job: Job,
    spec: SweepSpec,
    sheet_path: Path,
    events: EventStream,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    model: Model | None = None,
    keep_model: Callable[[Model], None] | None = None,
) -> Path:
    """Render every row (resuming rows already rendered), then draw the labelled sheet at ``sheet_path``.

    ``keep_model`` receives the model as soon as a row has loaded it, so a warm engine keeps it for what follows."""
    from .runner import Runner

    columns = len(spec.values) or 1
    events.emit("sweep", rows=len(spec.layers), columns=columns, tiles=len(spec.layers) * columns)
    tiles: list[list[np.ndarray]] = []
    for row in range(len(spec.layers)):
        job_row = row_job(job, spec, row)
        runner = Runner(job_row, events, should_stop=should_stop, model=model)
        runner.run()
        model = runner.model or model
        if keep_model is not None and model is not None:
            keep_model(model)
        store = FrameStore(job_row.output_folder)
        tiles.append([store.read(f.frame) for f in job_row.frames])
    row_labels, column_labels = labels(job, spec)
    bend = next(p.bend for p in job.bends if p.bend.name == spec.bend)
    title = f"{spec.bend} ({bend.op}): {', '.join(job.prompts)[:80] or 'no prompt'}, seed {job.noise_seed}"
    sheet, layout = grid_sheet(tiles, row_labels, column_labels, title)
    remove_planted(sheet_path.with_name(f".{sheet_path.name}.partial"))  # save_sheet's temporary: never through a link
    save_sheet(sheet, sheet_path)
    events.emit(
        "sheet",
        file=str(sheet_path),
        rows=len(tiles),
        columns=columns,
        scale=layout.scale,
        origins=[[list(o) for o in row] for row in layout.origins],
    )
    return sheet_path


def default_sheet_path(sweep_file: Path) -> Path:
    """``sweep.json`` → ``sweep.png`` beside it."""
    return sweep_file.with_suffix(".png")
