"""The engine's public vocabulary: operator specs, selections, U-Net targets, features, job constants.

This module imports nothing beyond the standard library, so the Blender side can build its menus and properties
from it (and register) before torch, kornia or scipy are installed. The modules that implement these names
import them from here, so the vocabulary is written down once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

JOB_FORMAT = "diffusion-bender-job"
JOB_VERSION = 1
MODES = ("txt2img", "img2img")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
TINY_RANDOM = "tiny-random"

# Short names for the schedulers artists reach for; any other diffusers scheduler class name works too.
SCHEDULER_ALIASES = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "lcm": "LCMScheduler",
}


@dataclass(frozen=True)
class OperatorSpec:
    """What the rest of the engine and the UI need to know about an operator, without calling it."""

    name: str
    summary: str  # one line for docs and the UI, with the paper reference
    takes_param: bool = True
    options: tuple[str, ...] = ()  # allowed option keys
    needs_channels: int | None = None  # the paper's 4×4 matrices only make sense on the 4-channel latent
    spatial: bool = False  # acts on (H, W): meaningful on feature maps, and a candidate for "random_channels"
    required_options: tuple[str, ...] = ()  # options without a sensible default (which channel, which plane)


OPERATORS: dict[str, OperatorSpec] = {
    spec.name: spec
    for spec in (
        OperatorSpec("add", "x + r (paper eq. 1)"),
        OperatorSpec("multiply", "x · r (paper eq. 2)"),
        OperatorSpec("threshold", "1 where x ≥ r, else 0 (paper eq. 3)"),
        OperatorSpec("magnitude_gate", "x where |x| ≥ r, else 0 (the threshold of the paper authors' code)"),
        OperatorSpec("invert", "1/r − x, r ≠ 0 (paper eq. 4)"),
        OperatorSpec("rotate_r1", "R1: rotate channels (1, 2) by r radians (paper 3.1.2)", needs_channels=4),
        OperatorSpec("rotate_r2", "R2: rotate channels (0, 2) by r radians (paper 3.1.2)", needs_channels=4),
        OperatorSpec("rotate_r3", "R3: rotate channels (0, 3) by r radians (paper 3.1.2)", needs_channels=4),
        OperatorSpec("rotate_r4", "R4: rotate channels (0, 1) by r radians (paper 3.1.2)", needs_channels=4),
        OperatorSpec(
            "rotate_plane",
            "rotate channel plane (i, j) by r radians, any channel count (generalises paper 3.1.2)",
            options=("plane",),
            required_options=("plane",),
        ),
        OperatorSpec(
            "reflect",
            "negate channel k: identity with M[k,k] = −1 (paper 3.1.2)",
            takes_param=False,
            options=("channel",),
            required_options=("channel",),
        ),
        OperatorSpec(
            "erode", "erosion with an r×r kernel of ones (paper 3.1.3)", options=("normalize_dim",), spatial=True
        ),
        OperatorSpec(
            "dilate", "dilation with an r×r kernel of ones (paper 3.1.3)", options=("normalize_dim",), spatial=True
        ),
        OperatorSpec(
            "spatial_translate", "shift by r × width or height (Broad et al.)", options=("axis",), spatial=True
        ),
        OperatorSpec("spatial_rotate", "rotate by r degrees about the centre (Broad et al.)", spatial=True),
        OperatorSpec("spatial_scale", "zoom by factor r > 0 about the centre (Broad et al.)", spatial=True),
        OperatorSpec(
            "spatial_flip", "mirror along x or y (Broad et al.)", takes_param=False, options=("axis",), spatial=True
        ),
        OperatorSpec("ablate", "x · 0 (Broad et al.)", takes_param=False),
    )
}

SELECTIONS = ("all", "channel", "row", "column", "random", "random_channels")

UNET_TARGET = re.compile(r"^(conv_in|mid_block|conv_out|down_blocks\.\d+|up_blocks\.\d+)$")
# The targets of a Stable Diffusion 1.x/2.x U-Net (four down and four up blocks), for menus.
SD_UNET_TARGETS = (
    "conv_in",
    *(f"down_blocks.{i}" for i in range(4)),
    "mid_block",
    *(f"up_blocks.{i}" for i in range(4)),
    "conv_out",
)

FEATURE_NAMES: tuple[str, ...] = (
    "rms",
    "centroid",
    "spread",
    "skewness",
    "kurtosis",
    "flux",
    "onset",
    "band_low",
    "band_mid",
    "band_high",
)
NORMALIZATIONS: tuple[str, ...] = ("none", "minmax", "percentile")
