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
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .bends import Bend, ParamBatch, apply_bend
from .errors import BendError


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

    def __init__(self, placed: Sequence[PlacedBend]) -> None:
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
            x = apply_bend(bend, x, params[bend.name])
        return x

    @contextmanager
    def unet_hooks(self, unet: torch.nn.Module, state: HookState) -> Iterator[None]:
        """Register a forward hook per U-Net bend for the duration of the block; none when there are none."""
        handles = []
        try:
            for placed in self.unet:
                module = _find_module(unet, placed)
                handles.append(module.register_forward_hook(_make_hook(placed, state)))
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


def _make_hook(placed: PlacedBend, state: HookState):
    bend, placement = placed.bend, placed.placement

    def hook(module: torch.nn.Module, inputs: tuple, output):
        if not placement.active_at(state.step):
            return None
        params = state.params[bend.name]
        if isinstance(output, tuple):
            return (apply_bend(bend, output[0], params), *output[1:])
        return apply_bend(bend, output, params)

    return hook
