"""Where bends apply: a stack of bends placed at latent layers or inside the U-Net, applied in order.

Latent layers follow the paper and the authors' code exactly. With S the number of sampling steps that run:

* layer k, 0 ≤ k < S, bends the latent that goes *into* step k (k = 0 is the initial noise, or in
  image-to-image the noised init latent);
* layer S bends the final latent before the VAE decodes it. As in the authors' code, any layer ≥ S lands
  there, so a layer keyframed for 50 steps still applies when a frame runs fewer.

The bent latent is duplicated for classifier-free guidance afterwards, so both branches see it.

U-Net bends are forward hooks on named modules (``conv_in``, ``down_blocks.N``, ``mid_block``, ``up_blocks.N``,
``conv_out``), active for steps ``step_start <= step < step_end``. A hook replaces the module's output (for the
down blocks, the hidden state passed on to the next block; their skip connections are left as they were).
Hooks are registered only for the duration of a render and only when a U-Net bend exists: no bend, no hook.

A bend can push values past what the dtype holds (a large multiply overflows to inf, and inf − inf later is NaN),
which would silently decode to a black or garbage frame. So every applied bend's result is checked with one
``isfinite`` reduction. ``nonfinite="error"`` (the default) raises a BendError naming the bend;
``nonfinite="clamp"`` repairs the tensor per sample: NaN becomes 0, +inf the largest finite value of that sample
and −inf its smallest (0 when the sample has none), so an overflowing bend saturates instead of failing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .bends import Bend, ParamBatch, apply_bend
from .errors import BendError

if TYPE_CHECKING:  # torch loads when a bend is applied: a job's placements are parsed without it
    import torch

NONFINITE_MODES = ("error", "clamp")


@dataclass(frozen=True)
class Placement:
    """Either a latent layer, or a U-Net target with a step range (``step_end`` None: to the last step)."""

    latent_layer: int | None = None
    unet_target: str | None = None
    step_start: int = 0
    step_end: int | None = None

    def active_at(self, step: int) -> bool:
        return self.step_start <= step and (self.step_end is None or step < self.step_end)


@dataclass(frozen=True)
class PlacedBend:
    bend: Bend
    placement: Placement


@dataclass
class HookState:
    """What the U-Net hooks need to know about the call in progress; the sampler updates it every step."""

    step: int = 0
    params: Mapping[str, ParamBatch] = field(default_factory=dict)


class BendStack:
    """The job's bends in order, indexed by where they apply."""

    def __init__(self, placed: Sequence[PlacedBend], nonfinite: str = "error") -> None:
        if nonfinite not in NONFINITE_MODES:
            raise BendError(f"nonfinite: must be one of {', '.join(NONFINITE_MODES)}, got {nonfinite!r}")
        self.nonfinite = nonfinite
        self.placed = list(placed)
        self.latent = [p for p in self.placed if p.placement.latent_layer is not None]
        self.unet = [p for p in self.placed if p.placement.unet_target is not None]
        self._by_layer: dict[int, list[Bend]] = {}
        for p in self.latent:
            self._by_layer.setdefault(p.placement.latent_layer, []).append(p.bend)

    def latent_bends(self, layer: int, steps_run: int) -> list[Bend]:
        """Bends for latent layer ``layer`` of a run of ``steps_run`` steps; layer S collects every layer ≥ S."""
        if layer < steps_run:
            return self._by_layer.get(layer, [])
        return [p.bend for p in self.latent if p.placement.latent_layer >= steps_run]

    def apply_latent(
        self, layer: int, steps_run: int, x: torch.Tensor, params: Mapping[str, ParamBatch]
    ) -> torch.Tensor:
        for bend in self.latent_bends(layer, steps_run):
            x = finite(apply_bend(bend, x, params[bend.name]), bend, "the latent", self.nonfinite)
        return x

    @contextmanager
    def unet_hooks(self, unet: torch.nn.Module, state: HookState) -> Iterator[None]:
        """Register a forward hook per U-Net bend for the duration of the block; none when there are none."""
        handles = []
        try:
            for placed in self.unet:
                module = _find_module(unet, placed)
                handles.append(module.register_forward_hook(_make_hook(placed, state, self.nonfinite)))
            yield
        finally:
            for handle in handles:
                handle.remove()


def _find_module(unet: torch.nn.Module, placed: PlacedBend) -> torch.nn.Module:
    target = placed.placement.unet_target
    try:
        return unet.get_submodule(target)
    except AttributeError as exc:
        names = [n for n, _ in unet.named_children() if n in ("conv_in", "mid_block", "conv_out")]
        for blocks in ("down_blocks", "up_blocks"):
            names += [f"{blocks}.{i}" for i in range(len(getattr(unet, blocks, [])))]
        raise BendError(
            f"bend {placed.bend.name!r}: this U-Net has no {target!r}; targets are {', '.join(names)}"
        ) from exc


def finite(x: torch.Tensor, bend: Bend, what: str, mode: str) -> torch.Tensor:
    """``x`` as a bend left it, checked for NaN and inf: an error naming the bend, or clamped (``mode``)."""
    import torch

    ok = torch.isfinite(x)
    if bool(ok.all()):  # the one host sync per applied bend; the repair below runs only when it is needed
        return x
    if mode == "error":
        raise BendError(
            f"bend {bend.name!r} ({bend.op}) made {what} non-finite (NaN or infinity); use a smaller parameter, "
            'or set "nonfinite": "clamp" in the job to saturate such values instead'
        )
    # Per sample, so a frame's result never depends on which frames share its batch
    dims = tuple(range(1, x.dim()))
    low = torch.where(ok, x, torch.inf).amin(dim=dims, keepdim=True)
    high = torch.where(ok, x, -torch.inf).amax(dim=dims, keepdim=True)
    low, high = torch.where(low.isfinite(), low, 0.0), torch.where(high.isfinite(), high, 0.0)
    return torch.where(ok, x, torch.where(x.isnan(), 0.0, torch.where(x > 0, high, low))).to(x.dtype)


def _make_hook(placed: PlacedBend, state: HookState, nonfinite: str):
    bend, placement = placed.bend, placed.placement
    what = f"the output of {placement.unet_target}"

    def hook(module: torch.nn.Module, inputs: tuple, output):
        if not placement.active_at(state.step):
            return None
        params = state.params[bend.name]
        if isinstance(output, tuple):
            return (finite(apply_bend(bend, output[0], params), bend, what, nonfinite), *output[1:])
        return finite(apply_bend(bend, output, params), bend, what, nonfinite)

    return hook
