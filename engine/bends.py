"""Bends: one operator, its options and a feature selection, applied with per-sample parameters.

A bend is the paper's unit of network bending (section 3): an operator (section 3.1), its parameter r and the
features it applies to. Where it applies (latent layer k, or a U-Net hook) is decided by the caller; this module
only validates bends and applies them to a tensor.

Validation is generated from each operator's one description in ``catalog.OPERATORS`` (its ``ParamSpec`` and
option keys) and each option's in ``catalog.OPTIONS``, and split by what it needs:
- ``validate_bend``: the bend alone (operator name, option keys and values, selection fields);
- ``check_params``: the host-side parameter values (a number, or a list of the right length for a vector
  parameter; finite; in the parameter's domain, e.g. r ≠ 0 for invert), so a job can be checked frame by frame
  before anything renders, with messages that name the frame;
- ``apply_bend``: the tensor's shape (4 channels for the 4×4 matrices, channel / plane / row / column indexes in
  range, a square 2^k map for the spatial Hadamard), and it repeats the two checks above, which are cheap and
  host-only, so a bend can never fail deep inside torch.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .catalog import OPERATORS, OPTIONS, OperatorSpec, ParamSpec
from .errors import BendError
from .selection import Selection, selection_mask, validate_selection

if TYPE_CHECKING:  # torch loads when a bend is applied: a job is parsed and checked without it (a fast cold start)
    import torch
    from torch import Tensor

__all__ = ["Bend", "ParamBatch", "apply_bend", "check_params", "validate_bend"]

# A value beyond this overflows to inf as soon as it reaches a float32 tensor: torch.finfo(torch.float32).max,
# written out so that checking a job's values needs no torch (tests/test_cold_start.py compares the two)
_FLOAT32_MAX = 3.4028234663852886e38


Value = float | tuple[float, ...]  # one sample's parameter: a number, or a vector for a vector operator


def _number(raw: Any) -> float:
    """float(raw), with TypeError for anything float() refuses (a nested list, a word)."""
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise TypeError(raw) from None


def _value(raw: Any) -> Value:
    """One sample's value as a float or a tuple of floats (a vector parameter)."""
    if isinstance(raw, list | tuple):
        return tuple(_number(v) for v in raw)
    return _number(raw)


@dataclass(frozen=True)
class ParamBatch:
    """Per-sample parameter values: host values (for validation and integer-valued params) and a cached device tensor.

    ``values[n]`` is the parameter of sample n: a float, or a tuple of floats for a vector parameter (six angles,
    sixteen matrix entries). ``frames[n]``, when given, is sample n's frame number: operators that draw random
    numbers (``gaussian_noise``) seed them from it, so a frame's noise does not depend on its batch. The host copy
    is what validation and kernel sizes read, so operators never read the device tensor back; the device tensor
    is made once per (device, dtype) and reused by every call on the same batch (a U-Net hook runs once per step).
    """

    values: tuple[Value, ...]
    frames: tuple[int, ...] | None = None
    _cache: dict[Any, Any] = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        try:
            values = tuple(_value(v) for v in self.values)
        except (TypeError, ValueError) as exc:
            raise BendError(f"parameter values must be numbers or lists of numbers, got {self.values!r}") from exc
        object.__setattr__(self, "values", values)
        if self.frames is not None:
            frames = tuple(int(f) for f in self.frames)
            if len(frames) != len(values):
                raise BendError(f"{len(values)} parameter value(s) for {len(frames)} frame number(s)")
            object.__setattr__(self, "frames", frames)

    def tensor(self, device: torch.device | str, dtype: torch.dtype) -> Tensor:
        """The values as an (N,) tensor, or (N, K) for K-vectors, on ``device`` in ``dtype``; one host→device copy
        per (device, dtype)."""
        import torch

        key = (torch.device(device), dtype)
        cached = self._cache.get(key)
        if cached is None:
            try:
                cached = torch.tensor(self.values, dtype=dtype, device=key[0])
            except (TypeError, ValueError) as exc:  # vectors of different lengths, or vectors mixed with numbers
                raise BendError(f"parameter values of different lengths in one batch: {self.values!r}") from exc
            self._cache[key] = cached
        return cached

    def sample_frames(self) -> tuple[int, ...]:
        """Each sample's frame number; without frame numbers, its index in the batch."""
        return self.frames if self.frames is not None else tuple(range(len(self.values)))

    def for_batch(self, n: int) -> ParamBatch:
        """These values for a batch of ``n`` samples: themselves, or tiled k times when n = k · len(values).

        Tiling is the classifier-free-guidance case: the U-Net sees [uncond..., cond...], each half being the
        frames in order, so both halves get the same per-frame values (and frame numbers). The tiled batch is
        cached, so its device tensor is also made only once.
        """
        count = len(self.values)
        if n == count:
            return self
        if count == 0 or n % count:
            raise BendError(
                f"{count} parameter value(s) do not fit a batch of {n} samples; give one value per sample "
                "(with classifier-free guidance, one per sample of the un-doubled batch)"
            )
        key = ("tiled", n)
        tiled = self._cache.get(key)
        if tiled is None:
            frames = None if self.frames is None else self.frames * (n // count)
            tiled = ParamBatch(self.values * (n // count), frames)
            self._cache[key] = tiled
        return tiled


def _freeze(value: Any) -> Any:
    """Make an option value immutable, so a Bend cannot change after validation (JSON lists become tuples)."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value


@dataclass(frozen=True)
class Bend:
    """One bend: operator ``op`` (a key of ``operators.OPERATORS``) with ``options``, applied to ``selection``.

    ``options`` is stored as a read-only mapping with lists turned into tuples, so {"plane": [1, 2]} from a job
    file equals {"plane": (1, 2)}. It takes part in == but not in hash() (a mapping has no hash), which keeps
    Bend hashable and equal bends equal-hashing.
    """

    name: str
    op: str
    selection: Selection = field(default_factory=Selection)
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        options = {} if self.options is None else self.options
        if not isinstance(options, Mapping):
            raise BendError(f"bend {self.name!r}: options must be a mapping, got {type(options).__name__}")
        object.__setattr__(self, "options", MappingProxyType({k: _freeze(v) for k, v in options.items()}))


def _spec(bend: Bend) -> OperatorSpec:
    spec = OPERATORS.get(bend.op) if isinstance(bend.op, str) else None
    if spec is None:
        raise BendError(f"bend {bend.name!r}: unknown operator {bend.op!r}; valid operators: {', '.join(OPERATORS)}")
    return spec


def _check_option(bend: Bend, key: str, value: Any) -> None:
    """Check one option's value against its one description in ``catalog.OPTIONS``."""
    problem = OPTIONS[key].problem(value)
    if problem:
        raise BendError(f"bend {bend.name!r} ({bend.op}): option {key!r} {problem}")


def validate_bend(bend: Bend) -> None:
    """Check a bend on its own (no tensor, no parameters); raise BendError naming the bend if it is invalid."""
    if not isinstance(bend.name, str) or not bend.name:
        raise BendError(f"a bend's name must be a non-empty string, got {bend.name!r}")
    spec = _spec(bend)
    unknown = sorted(str(k) for k in bend.options if k not in spec.options)
    if unknown:
        allowed = f"allowed: {', '.join(spec.options)}" if spec.options else "it takes no options"
        raise BendError(f"bend {bend.name!r} ({bend.op}): unknown option(s) {', '.join(unknown)}; {allowed}")
    missing = [k for k in spec.required_options if k not in bend.options]
    if missing:
        raise BendError(f"bend {bend.name!r} ({bend.op}): missing option(s) {', '.join(missing)}")
    for key, value in bend.options.items():
        _check_option(bend, key, value)
    validate_selection(bend.selection, bend.name)


def _show(value: float) -> str:
    """A value as short as possible but never misleadingly rounded (0.4999999 must not print as 0.5)."""
    short = f"{value:g}"
    return short if math.isnan(value) or float(short) == value else repr(value)


def check_params(bend: Bend, values: Sequence[Any], frames: Sequence[int] | None = None) -> None:
    """Check parameter values on the host against the operator's ``ParamSpec``; raise BendError naming the bend,
    the value and the frame.

    ``frames[i]``, when given, is the frame of ``values[i]`` and goes into the message; otherwise the sample index
    does. Operators without a parameter ignore their values. Each value must be a number (a list of the spec's
    length for a vector parameter), finite, within float32, and in the spec's domain (e.g. r ≠ 0 for invert, a
    kernel size round(r) ≥ 1 for erode/dilate, r > 0 for spatial_scale); a range must be ordered (low ≤ high).
    """
    spec = _spec(bend)
    param = spec.param
    if param is None:
        return
    if frames is not None and len(frames) != len(values):
        raise BendError(f"bend {bend.name!r}: {len(values)} parameter values for {len(frames)} frames")
    if len(values) == 0:
        raise BendError(f"bend {bend.name!r} ({bend.op}) needs a parameter value per sample, got none")
    for i, raw in enumerate(values):
        where = f"bend {bend.name!r} ({bend.op}) at " + (f"frame {frames[i]}" if frames is not None else f"sample {i}")
        if param.is_vector:
            if not isinstance(raw, list | tuple) or len(raw) != param.length:
                raise BendError(
                    f"{where}: expects a list of {param.length} numbers [{', '.join(param.names)}], got {raw!r}"
                )
            components = list(zip(param.names, raw, strict=True))
        else:
            if isinstance(raw, list | tuple):
                raise BendError(f"{where}: expects one number, got a list {list(raw)!r}")
            components = [("r", raw)]
        numbers = [_check_number(where, name, value, param) for name, value in components]
        if param.ordered and any(a > b for a, b in itertools.pairwise(numbers)):
            raise BendError(
                f"{where}: {', '.join(param.names)} = {', '.join(_show(v) for v in numbers)} is not a range; "
                f"use {' ≤ '.join(param.names)}"
            )


def _check_number(where: str, name: str, raw: Any, param: ParamSpec) -> float:
    """One number of a parameter: finite, within float32, in the domain."""
    try:
        r = _number(raw)
    except TypeError:
        raise BendError(f"{where}: {name} = {raw!r} is not a number") from None
    if not math.isfinite(r):
        raise BendError(f"{where}: {name} = {_show(r)} is not a finite number; use a finite value")
    if abs(r) > _FLOAT32_MAX:
        raise BendError(f"{where}: {name} = {_show(r)} is too large for a float32 tensor; use |{name}| ≤ 3.4e38")
    problem = param.domain.problem(r)
    if problem:
        raise BendError(f"{where}: {name} = {_show(r)} {problem}")
    return r


def _check_tensor(bend: Bend, spec: OperatorSpec, x: Tensor) -> None:
    """The checks that need x's shape: channel count and channel indexes in options."""
    from torch import Tensor

    where = f"bend {bend.name!r} ({bend.op})"
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise BendError(f"{where}: expects a floating-point (N, C, H, W) tensor, got {shape}")
    channels = x.shape[1]
    if spec.needs_channels is not None and channels != spec.needs_channels:
        n = spec.needs_channels
        raise BendError(
            f"{where}: its {n}×{n} channel matrix needs a {n}-channel tensor (the latent), got {channels} channels; "
            "to rotate two channels of a feature map use 'rotate_plane' with option plane [i, j]"
        )
    height, width = x.shape[2], x.shape[3]
    if spec.needs_square_power_of_two and (height != width or height & (height - 1)):
        raise BendError(
            f"{where}: a Hadamard matrix needs a square map whose side is a power of two, got {height}×{width}; "
            "use an output size whose latent side is 2^k (e.g. 512×512 gives 64×64)"
        )
    for key in spec.options:
        if OPTIONS[key].channel_index and key in bend.options:
            value = bend.options[key]
            for index in value if isinstance(value, tuple) else (value,):
                if index is not None and index >= channels:
                    raise BendError(
                        f"{where}: channel {index} is out of range for a tensor of {channels} channels "
                        f"(0..{channels - 1})"
                    )


def apply_bend(bend: Bend, x: Tensor, params: ParamBatch | None = None) -> Tensor:
    """Apply ``bend`` to the batch ``x`` (N, C, H, W) with per-sample ``params``; return a new tensor.

    ``params`` holds one value per sample, or per sample of half the batch under classifier-free guidance (it is
    tiled with ``ParamBatch.for_batch``); it is ignored, and may be None, for operators without a parameter.
    With a selection mask m the result is where(m, op(x), x): the operator runs on the whole tensor and only the
    selected elements are kept. For point-wise operators this is the same as applying it to the selection alone.
    For the rotations and reflections (which mix channels) and the morphological and spatial operators (which mix
    neighbours) it means: transform the whole tensor, then keep the transformed values only where selected; e.g.
    R1 with a row selection replaces that row by the rotated row and leaves the rest of the latent as it was.
    """
    import torch

    from .operators import apply_operator  # torch and the operators' libraries load with the first bend applied

    validate_bend(bend)
    spec = OPERATORS[bend.op]
    _check_tensor(bend, spec, x)
    batch = x.shape[0]
    if spec.takes_param:
        if params is None:
            raise BendError(f"bend {bend.name!r} ({bend.op}) needs a parameter value per sample, got none")
        count = len(params.values)
        if count == 0 or batch % count:
            raise BendError(
                f"bend {bend.name!r} ({bend.op}): {count} parameter value(s) do not fit a batch of {batch} samples; "
                "give one value per sample (with classifier-free guidance, one per sample of the un-doubled batch)"
            )
        check_params(bend, params.values)
        params = params.for_batch(batch)
    # The mask is built (and its index checked) before the operator runs, so a bad selection costs no compute
    mask = selection_mask(bend.selection, (x.shape[1], x.shape[2], x.shape[3]), x.device, bend.name)
    if x.numel() == 0:
        return x.clone()  # nothing to bend, and kornia's kernels reject empty maps
    out = apply_operator(bend.op, x, params, bend.options)
    return out if mask is None else torch.where(mask, out, x)
