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
import io
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .bends import Bend, check_params, validate_bend
from .catalog import FAMILY_NAMES, JOB_FORMAT, JOB_VERSION, MODES, OPERATORS, PRECISIONS, UNET_TARGET
from .errors import BendError, EngineError, JobError
from .files import read_regular
from .limits import (
    MAX_BATCH_PIXELS,
    MAX_BATCH_SIZE,
    MAX_BENDS,
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENT_DEPTH,
    MAX_FPS,
    MAX_FRAME_NUMBER,
    MAX_FRAME_STEPS,
    MAX_FRAMES,
    MAX_GUIDANCE,
    MAX_IMAGE_BYTES,
    MAX_IMAGE_PIXELS,
    MAX_INT,
    MAX_NUMBER_DIGITS,
    MAX_PROMPTS,
    MAX_SIDE,
    MAX_STEPS,
    MAX_TEXT_CHARS,
)
from .lora import MAX_LORA_WEIGHT, MAX_LORAS, LoraError, LoraSpec, check_lora_file, file_identity
from .noise import NOISE_MODES, default_phases
from .selection import Selection
from .stack import NONFINITE_MODES, PlacedBend, Placement

_MISSING = object()
DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,2})?")
MAX_THREADS = 1024  # torch CPU threads: more than any machine has cores


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
    threads: int = 0  # torch CPU threads; 0: automatic (see models.pick_threads)
    family: str = "auto"  # the model family (families.FAMILIES), or auto: detected from the model's files
    # A diffusers config folder for a single-file checkpoint whose architecture is not its family's shipped one
    # (as the source: a path, "~" expanded); "" uses the family's folder in engine/model_configs/
    config: str = ""


@dataclass(frozen=True)
class FrameSpec:
    """Everything that animates, for one output frame."""

    frame: int
    prompt_weights: tuple[float, ...]
    phase: float
    strength: float
    params: Mapping[str, float | tuple[float, ...]]  # a tuple for an operator with a vector parameter
    loras: Mapping[str, float] = field(default_factory=dict)  # each of the job's LoRAs' weight at this frame


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
    noise_mode: str = "paper"  # the initial-noise walk: the paper's, or the authors' DAFx code's (see noise.py)
    loras: tuple[LoraSpec, ...] = ()  # LoRA files, each with a weight per frame (FrameSpec.loras; see lora.py)

    def frame_seed(self, index: int) -> int:
        """The paper's seeds: the noise seed for every text-to-image frame, seed + i for img2img frame i."""
        return self.noise_seed if self.mode == "txt2img" else self.seed + index

    def recipe(self) -> dict[str, Any]:
        """Everything global that determines the pixels (not the output place, batch size or device)."""
        return {
            "model": [self.model.source, self.model.precision, self.model.scheduler],
            # A named family can change the pixels (a variant's scheduler spacing); auto stays out, so renders made
            # before families existed keep their hashes
            **({"family": self.model.family} if self.model.family != "auto" else {}),
            **({"model_config": self.model.config} if self.model.config else {}),
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
            # Likewise the default noise mode stays out of the recipe, so existing renders keep their hashes
            **({"noise_mode": self.noise_mode} if self.noise_mode != "paper" else {}),
            # A LoRA by its content, not its path: a changed file re-renders, a moved or copied one does not
            **(
                {"loras": [[s.name, file_identity(s.path, f"loras[{i}].path")] for i, s in enumerate(self.loras)]}
                if self.loras
                else {}
            ),
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
        **({"loras": dict(sorted(frame.loras.items()))} if frame.loras else {}),  # absent: earlier hashes hold
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
        return hashlib.sha256(read_regular(path, "img2img.init_image", MAX_IMAGE_BYTES)).hexdigest()
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
            raise JobError(f"{where}: expected an integer, got {_shown(value)}")
        if not -MAX_INT - 1 <= value <= MAX_INT:  # everything integer ends up in int64 (torch, numpy, seeds)
            raise JobError(f"{where}: expected an integer between -2^63 and 2^63 - 1, got {_shown(value)}")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise JobError(f"{where}: expected a number, got {_shown(value)}")
        try:
            number = float(value)  # an integer beyond the float range overflows here
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise JobError(f"{where}: expected a finite number, got {_shown(value)}")
        return number
    if kind == "str":
        if not isinstance(value, str):
            raise JobError(f"{where}: expected a string, got {_type_name(value)}")
        if len(value) > MAX_TEXT_CHARS:
            raise JobError(f"{where}: {len(value):,} characters; the limit is {MAX_TEXT_CHARS:,}")
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


def _shown(value: Any) -> str:
    """A value for an error message, short: a huge integer or list must not make a megabyte-long line."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
        device=fields.get(
            "device",
            "str",
            "auto",
            lambda v: None if DEVICE_NAME.fullmatch(v) else "must be auto, cpu, cuda, cuda:N or mps",
        ),
        precision=fields.get("precision", "str", "auto", _one_of(PRECISIONS)),
        scheduler=fields.get("scheduler", "str", "ddim"),
        memory=fields.get("memory", "str", "normal", _one_of(("normal", "low"))),
        compile=fields.get("compile", "bool", False),
        threads=fields.get(
            "threads", "int", 0, lambda v: None if 0 <= v <= MAX_THREADS else f"must be 0 (automatic) to {MAX_THREADS}"
        ),
        family=fields.get("family", "str", "auto", _one_of(("auto", *FAMILY_NAMES))),
        config=fields.get("config", "str", ""),
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


def _parse_frames(
    items: list,
    prompts: Sequence[str],
    bends: Sequence[PlacedBend],
    mode: str,
    noise_mode: str = "paper",
    loras: Sequence[LoraSpec] = (),
) -> tuple[FrameSpec, ...]:
    if not items:
        raise JobError("frames: at least one frame is required")
    if len(items) > MAX_FRAMES:
        raise JobError(f"frames: {len(items):,} frames; a job holds at most {MAX_FRAMES:,}, so split it into several")
    phases = default_phases(noise_mode, len(items))
    param_bends = [p.bend for p in bends if OPERATORS[p.bend.op].takes_param]
    seen: set[int] = set()
    frames = []
    for index, item in enumerate(items):
        fields = _Fields(item, f"frames[{index}]")
        number = fields.get(
            "frame", "int", check=lambda v: None if 0 <= v <= MAX_FRAME_NUMBER else f"must be 0 to {MAX_FRAME_NUMBER:,}"
        )
        if number in seen:
            raise JobError(f"{fields.path('frame')}: frame {number} appears twice")
        if frames and number < frames[-1].frame:
            raise JobError(f"{fields.path('frame')}: frames must be in increasing order")
        seen.add(number)
        weights = fields.get("prompt_weights", "list", [1.0] if len(prompts) == 1 else _MISSING)
        weights = tuple(_coerce(w, "float", f"{fields.path('prompt_weights')}[{i}]") for i, w in enumerate(weights))
        if len(weights) != len(prompts):
            raise JobError(f"{fields.path('prompt_weights')}: {len(weights)} weights for {len(prompts)} prompts")
        if any(w < 0 for w in weights) or not 0 < sum(weights) < math.inf:  # a sum may overflow
            raise JobError(
                f"{fields.path('prompt_weights')}: weights must be ≥ 0 with a positive, finite sum, got {list(weights)}"
            )
        phase = fields.get("phase", "float", phases[index])
        strength = fields.get(
            "strength", "float", 0.5, lambda v: None if 0.0 <= v <= 1.0 else "must be between 0 and 1"
        )
        values = fields.child("bends", {})
        params = {b.name: _frame_param(values, b, number) for b in param_bends}
        values.finish()
        lora_weights = _frame_loras(fields.child("loras", {}), loras, number)
        fields.finish()
        frames.append(
            FrameSpec(
                frame=number, prompt_weights=weights, phase=phase, strength=strength, params=params, loras=lora_weights
            )
        )
    for bend in param_bends:
        try:
            check_params(bend, [f.params[bend.name] for f in frames], [f.frame for f in frames])
        except BendError as exc:
            raise JobError(f"frames: {exc}") from exc
    return tuple(frames)


def _frame_loras(values: _Fields, loras: Sequence[LoraSpec], frame: int) -> dict[str, float]:
    """A frame's weight for every LoRA of the job: each named, a finite number within ±MAX_LORA_WEIGHT."""
    limit = f"must be between -{MAX_LORA_WEIGHT:g} and {MAX_LORA_WEIGHT:g}"
    weights = {}
    for spec in loras:
        if spec.name not in values.data:
            raise JobError(f"{values.path(spec.name)}: LoRA {spec.name!r} at frame {frame}: required (its weight)")
        weights[spec.name] = values.get(
            spec.name, "float", check=lambda v: None if abs(v) <= MAX_LORA_WEIGHT else limit
        )
    values.finish()  # a name that is not one of the job's LoRAs
    return weights


def _parse_loras(items: list, base: Path, trust_pickle: bool) -> tuple[LoraSpec, ...]:
    """The job's LoRA files: unique names, each file checked (exists, regular, its kind) before anything renders."""
    if len(items) > MAX_LORAS:
        raise JobError(f"loras: {len(items)} LoRAs; the limit is {MAX_LORAS}")
    specs: list[LoraSpec] = []
    for i, item in enumerate(items):
        fields = _Fields(item, f"loras[{i}]")
        name = fields.get("name", "str", check=lambda v: None if v.strip() else "must not be empty")
        if any(s.name == name for s in specs):
            raise JobError(f"{fields.path('name')}: two LoRAs are named {name!r}; LoRA names must be unique")
        path = fields.get("path", "str", check=lambda v: None if v.strip() else "must not be empty")
        fields.finish()
        spec = LoraSpec(name=name, path=base / path)  # an absolute path stays as it is
        try:
            check_lora_file(spec, fields.path("path"), trust_pickle)
        except LoraError as exc:
            raise JobError(str(exc)) from None
        specs.append(spec)
    return tuple(specs)


def _frame_param(values: _Fields, bend: Bend, frame: int) -> float | tuple[float, ...]:
    """One bend parameter of a frame: a number, or for a vector operator a list of its length (kept as a tuple).

    An error names the bend and the frame number, not only the list index."""
    name = bend.name
    param = OPERATORS[bend.op].param
    where = values.path(name)

    def named(exc: JobError, path: str) -> JobError:
        return JobError(f"{path}: bend {name!r} at frame {frame}{str(exc).removeprefix(path)}")

    try:
        if param is None or not param.is_vector:
            return values.get(name, "float")
        items = values.get(name, "list")
    except JobError as exc:
        raise named(exc, where) from None
    if len(items) != param.length:
        raise JobError(
            f"{where}: bend {name!r} at frame {frame}: expected a list of {param.length} numbers "
            f"[{', '.join(param.names)}], got {len(items)}"
        )
    numbers = []
    for i, item in enumerate(items):
        try:
            numbers.append(_coerce(item, "float", f"{where}[{i}]"))
        except JobError as exc:
            raise named(exc, f"{where}[{i}]") from None
    return tuple(numbers)


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
    side = lambda v: None if 8 <= v <= MAX_SIDE and v % 8 == 0 else f"must be a multiple of 8 from 8 to {MAX_SIDE}"  # noqa: E731
    width = top.get("width", "int", 512, side)
    height = top.get("height", "int", 512, side)
    steps = top.get("steps", "int", 50, lambda v: None if 1 <= v <= MAX_STEPS else f"must be between 1 and {MAX_STEPS}")
    guidance = top.get(
        "guidance",
        "float",
        7.5,
        lambda v: None if 0 <= v <= MAX_GUIDANCE else f"must be between 0 and {MAX_GUIDANCE:g}",
    )
    seed = top.get("seed", "int", 46, lambda v: None if 0 <= v < 2**63 else "must be between 0 and 2^63")
    batch_size = top.get(
        "batch_size",
        "int",
        1,
        lambda v: None if 0 <= v <= MAX_BATCH_SIZE else f"must be 0 (auto) to {MAX_BATCH_SIZE}",
    )
    if width * height * max(batch_size, 1) > MAX_BATCH_PIXELS:
        raise JobError(
            f"batch_size: {batch_size} frames of {width}×{height} is {width * height * batch_size:,} pixels in one "
            f"batch, more than the limit of {MAX_BATCH_PIXELS:,}; use batch_size "
            f"{max(1, MAX_BATCH_PIXELS // (width * height))} or less (or 0, auto)"
        )
    fps = top.get("fps", "float", None, lambda v: None if 0 < v <= MAX_FPS else f"must be above 0, at most {MAX_FPS:g}")
    nonfinite = top.get("nonfinite", "str", "error", _one_of(NONFINITE_MODES))
    prompts = top.get("prompts", "list", [""])
    if not prompts:
        raise JobError("prompts: at least one prompt is required (it may be empty)")
    if len(prompts) > MAX_PROMPTS:
        raise JobError(f"prompts: {len(prompts)} prompts; the limit is {MAX_PROMPTS}")
    prompts = tuple(_coerce(p, "str", f"prompts[{i}]") for i, p in enumerate(prompts))
    negative_prompt = top.get("negative_prompt", "str", "")
    noise = top.child("noise", {})
    noise_seed = noise.get("seed", "int", seed, lambda v: None if 0 <= v < 2**63 else "must be between 0 and 2^63")
    noise_mode = noise.get("mode", "str", "paper", _one_of(NOISE_MODES))
    noise.finish()
    img2img = top.child("img2img", {})
    img2img_prompt = img2img.get("prompt", "str", None)
    init_image = img2img.get("init_image", "str", None)
    img2img.finish()
    init_path = (base / init_image) if init_image else None
    if init_path is not None:
        _check_init_image(init_path)
    names: set[str] = set()
    bend_items = top.get("bends", "list", [])
    if len(bend_items) > MAX_BENDS:
        raise JobError(f"bends: {len(bend_items)} bends; the limit is {MAX_BENDS}")
    bends = tuple(_parse_bend(_Fields(item, f"bends[{i}]"), names) for i, item in enumerate(bend_items))
    loras = _parse_loras(top.get("loras", "list", []), base, model.trust_pickle)
    frame_items = top.get("frames", "list")
    if len(frame_items) <= MAX_FRAMES and len(frame_items) * steps > MAX_FRAME_STEPS:  # before parsing them
        raise JobError(
            f"steps: {len(frame_items):,} frames × {steps} steps is {len(frame_items) * steps:,} denoising steps, "
            f"more than the limit of {MAX_FRAME_STEPS:,} (months of rendering); use fewer steps or split the job"
        )
    frames = _parse_frames(frame_items, prompts, bends, mode, noise_mode, loras)
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
        noise_mode=noise_mode,
        loras=loras,
    )


def _check_init_image(path: Path) -> None:
    """A readable image of bounded size, checked from its header before a render starts (not when it is decoded)."""
    from PIL import Image, UnidentifiedImageError

    where = "img2img.init_image"
    try:
        data = read_regular(path, "file", MAX_IMAGE_BYTES)
    except FileNotFoundError:
        raise JobError(f"{where}: {path} does not exist") from None
    except EngineError as exc:  # a FIFO, device or socket, or too large
        raise JobError(f"{where}: {exc}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise JobError(f"{where}: cannot read {path} ({getattr(exc, 'strerror', None) or exc})") from exc
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:  # PIL's plugins raise all of these
        raise JobError(f"{where}: {path} is not an image PIL can read; use a PNG or JPEG file") from exc
    except Image.DecompressionBombError:
        width, height = MAX_IMAGE_PIXELS + 1, 1
    if width * height > MAX_IMAGE_PIXELS or width < 1 or height < 1:
        raise JobError(
            f"{where}: {path} is {width}×{height} pixels; the limit is {MAX_IMAGE_PIXELS:,} pixels "
            f"({MAX_SIDE}×{MAX_SIDE}); scale it down"
        )


def _parse_int(digits: str) -> int:
    if len(digits) > MAX_NUMBER_DIGITS:
        raise JobError(f"an integer of {len(digits):,} digits; no field takes more than {MAX_NUMBER_DIGITS}")
    return int(digits)


def _check_structure(data: Any, where: str) -> None:
    """Refuse nesting deeper than any job has, and strings that are not valid Unicode (lone surrogates from
    ``\\udXXX`` escapes, which no file name, prompt or log can hold). Iterative: deep input cannot overflow a stack."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, path, where)
            continue
        if isinstance(value, dict):
            children = [(v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in value.items()]
            for key in value:
                _check_text(key, path, where)
        elif isinstance(value, list):
            children = [(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        else:
            continue
        if children and depth + 1 > MAX_DOCUMENT_DEPTH:
            raise JobError(
                f"{where}: {path or 'the document'} nests deeper than {MAX_DOCUMENT_DEPTH} levels; no job field does"
            )
        stack.extend(children)


def _check_text(text: str, path: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        shown = json.dumps(path)[1:-1] if path else "a key"
        raise JobError(
            f"{where}: {shown} holds {text[exc.start]!r}, half of a UTF-16 surrogate pair, which is not text; "
            "remove the \\u escape"
        ) from None


def decode_document(raw: bytes | str, where: str) -> Any:
    """Decode a JSON document (a job or sweep file, a serve request line), refusing structural attacks with one
    line that starts with ``where``: too large, not UTF-8, nested too deep, numbers of thousands of digits."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise JobError(f"{where}: {len(raw):,} bytes; the limit is {MAX_DOCUMENT_BYTES:,}")
    if isinstance(raw, str):  # text decoded with surrogateescape keeps undecodable bytes as lone surrogates
        try:
            raw = raw.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise JobError(f"{where}: not UTF-8 text (at character {exc.start}); save it as UTF-8") from None
    try:
        raw = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JobError(
            f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        ) from None
    try:
        data = json.loads(raw, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise JobError(f"{where}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except JobError as exc:
        raise JobError(f"{where}: {exc}") from None
    except RecursionError:
        raise JobError(f"{where}: nests deeper than {MAX_DOCUMENT_DEPTH} levels; no job field does") from None
    _check_structure(data, where)
    return data


def read_job_document(path: Path) -> Any:
    """The decoded JSON of a job file, or a JobError saying why it cannot be read."""
    try:
        raw = read_regular(path, "job file", MAX_DOCUMENT_BYTES)
    except FileNotFoundError as exc:
        raise JobError(f"{path}: no such job file") from exc
    except EngineError as exc:
        raise JobError(str(exc)) from exc
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise JobError(f"{path}: cannot read the job file: {getattr(exc, 'strerror', None) or exc}") from exc
    return decode_document(raw, str(path))


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
