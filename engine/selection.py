"""Feature selection: which elements of an (N, C, H, W) tensor a bend changes (paper section 3, "Feature").

The paper applies an operator to all elements of the latent, to a single dimension of it (one channel, row or
column), or to a random selection of its features ("5% of features"). Broad et al. select whole channels of a
feature map; "random_channels" is that, and pairs naturally with the spatial operators.

Kinds (``SELECTIONS``, which the Blender side offers too):
    all              every element (no mask at all)
    channel          channel ``index``                     mask shape (1, C, 1, 1)
    row              row ``index`` of every channel        mask shape (1, 1, H, 1)
    column           column ``index`` of every channel     mask shape (1, 1, 1, W)
    random           each element with probability ``fraction``, seeded     (1, C, H, W)
    random_channels  each channel with probability ``fraction``, seeded     (1, C, 1, 1)
    random_rows      exactly floor(fraction · H) rows, seeded               (1, 1, H, 1)
    random_columns   exactly floor(fraction · W) columns, seeded            (1, 1, 1, W)

The last two are the authors' later code's add_rand_rows / add_rand_cols (``random.sample`` of int(k · size)
rows or columns), generalised from adding r to any operator; drawn as the first floor(fraction · size) entries of
a seeded permutation.

Random masks are drawn on the CPU from ``torch.Generator().manual_seed(seed)`` and then moved to the device, so the
same (seed, shape) gives the same mask on every frame, in every process and on every device; the authors reset
the seed each frame for the same effect. Masks are cached per (selection, shape, device).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .catalog import SELECTION_KINDS, SELECTIONS
from .errors import BendError

if TYPE_CHECKING:  # torch loads when a mask is first built: a job's selections are checked without it
    import torch
    from torch import Tensor

__all__ = [
    "RANDOM_KINDS",
    "SELECTIONS",
    "SELECTION_KINDS",
    "Selection",
    "clear_selection_cache",
    "selection_mask",
    "validate_selection",
]


# The seeded random kinds: they use ``fraction`` and ``seed``
RANDOM_KINDS = ("random", "random_channels", "random_rows", "random_columns")

# Index kind → (position of its axis in (C, H, W), its name in messages)
_INDEXED: dict[str, tuple[int, str]] = {"channel": (0, "channels"), "row": (1, "rows"), "column": (2, "columns")}

_MAX_SEED = 2**64  # torch.Generator.manual_seed takes at most an unsigned 64-bit seed


@dataclass(frozen=True)
class Selection:
    """Which elements a bend changes. Only the fields its ``kind`` uses matter."""

    kind: str = "all"
    index: int = 0  # for channel / row / column
    fraction: float = 0.05  # for random / random_channels: the paper's "5% of features"
    seed: int = 0  # for random / random_channels


def _is_int(value: object) -> bool:
    # bool is an int subclass, but "index": true in a job file is a mistake, not channel 1
    return isinstance(value, int) and not isinstance(value, bool)


def validate_selection(selection: Selection, bend_name: str) -> None:
    """Check everything about a selection that does not depend on the tensor's shape; raise BendError if wrong."""
    where = f"bend {bend_name!r}"
    if not isinstance(selection, Selection):
        raise BendError(f"{where}: selection must be a Selection, got {type(selection).__name__}")
    if selection.kind not in SELECTION_KINDS:
        raise BendError(
            f"{where}: unknown selection {selection.kind!r}; valid selections: {', '.join(SELECTION_KINDS)}"
        )
    if selection.kind in _INDEXED:
        if not _is_int(selection.index):
            raise BendError(f"{where}: {selection.kind} index must be an integer, got {selection.index!r}")
        if selection.index < 0:
            raise BendError(f"{where}: {selection.kind} {selection.index} is negative; indexes start at 0")
    if selection.kind in RANDOM_KINDS:
        fraction = selection.fraction
        valid_number = isinstance(fraction, int | float) and not isinstance(fraction, bool)
        if not valid_number or not 0.0 <= fraction <= 1.0:  # also rejects NaN, for which every comparison is False
            raise BendError(f"{where}: {selection.kind} fraction {fraction!r} must be between 0 and 1 (0.05 = 5%)")
        if not _is_int(selection.seed) or not 0 <= selection.seed < _MAX_SEED:
            raise BendError(f"{where}: {selection.kind} seed {selection.seed!r} must be an integer in 0..2**64-1")


def selection_mask(
    selection: Selection, shape: tuple[int, int, int], device: torch.device | str, bend_name: str
) -> Tensor | None:
    """The bool mask of the elements ``selection`` picks in a (C, H, W) = ``shape`` tensor, on ``device``.

    Returns None for "all", so callers skip masking entirely; otherwise a mask broadcastable to (N, C, H, W) (see
    the module docstring for its shape per kind). The result is cached and shared: do not modify it in place.
    Raises BendError naming ``bend_name`` when the selection is invalid or its index is outside ``shape``.
    """
    validate_selection(selection, bend_name)
    if selection.kind == "all":
        return None
    shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    if selection.kind in _INDEXED:
        axis, noun = _INDEXED[selection.kind]
        size = shape[axis]
        if selection.index >= size:
            raise BendError(
                f"bend {bend_name!r}: {selection.kind} {selection.index} is out of range for a tensor of {size} "
                f"{noun} (0..{size - 1})"
            )
    import torch

    return _cached_mask(selection, shape, torch.device(device))


@functools.lru_cache(maxsize=64)
def _cached_mask(selection: Selection, shape: tuple[int, int, int], device: torch.device) -> Tensor:
    """Build a mask once per (selection, shape, device): the random ones cost a CPU draw and a host→device copy."""
    import torch

    channels, height, width = shape
    kind = selection.kind
    if kind in _INDEXED:
        axis, _ = _INDEXED[kind]
        view = [1, 1, 1, 1]
        view[axis + 1] = shape[axis]
        # arange on the device: no host→device copy, just a tiny kernel
        return torch.arange(shape[axis], device=device).view(view) == selection.index
    generator = torch.Generator().manual_seed(selection.seed)
    if kind == "random":
        drawn = torch.rand((channels, height, width), generator=generator) < selection.fraction
        return drawn.unsqueeze(0).to(device)
    if kind == "random_channels":
        drawn = torch.rand((channels,), generator=generator) < selection.fraction
        return drawn.view(1, channels, 1, 1).to(device)
    if kind in ("random_rows", "random_columns"):
        axis = 1 if kind == "random_rows" else 2
        size = shape[axis]
        # int(), like the authors' int(k · dim): a fraction of a row is no row
        picked = torch.randperm(size, generator=generator)[: int(selection.fraction * size)]
        drawn = torch.zeros(size, dtype=torch.bool)
        drawn[picked] = True
        view = [1, 1, 1, 1]
        view[axis + 1] = size
        return drawn.view(view).to(device)
    raise AssertionError(f"unhandled selection kind {kind!r}")  # validate_selection admits only SELECTION_KINDS


def clear_selection_cache() -> None:
    """Drop cached masks (they may hold device memory), e.g. between jobs in a long-lived process."""
    _cached_mask.cache_clear()
