"""Initial noise for text-to-image video: a circular walk through noise space, as the paper writes it or as the
authors ran it.

``paper`` (section 3.2): frame i of k starts from ``A·sin(φ_i) + B·cos(φ_i)``, with A and B two fixed Gaussian
fields drawn from one seed and the paper's phase ``φ_i = 2πi/k``: one loop over the video. Since A and B are
independent N(0, 1), every point of the walk is again N(0, 1) noise, whatever the phase.

``dafx``: the authors' published DAFx code (``vidgen.py`` with ``ldm/models/diffusion/ddim.py``) starts every frame
from the same seeded noise Z and adds 0.3 × a walk: ``Z + 0.3·(cos θ_i·N_x + sin θ_i·N_y)``, with
``θ_i = 2πi/(k − 1)`` (``π·linspace(0, 2, k)``: the first and last frames coincide). The frame stays close to one
image and breathes around it, where the paper's walk wanders through unrelated images. The authors leave N_x and N_y
unseeded; here Z, N_x and N_y are three consecutive draws from one seeded generator. The result is not rescaled
(its standard deviation is √1.09 ≈ 1.04), as theirs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads when the noise is drawn: a job's phases are computed without it
    import torch

NOISE_MODES = ("paper", "dafx")
DAFX_WALK_WEIGHT = 0.3  # the authors' ".3 * noise" in ddim.py


def noise_fields(seed: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """A and B, drawn on the CPU in fp32 so the same seed gives the same fields on every device."""
    import torch

    generator = torch.Generator(device="cpu").manual_seed(seed)
    a = torch.randn(shape, generator=generator, dtype=torch.float32)
    b = torch.randn(shape, generator=generator, dtype=torch.float32)
    return a, b


def paper_phases(n_frames: int) -> list[float]:
    """The paper's phases 2πi/k for i = 0..k-1."""
    return [2.0 * math.pi * i / n_frames for i in range(n_frames)]


def dafx_phases(n_frames: int) -> list[float]:
    """The authors' DAFx phases π·linspace(0, 2, k): 2πi/(k − 1), so the last frame returns to the first (one frame:
    phase 0)."""
    if n_frames == 1:
        return [0.0]
    return [2.0 * math.pi * i / (n_frames - 1) for i in range(n_frames)]


def default_phases(mode: str, n_frames: int) -> list[float]:
    """The phases a job's frames get when they give none, for noise mode ``mode``."""
    return dafx_phases(n_frames) if mode == "dafx" else paper_phases(n_frames)


def circular_walk(a: torch.Tensor, b: torch.Tensor, phases: Sequence[float]) -> torch.Tensor:
    """Stack ``A·sin(φ) + B·cos(φ)`` for each phase: shape ``(len(phases), *A.shape)``."""
    import torch

    phase = torch.tensor(list(phases), dtype=a.dtype, device=a.device).view(-1, *([1] * a.dim()))
    return a.unsqueeze(0) * torch.sin(phase) + b.unsqueeze(0) * torch.cos(phase)


@dataclass(frozen=True)
class NoiseWalk:
    """The fixed fields of a job's noise; ``at(phases)`` gives the initial noise of frames at those phases."""

    a: torch.Tensor  # the sine field (the DAFx code's N_y)
    b: torch.Tensor  # the cosine field (N_x)
    base: torch.Tensor | None = None  # the DAFx code's fixed noise Z; None for the paper's walk
    weight: float = 1.0

    def at(self, phases: Sequence[float]) -> torch.Tensor:
        walk = circular_walk(self.a, self.b, phases)
        if self.base is None:
            return walk
        return self.base.unsqueeze(0) + self.weight * walk


def noise_walk(seed: int, shape: tuple[int, ...], mode: str = "paper") -> NoiseWalk:
    """The walk of noise mode ``mode`` (``NOISE_MODES``) from ``seed``, drawn on the CPU in fp32."""
    if mode == "paper":
        return NoiseWalk(*noise_fields(seed, shape))
    if mode == "dafx":
        import torch

        generator = torch.Generator(device="cpu").manual_seed(seed)
        base, nx, ny = (torch.randn(shape, generator=generator, dtype=torch.float32) for _ in range(3))
        return NoiseWalk(a=ny, b=nx, base=base, weight=DAFX_WALK_WEIGHT)
    raise ValueError(f"noise.mode: must be one of {', '.join(NOISE_MODES)}, got {mode!r}")
