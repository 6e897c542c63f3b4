"""The render job: a versioned JSON recipe for a whole bent render, and its validation.

The format is documented in README.md ("The job file"). A job names its model, mode and sampling settings, the
prompts, the bend stack, and one record per frame with everything that animates (prompt weights, noise phase,
img2img strength, bend parameters). Parsing is strict: an unknown or malformed field is a ``JobError`` that
names it (``frames[3].bends.rot``), so a typo never silently renders something else.

Each frame gets a hash of everything that determines its pixels. The runner compares it with the manifest to
resume: a frame whose file exists with the same hash is skipped, a changed one re-renders.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .bends import Bend, check_params, validate_bend
from .catalog import JOB_FORMAT, JOB_VERSION, MODES, OPERATORS, PRECISIONS, UNET_TARGET
from .errors import BendError, EngineError, JobError
from .noise import paper_phases
from .selection import Selection
from .stack import NONFINITE_MODES, PlacedBend, Placement

_MISSING = object()


@dataclass(frozen=True)
class ModelSpec:
    source: str = "tiny-random"
    allow_download: bool = False
    trust_pickle: bool = False
    device: str = "auto"
    precision: str = "auto"
    scheduler: str = "ddim"
    memory: str = "normal"
    compile: bool = False


@dataclass(frozen=True)
class FrameSpec:
    """Everything that animates, for one output frame."""

    frame: int
    prompt_weights: tuple[float, ...]
    phase: float
    strength: float
    params: Mapping[str, float]


@dataclass(frozen=True)
class Job:
    model: ModelSpec
    mode: str
    width: int
    height: int
    steps: int
    guidance: float
    seed: int
    batch_size: int
    prompts: tuple[str, ...]
    negative_prompt: str
    noise_seed: int
    img2img_prompt: str | None
    init_image: Path | None
    bends: tuple[PlacedBend, ...]
    frames: tuple[FrameSpec, ...]
    output_folder: Path
    fps: float | None = None  # informational: the video's frame rate, for tools that assemble the frames
    nonfinite: str = "error"  # what a NaN or inf after a bend does: "error" or "clamp" (see stack.py)

    def frame_seed(self, index: int) -> int:
        """The paper's seeds: the noise seed for every text-to-image frame, seed + i for img2img frame i."""
        return self.noise_seed if self.mode == "txt2img" else self.seed + index

    def recipe(self) -> dict[str, Any]:
        """Everything global that determines the pixels (not the output place, batch size or device)."""
        return {
            "model": [self.model.source, self.model.precision, self.model.scheduler],
            "mode": self.mode,
            "size": [self.width, self.height],
            "steps": self.steps,
            "guidance": self.guidance,
            "seed": self.seed,
            "noise_seed": self.noise_seed,
            "prompts": list(self.prompts),
            "negative_prompt": self.negative_prompt,
            "img2img_prompt": self.img2img_prompt,
            "init_image": _file_fingerprint(self.init_image) if self.init_image else None,
            "bends": [_placed_bend_record(p) for p in self.bends],
            # Only clamping can change pixels ("error" renders a frame as-is or not at all): leaving the default
            # out keeps the hashes, and so the resumability, of renders made before the option existed.
            **({"nonfinite": self.nonfinite} if self.nonfinite != "error" else {}),
        }

    def frame_hashes(self) -> list[str]:
        """One hash per frame. In img2img each frame's hash includes its predecessor's: a change ripples on."""
        recipe = self.recipe()
        hashes: list[str] = []
        previous = None
        for index, frame in enumerate(self.frames):
            record = {
                "recipe": recipe,
                "frame": frame_record(frame),
                "seed": self.frame_seed(index),
                "previous": previous,
            }
            digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
            hashes.append(digest)
            if self.mode == "img2img":
                previous = digest
        return hashes


def frame_record(frame: FrameSpec) -> dict[str, Any]:
    return {
        "frame": frame.frame,
        "prompt_weights": list(frame.prompt_weights),
        "phase": frame.phase,
        "strength": frame.strength,
        "bends": dict(sorted(frame.params.items())),
    }


def _placed_bend_record(placed: PlacedBend) -> dict[str, Any]:
    bend, where = placed.bend, placed.placement
    return {
        "name": bend.name,
        "op": bend.op,
        "selection": vars(bend.selection),
        "options": dict(sorted(bend.options.items())),
        "where": [where.latent_layer, where.unet_target, where.step_start, where.step_end],
    }


def _file_fingerprint(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise JobError(f"img2img.init_image: cannot read {path}: {exc.strerror}") from exc


class _Fields:
    """Typed access to one JSON object, naming the field in every error and rejecting unknown keys."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise JobError(f"{where or 'job'}: expected an object, got {_type_name(data)}")
        self.data = data
        self.where = where
        self.used: set[str] = set()

    def path(self, key: str) -> str:
        shown = key if key.isidentifier() else json.dumps(key)  # a key with a newline must not break the line
        return f"{self.where}.{shown}" if self.where else shown

    def get(self, key: str, kind: str, default: Any = _MISSING, check: Callable[[Any], str | None] | None = None):
        self.used.add(key)
        if key not in self.data or (self.data[key] is None and default is None):
            if default is _MISSING:
                raise JobError(f"{self.path(key)}: required")
            return default
        value = _coerce(self.data[key], kind, self.path(key))
        problem = check(value) if check else None
        if problem:
            raise JobError(f"{self.path(key)}: {problem}, got {self.data[key]!r}")
        return value

    def child(self, key: str, default: Any = _MISSING) -> _Fields:
        self.used.add(key)
        if key not in self.data:
            if default is _MISSING:
                raise JobError(f"{self.path(key)}: required")
            return _Fields(default, self.path(key))
        return _Fields(self.data[key], self.path(key))

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise JobError(f"{self.path(unknown[0])}: unknown field")


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _coerce(value: Any, kind: str, where: str) -> Any:
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise JobError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise JobError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise JobError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise JobError(f"{where}: expected a string, got {_type_name(value)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise JobError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind == "list":
        if not isinstance(value, list):
            raise JobError(f"{where}: expected a list, got {_type_name(value)}")
        return value
    raise AssertionError(kind)


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be > 0"


def _at_least(minimum: float) -> Callable[[float], str | None]:
    return lambda value: None if value >= minimum else f"must be ≥ {minimum}"


def _one_of(choices: Sequence[str]) -> Callable[[str], str | None]:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def _parse_model(fields: _Fields) -> ModelSpec:
    spec = ModelSpec(
        source=fields.get("source", "str", "tiny-random", lambda v: None if v.strip() else "must not be empty"),
        allow_download=fields.get("allow_download", "bool", False),
        trust_pickle=fields.get("trust_pickle", "bool", False),
        device=fields.get("device", "str", "auto"),
        precision=fields.get("precision", "str", "auto", _one_of(PRECISIONS)),
        scheduler=fields.get("scheduler", "str", "ddim"),
        memory=fields.get("memory", "str", "normal", _one_of(("normal", "low"))),
        compile=fields.get("compile", "bool", False),
    )
    fields.finish()
    return spec


def _parse_bend(fields: _Fields, names: set[str]) -> PlacedBend:
    name = fields.get("name", "str", check=lambda v: None if v.strip() else "must not be empty")
    if name in names:
        raise JobError(f"{fields.path('name')}: two bends are named {name!r}; bend names must be unique")
    names.add(name)
    op = fields.get("op", "str", check=_one_of(tuple(OPERATORS)))
    selection_fields = fields.child("selection", {})
    selection = Selection(
        kind=selection_fields.get("kind", "str", "all"),
        index=selection_fields.get("index", "int", 0),
        fraction=selection_fields.get("fraction", "float", 0.05),
        seed=selection_fields.get("seed", "int", 0),
    )
    selection_fields.finish()
    options = fields.child("options", {})
    options.used.update(options.data)
    placement = _parse_placement(fields)
    fields.finish()
    bend = Bend(name=name, op=op, selection=selection, options=dict(options.data))
    try:
        validate_bend(bend)
    except BendError as exc:
        raise JobError(f"{fields.where}: {exc}") from exc
    return PlacedBend(bend=bend, placement=placement)


def _parse_placement(fields: _Fields) -> Placement:
    has_layer, has_unet = "latent_layer" in fields.data, "unet" in fields.data
    if has_layer == has_unet:
        raise JobError(f"{fields.where}: give exactly one of latent_layer (a step index) or unet (a U-Net target)")
    if has_layer:
        return Placement(latent_layer=fields.get("latent_layer", "int", check=_at_least(0)))
    unet = fields.child("unet")
    target = unet.get(
        "target",
        "str",
        check=lambda v: (
            None if UNET_TARGET.match(v) else "must be conv_in, down_blocks.N, mid_block, up_blocks.N or conv_out"
        ),
    )
    steps = unet.get("steps", "list", None)
    unet.finish()
    start, end = 0, None
    if steps is not None:
        where = unet.path("steps")
        if len(steps) != 2:
            raise JobError(f"{where}: expected [first, end) as two integers, got {steps!r}")
        start = _coerce(steps[0], "int", f"{where}[0]")
        end = None if steps[1] is None else _coerce(steps[1], "int", f"{where}[1]")
        if start < 0 or (end is not None and end <= start):
            raise JobError(f"{where}: expected 0 ≤ first < end, got {steps!r}")
    return Placement(unet_target=target, step_start=start, step_end=end)


def _parse_frames(items: list, prompts: Sequence[str], bends: Sequence[PlacedBend], mode: str) -> tuple[FrameSpec, ...]:
    if not items:
        raise JobError("frames: at least one frame is required")
    phases = paper_phases(len(items))
    param_bends = [p.bend for p in bends if OPERATORS[p.bend.op].takes_param]
    seen: set[int] = set()
    frames = []
    for index, item in enumerate(items):
        fields = _Fields(item, f"frames[{index}]")
        number = fields.get("frame", "int", check=_at_least(0))
        if number in seen:
            raise JobError(f"{fields.path('frame')}: frame {number} appears twice")
        if frames and number < frames[-1].frame:
            raise JobError(f"{fields.path('frame')}: frames must be in increasing order")
        seen.add(number)
        weights = fields.get("prompt_weights", "list", [1.0] if len(prompts) == 1 else _MISSING)
        weights = tuple(_coerce(w, "float", f"{fields.path('prompt_weights')}[{i}]") for i, w in enumerate(weights))
        if len(weights) != len(prompts):
            raise JobError(f"{fields.path('prompt_weights')}: {len(weights)} weights for {len(prompts)} prompts")
        if any(w < 0 for w in weights) or not sum(weights) > 0:
            raise JobError(
                f"{fields.path('prompt_weights')}: weights must be ≥ 0 with a positive sum, got {list(weights)}"
            )
        phase = fields.get("phase", "float", phases[index])
        strength = fields.get(
            "strength", "float", 0.5, lambda v: None if 0.0 <= v <= 1.0 else "must be between 0 and 1"
        )
        values = fields.child("bends", {})
        params = {b.name: _frame_param(values, b.name, number) for b in param_bends}
        values.finish()
        fields.finish()
        frames.append(FrameSpec(frame=number, prompt_weights=weights, phase=phase, strength=strength, params=params))
    for bend in param_bends:
        try:
            check_params(bend, [f.params[bend.name] for f in frames], [f.frame for f in frames])
        except BendError as exc:
            raise JobError(f"frames: {exc}") from exc
    return tuple(frames)


def _frame_param(values: _Fields, name: str, frame: int) -> float:
    """One bend parameter of a frame; an error names the bend and the frame number, not only the list index."""
    try:
        return values.get(name, "float")
    except JobError as exc:
        where = values.path(name)
        raise JobError(f"{where}: bend {name!r} at frame {frame}{str(exc).removeprefix(where)}") from None


def _output_folder(base: Path, folder: str, where: str) -> Path:
    """The job's output folder: its own folder or one beneath it, so a job file cannot write anywhere else.

    Absolute paths, ``..`` that climbs out and symlinks that lead out are refused; the Blender side writes the job
    into its output folder with ``"folder": "."``. Both path flavours are checked, since a job may come from
    another system.
    """
    if PurePosixPath(folder).is_absolute() or PureWindowsPath(folder).anchor:
        raise JobError(
            f"{where}: must be a path relative to the job file's folder, got {folder!r}; put the job file "
            "in the output folder (or above it) instead"
        )
    try:
        root = base.resolve()
        target = (root / folder).resolve()  # follows symlinks, so a link that points out is caught too
    except (OSError, ValueError, RuntimeError) as exc:
        raise JobError(f"{where}: cannot use {folder!r} as a folder ({exc})") from exc
    if target != root and root not in target.parents:
        raise JobError(
            f"{where}: {folder!r} leads outside the job file's folder {root}; a job may only write into "
            "its own folder or beneath it"
        )
    return target


def parse_job(data: Any, base_dir: str | os.PathLike) -> Job:
    """Validate a decoded job document; relative paths are resolved against ``base_dir`` (the job's folder)."""
    base = Path(base_dir)
    top = _Fields(data, "")
    fmt = top.get("format", "str", JOB_FORMAT)
    if fmt != JOB_FORMAT:
        raise JobError(f"format: expected {JOB_FORMAT!r}, got {fmt!r}")
    version = top.get("version", "int")
    if version != JOB_VERSION:
        raise JobError(f"version: this engine reads job version {JOB_VERSION}, got {version}")
    model = _parse_model(top.child("model", {}))
    mode = top.get("mode", "str", "txt2img", _one_of(MODES))
    width = top.get("width", "int", 512, lambda v: None if v >= 8 and v % 8 == 0 else "must be a multiple of 8, ≥ 8")
    height = top.get("height", "int", 512, lambda v: None if v >= 8 and v % 8 == 0 else "must be a multiple of 8, ≥ 8")
    steps = top.get("steps", "int", 50, lambda v: None if 1 <= v <= 1000 else "must be between 1 and 1000")
    guidance = top.get("guidance", "float", 7.5, _at_least(0.0))
    seed = top.get("seed", "int", 46, lambda v: None if 0 <= v < 2**63 else "must be between 0 and 2^63")
    batch_size = top.get("batch_size", "int", 1, lambda v: None if 0 <= v <= 256 else "must be 0 (auto) to 256")
    fps = top.get("fps", "float", None, _positive)
    nonfinite = top.get("nonfinite", "str", "error", _one_of(NONFINITE_MODES))
    prompts = top.get("prompts", "list", [""])
    if not prompts:
        raise JobError("prompts: at least one prompt is required (it may be empty)")
    prompts = tuple(_coerce(p, "str", f"prompts[{i}]") for i, p in enumerate(prompts))
    negative_prompt = top.get("negative_prompt", "str", "")
    noise = top.child("noise", {})
    noise_seed = noise.get("seed", "int", seed, lambda v: None if 0 <= v < 2**63 else "must be between 0 and 2^63")
    noise.finish()
    img2img = top.child("img2img", {})
    img2img_prompt = img2img.get("prompt", "str", None)
    init_image = img2img.get("init_image", "str", None)
    img2img.finish()
    init_path = (base / init_image) if init_image else None
    if init_path is not None and not init_path.is_file():
        raise JobError(f"img2img.init_image: {init_path} does not exist")
    names: set[str] = set()
    bends = tuple(
        _parse_bend(_Fields(item, f"bends[{i}]"), names) for i, item in enumerate(top.get("bends", "list", []))
    )
    frames = _parse_frames(top.get("frames", "list"), prompts, bends, mode)
    output = top.child("output", {})
    folder = _output_folder(base, output.get("folder", "str", "."), output.path("folder"))
    output.finish()
    top.finish()
    return Job(
        model=model,
        mode=mode,
        width=width,
        height=height,
        steps=steps,
        guidance=guidance,
        seed=seed,
        batch_size=batch_size,
        prompts=prompts,
        negative_prompt=negative_prompt,
        noise_seed=noise_seed,
        img2img_prompt=img2img_prompt,
        init_image=init_path,
        bends=bends,
        frames=frames,
        output_folder=folder,
        fps=fps,
        nonfinite=nonfinite,
    )


def read_job_document(path: Path) -> Any:
    """The decoded JSON of a job file, or a JobError saying why it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise JobError(f"{path}: no such job file") from exc
    except (OSError, ValueError) as exc:  # ValueError: undecodable text, or a NUL in the path
        raise JobError(f"{path}: cannot read the job file: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc


def load_job(path: str | os.PathLike, document: Any = _MISSING) -> Job:
    """Read and validate a job file (``document``: its contents, when the caller has already read them)."""
    path = Path(path)
    data = read_job_document(path) if document is _MISSING else document
    try:
        return parse_job(data, path.parent)
    except EngineError:
        raise
    except (TypeError, ValueError) as exc:  # a value deep in options of a type nothing expected
        raise JobError(f"{path}: {exc}") from exc
