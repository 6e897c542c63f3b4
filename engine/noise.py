"""Initial noise for text-to-image video: the paper's circular walk through noise space.

Frame i of k starts from ``A·sin(φ_i) + B·cos(φ_i)`` (section 3.2), with A and B two fixed Gaussian fields drawn
from one seed and the paper's phase ``φ_i = 2πi/k``: one loop over the video. Since A and B are independent
N(0, 1), every point of the walk is again N(0, 1) noise, whatever the phase.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def noise_fields(seed: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """A and B, drawn on the CPU in fp32 so the same seed gives the same fields on every device."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    a = torch.randn(shape, generator=generator, dtype=torch.float32)
    b = torch.randn(shape, generator=generator, dtype=torch.float32)
    return a, b


def paper_phases(n_frames: int) -> list[float]:
    """The paper's phases 2πi/k for i = 0..k-1."""
    return [2.0 * math.pi * i / n_frames for i in range(n_frames)]


def circular_walk(a: torch.Tensor, b: torch.Tensor, phases: Sequence[float]) -> torch.Tensor:
    """Stack ``A·sin(φ) + B·cos(φ)`` for each phase: shape ``(len(phases), *A.shape)``."""
    phase = torch.tensor(list(phases), dtype=a.dtype, device=a.device).view(-1, *([1] * a.dim()))
    return a.unsqueeze(0) * torch.sin(phase) + b.unsqueeze(0) * torch.cos(phase)
