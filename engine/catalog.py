"""The engine's public vocabulary: operator specs, selections, U-Net targets, features, job constants.

This module imports nothing beyond the standard library, so the Blender side can build its menus and properties
from it (and register) before torch, kornia or scipy are installed. The modules that implement these names
import them from here, so the vocabulary is written down once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

JOB_FORMAT = "diffusion-bender-job"
JOB_VERSION = 1
MODES = ("txt2img", "img2img")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
TINY_RANDOM = "tiny-random"
# A small SD-architecture model the project trains itself (scripts/toy_model/), shipped in models/toy-shapes.
TOY_SHAPES = "toy-shapes"

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
class Domain:
    """The numbers a parameter (or each component of a vector parameter) may take, beyond being finite.

    ``low``/``high`` are bounds (None: unbounded), inclusive unless ``low_open``/``high_open``; ``excluded`` lists
    single values that are refused, each with the reason shown to the user. ``meaning`` says what a value out of
    bounds does wrong (e.g. "gives a kernel size below 1"), for the one-line error.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    excluded: tuple[tuple[float, str], ...] = ()
    meaning: str = "is out of range"

    def bounds(self) -> str:
        """The bounds in words: "any number", "> 0", "≥ 0.5", "between 0 and 1"."""
        low = None if self.low is None else f"{'>' if self.low_open else '≥'} {self.low:g}"
        high = None if self.high is None else f"{'<' if self.high_open else '≤'} {self.high:g}"
        if low and high:
            return f"{low} and {high}"
        return low or high or "any number"

    def describe(self) -> str:
        """The whole domain in words, for docs, tooltips and errors."""
        text = self.bounds()
        return text + "".join(f", ≠ {value:g}" for value, _ in self.excluded)

    def problem(self, value: float) -> str | None:
        """Why ``value`` is not in the domain (a phrase that follows "r = value"), or None when it is."""
        for excluded, reason in self.excluded:
            if value == excluded:
                return f"{reason}; use a value other than {excluded:g}"
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if too_low or too_high:
            return f"{self.meaning}; use a value {self.bounds()}"
        return None


ANY_NUMBER = Domain()


@dataclass(frozen=True)
class ParamSpec:
    """An operator's animated parameter: one number per frame, or a vector of named numbers per frame.

    A vector parameter (``names`` non-empty) travels in the job as a list per frame, e.g. six angles; each name is
    one animatable channel on the Blender side. ``ordered`` requires components in non-decreasing order (a range
    [low, high]).
    """

    description: str  # what r means, with its unit
    default: float | tuple[float, ...] = 0.0  # the identity where the operator has one
    domain: Domain = ANY_NUMBER
    names: tuple[str, ...] = ()
    ordered: bool = False

    @property
    def is_vector(self) -> bool:
        return bool(self.names)

    @property
    def length(self) -> int:
        return len(self.names) if self.names else 1


@dataclass(frozen=True)
class OptionSpec:
    """One option key, described once for every operator that takes it (the Blender side has one property per key).

    ``kind`` is "int" (an integer in [low, high]; with ``size`` > 1 a list of that many, pairwise different when
    ``distinct``), or "choice" (one of ``choices``). ``nullable``: null is also valid (it means ``default``'s
    "off"). ``channel_index``: the value indexes the tensor's channels, so it is range-checked against the tensor.
    """

    name: str
    kind: str
    description: str
    default: object = None
    low: int | None = None
    high: int | None = None
    size: int = 1
    distinct: bool = False
    choices: tuple[object, ...] = ()
    nullable: bool = False
    channel_index: bool = False

    def describe(self) -> str:
        """What the option takes, in words (for errors and docs)."""
        if self.kind == "choice":
            text = " or ".join(repr(c) for c in self.choices)
        else:
            span = f"{self.low}..{self.high}" if self.high is not None else f"≥ {self.low}"
            text = f"an integer {span}" if self.size == 1 else f"{self.size} integers {span} [i, j]"
            if self.distinct:
                text += ", all different"
        return f"null or {text}" if self.nullable else text

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not valid for this option, or None (lists arrive as tuples: ``Bend`` freezes them)."""
        if value is None:
            return None if self.nullable else f"must be {self.describe()}, got null"
        if self.kind == "choice":
            # type-exact: true == 1 and 1.0 == 1 in Python, but neither is the choice 1 in a job file
            ok = any(type(value) is type(c) and value == c for c in self.choices)
            return None if ok else f"must be {self.describe()}, got {value!r}"
        items = value if self.size > 1 and isinstance(value, tuple | list) else (value,) if self.size == 1 else None
        if items is None or len(items) != self.size or not all(self._int_ok(v) for v in items):
            return f"must be {self.describe()}, got {value!r}"
        if self.distinct and len(set(items)) != len(items):
            count = "two" if self.size == 2 else str(self.size)
            return f"needs {count} different {'channels' if self.channel_index else 'values'}, got {list(items)}"
        return None

    def _int_ok(self, value: object) -> bool:
        # bool is an int subclass, but "channel": true in a job file is a mistake, not channel 1
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


OPTIONS: dict[str, OptionSpec] = {
    spec.name: spec
    for spec in (
        OptionSpec(
            "plane",
            "int",
            "the channel plane (i, j) to rotate",
            (1, 2),
            low=0,
            size=2,
            distinct=True,
            channel_index=True,
        ),
        OptionSpec("channel", "int", "the channel to act on", 0, low=0, channel_index=True),
        OptionSpec(
            "normalize_dim",
            "int",
            "subtract the mean along the latent's dim d afterwards (0 channels, 1 rows, 2 columns); null: none "
            "(for remove_mean: the mean over the whole latent)",
            None,
            low=0,
            high=2,
            nullable=True,
        ),
        OptionSpec("axis", "choice", "'x' (horizontal) or 'y' (vertical)", "x", choices=("x", "y")),
        OptionSpec(
            "seed", "int", "seed of the noise; each frame draws from (seed, frame number)", 0, low=0, high=2**63 - 1
        ),
    )
}


@dataclass(frozen=True)
class OperatorSpec:
    """Everything about an operator except its function: the one place its parameter and options are described.

    The engine's validation (``bends.check_params``, ``bends.validate_bend``) and the Blender side's menus and
    properties are generated from this, so a new operator is one entry here plus one function in operators.py.
    """

    name: str
    summary: str  # one line for docs and the UI, with the paper reference
    param: ParamSpec | None = ParamSpec("r")  # None: the operator takes no parameter
    options: tuple[str, ...] = ()  # allowed option keys, each described in OPTIONS
    needs_channels: int | None = None  # the paper's 4×4 matrices only make sense on the 4-channel latent
    spatial: bool = False  # acts on (H, W): meaningful on feature maps, and a candidate for "random_channels"
    required_options: tuple[str, ...] = ()  # options without a sensible default (which channel, which plane)
    needs_square_power_of_two: bool = False  # a spatial Hadamard transform needs H == W == 2^k
    source: str = ""  # where the formula comes from: a paper equation or the authors' code (file, function)

    @property
    def takes_param(self) -> bool:
        return self.param is not None

    @property
    def option_specs(self) -> tuple[OptionSpec, ...]:
        return tuple(OPTIONS[key] for key in self.options)


_DAFX = "DAFx 2024 paper"
_JAES = "JAES2025 utils/bending.py"
_BROAD = "Broad et al. 2021"
_ANGLE = ParamSpec("angle in radians")
_NONZERO = Domain(excluded=((0.0, "divides by zero"),))
_KERNEL = ParamSpec("kernel size, rounded half up", 3.0, Domain(low=0.5, meaning="gives a kernel size below 1"))
_SIX_PLANES = ("a01", "a02", "a03", "a12", "a13", "a23")

OPERATORS: dict[str, OperatorSpec] = {
    spec.name: spec
    for spec in (
        OperatorSpec("add", "x + r (paper eq. 1)", ParamSpec("added value"), source=f"{_DAFX}, eq. 1"),
        OperatorSpec("multiply", "x · r (paper eq. 2)", ParamSpec("factor", 1.0), source=f"{_DAFX}, eq. 2"),
        OperatorSpec(
            "threshold", "1 where x ≥ r, else 0 (paper eq. 3)", ParamSpec("threshold level"), source=f"{_DAFX}, eq. 3"
        ),
        OperatorSpec(
            "magnitude_gate",
            "x where |x| ≥ r, else 0 (the threshold of the paper authors' code)",
            ParamSpec("gate level"),
            source="DAFX2024 util.py threshold; JAES2025 utils/bending.py threshold",
        ),
        OperatorSpec(
            "invert",
            "1/r − x, r ≠ 0 (paper eq. 4)",
            ParamSpec("r, whose reciprocal is the offset", 1.0, _NONZERO),
            source=f"{_DAFX}, eq. 4",
        ),
        OperatorSpec(
            "rotate_r1",
            "R1: rotate channels (1, 2) by r radians (paper 3.1.2)",
            _ANGLE,
            needs_channels=4,
            source=f"{_DAFX}, section 3.1.2, R1",
        ),
        OperatorSpec(
            "rotate_r2",
            "R2: rotate channels (0, 2) by r radians (paper 3.1.2)",
            _ANGLE,
            needs_channels=4,
            source=f"{_DAFX}, section 3.1.2, R2",
        ),
        OperatorSpec(
            "rotate_r3",
            "R3: rotate channels (0, 3) by r radians (paper 3.1.2)",
            _ANGLE,
            needs_channels=4,
            source=f"{_DAFX}, section 3.1.2, R3",
        ),
        OperatorSpec(
            "rotate_r4",
            "R4: rotate channels (0, 1) by r radians (paper 3.1.2)",
            _ANGLE,
            needs_channels=4,
            source=f"{_DAFX}, section 3.1.2, R4",
        ),
        OperatorSpec(
            "rotate_plane",
            "rotate channel plane (i, j) by r radians, any channel count (generalises paper 3.1.2)",
            _ANGLE,
            options=("plane",),
            required_options=("plane",),
            source=f"{_DAFX}, section 3.1.2, generalised",
        ),
        OperatorSpec(
            "reflect",
            "negate channel k: identity with M[k,k] = −1 (paper 3.1.2)",
            None,
            options=("channel",),
            required_options=("channel",),
            source=f"{_DAFX}, section 3.1.2",
        ),
        OperatorSpec(
            "erode",
            "erosion with an r×r kernel of ones (paper 3.1.3)",
            _KERNEL,
            options=("normalize_dim",),
            spatial=True,
            source=f"{_DAFX}, section 3.1.3",
        ),
        OperatorSpec(
            "dilate",
            "dilation with an r×r kernel of ones (paper 3.1.3)",
            _KERNEL,
            options=("normalize_dim",),
            spatial=True,
            source=f"{_DAFX}, section 3.1.3",
        ),
        OperatorSpec(
            "spatial_translate",
            "shift by r × width or height (Broad et al.)",
            ParamSpec("shift as a fraction of the width or height"),
            options=("axis",),
            spatial=True,
            source=_BROAD,
        ),
        OperatorSpec(
            "spatial_rotate",
            "rotate by r degrees about the centre (Broad et al.)",
            ParamSpec("angle in degrees"),
            spatial=True,
            source=_BROAD,
        ),
        OperatorSpec(
            "spatial_scale",
            "zoom by factor r > 0 about the centre (Broad et al.)",
            ParamSpec("zoom factor", 1.0, Domain(low=0.0, low_open=True, meaning="is not a zoom factor")),
            spatial=True,
            source=_BROAD,
        ),
        OperatorSpec(
            "spatial_flip", "mirror along x or y (Broad et al.)", None, options=("axis",), spatial=True, source=_BROAD
        ),
        OperatorSpec("ablate", "x · 0 (Broad et al.)", None, source=_BROAD),
        # The authors' later vocabulary (JAES 2025, utils/bending.py)
        OperatorSpec(
            "subtract", "x − r (authors' code)", ParamSpec("subtracted value"), source=f"{_JAES}, subtract_full"
        ),
        OperatorSpec("negate", "−x (authors' code)", None, source=f"{_JAES}, inversion2"),
        OperatorSpec("absolute", "|x| (authors' code)", None, source=f"{_JAES}, absolute"),
        OperatorSpec(
            "clamp",
            "x clamped to [low, high] (authors' code)",
            ParamSpec("the range [low, high]", (-1.0, 1.0), names=("low", "high"), ordered=True),
            source=f"{_JAES}, clamp",
        ),
        OperatorSpec(
            "gaussian_noise",
            "x + r · N(0, 1), seeded per frame (authors' code, seeded here)",
            ParamSpec("noise amplitude"),
            options=("seed",),
            source=f"{_JAES}, add_noise",
        ),
        OperatorSpec(
            "power",
            "sign(x) · |x|^r, 0 stays 0 (authors' code: x^r, NaN for negative x)",
            ParamSpec("exponent", 1.0),
            source=f"{_JAES}, power",
        ),
        OperatorSpec(
            "log",
            "log of |x| in base r, |x| floored at 1e-30 (authors' code)",
            ParamSpec(
                "base",
                math.e,
                Domain(low=0.0, low_open=True, excluded=((1.0, "is not a logarithm base"),), meaning="is not a base"),
            ),
            source=f"{_JAES}, log",
        ),
        OperatorSpec(
            "soft_threshold",
            "sign(x) · max(|x| − r, 0) (authors' code, form 1)",
            ParamSpec("shrinkage"),
            source=f"{_JAES}, soft_threshold",
        ),
        OperatorSpec(
            "soft_threshold2",
            "0 where |x| < r, else x · (1 − r) (authors' code, form 2)",
            ParamSpec("gate level"),
            source=f"{_JAES}, soft_threshold2",
        ),
        OperatorSpec(
            "gaussian_bump",
            "x + r · a centred 2-D Gaussian (σ = 1.5 on a [−5, 5]² grid) on every channel (authors' code)",
            ParamSpec("bump height factor"),
            spatial=True,
            source=f"{_JAES}, add_normal",
        ),
        OperatorSpec(
            "hadamard_channels",
            "H4 · x over the channels, unnormalised (authors' code)",
            None,
            needs_channels=4,
            source=f"{_JAES}, hadamard1",
        ),
        OperatorSpec(
            "hadamard_spatial",
            "each channel xᵀ · H_n, unnormalised; square maps of side 2^k (authors' code)",
            None,
            spatial=True,
            needs_square_power_of_two=True,
            source=f"{_JAES}, hadamard2",
        ),
        OperatorSpec(
            "normalize_max_abs", "x / max |x| over the sample (authors' code)", None, source=f"{_JAES}, normalize"
        ),
        OperatorSpec(
            "normalize_l2_channels",
            "x / ‖x‖₂ over the channels at each pixel (authors' code)",
            None,
            source=f"{_JAES}, normalize2",
        ),
        OperatorSpec(
            "remove_mean",
            "x − mean(x): over the whole sample, or along dim d (authors' code)",
            None,
            options=("normalize_dim",),
            source=f"{_JAES}, normalize3 and normalize4",
        ),
        OperatorSpec(
            "rotate_six",
            "rotation in all six channel planes, R01·R02·R03·R12·R13·R23 (authors' code)",
            ParamSpec("six angles in radians", (0.0,) * 6, names=_SIX_PLANES),
            needs_channels=4,
            source=f"{_JAES}, six_plane_rotation",
        ),
        OperatorSpec(
            "contract",
            "M · x over the channels, M any 4×4 matrix, row-major (authors' code)",
            ParamSpec(
                "the 16 entries of M, row by row",
                tuple(1.0 if i == j else 0.0 for i in range(4) for j in range(4)),
                names=tuple(f"m{i}{j}" for i in range(4) for j in range(4)),
            ),
            needs_channels=4,
            source=f"{_JAES}, tensor_multiply",
        ),
    )
}

SELECTIONS = ("all", "channel", "row", "column", "random", "random_channels", "random_rows", "random_columns")
SELECTION_KINDS = SELECTIONS  # every kind a job may name; the Blender side offers them all

UNET_TARGET = re.compile(r"^(conv_in|mid_block|conv_out|down_blocks\.\d+|up_blocks\.\d+)$")
# The targets of a Stable Diffusion 1.x/2.x U-Net (four down and four up blocks), for menus. Each family names its
# own (``engine.families.FAMILIES[name].unet_targets``: SDXL has three down and three up blocks).
SD_UNET_TARGETS = (
    "conv_in",
    *(f"down_blocks.{i}" for i in range(4)),
    "mid_block",
    *(f"up_blocks.{i}" for i in range(4)),
    "conv_out",
)
# The model families a job may name (``model.family``), as in ``engine.families.FAMILIES``; "auto" detects one.
FAMILY_NAMES = ("sd1", "sd2", "sd2-v", "sdxl-turbo", "sdxl-lightning", "sdxl")


@dataclass(frozen=True)
class FeatureSpec:
    """One baked feature, described once: the Blender side builds its property, label and tooltip from this."""

    name: str
    label: str  # short, for the UI
    description: str  # one line, for tooltips and docs
    units: str  # what one unit of the raw (un-normalised) value is
    # False for features whose raw values already mean something fixed (a phase in 0..1, an index, a pitch class):
    # the bake keeps them as they are whatever its normalisation setting, so "section = 2" stays the third section.
    normalize: bool = True


_PITCH_CLASSES = (
    ("c", "C"),
    ("cs", "C#"),
    ("d", "D"),
    ("ds", "D#"),
    ("e", "E"),
    ("f", "F"),
    ("fs", "F#"),
    ("g", "G"),
    ("gs", "G#"),
    ("a", "A"),
    ("as", "A#"),
    ("b", "B"),
)
EMBEDDING_COMPONENTS = 8  # embed_0 .. embed_7: enough for the six-plane rotation, and two to spare

FEATURES: dict[str, FeatureSpec] = {
    spec.name: spec
    for spec in (
        FeatureSpec("rms", "RMS", "Loudness: root mean square of the frame's samples", "full scale (sine: A/√2)"),
        FeatureSpec("centroid", "Centroid", "Spectral centroid: the brightness of the sound", "Hz"),
        FeatureSpec("spread", "Spread", "Spectral spread around the centroid", "Hz"),
        FeatureSpec("skewness", "Skewness", "Spectral skewness: asymmetry of the spectrum", "dimensionless"),
        FeatureSpec("kurtosis", "Kurtosis", "Spectral kurtosis: peakiness of the spectrum", "dimensionless"),
        FeatureSpec(
            "flux", "Flux", "Spectral flux: how much the spectrum changed since the previous frame", "magnitude"
        ),
        FeatureSpec("onset", "Onset", "Onset strength: high on note attacks and hits", "log-magnitude rise"),
        FeatureSpec("band_low", "Low Band", "Energy below the low band edge", "mean square (sine: 0.5)"),
        FeatureSpec("band_mid", "Mid Band", "Energy between the band edges", "mean square (sine: 0.5)"),
        FeatureSpec("band_high", "High Band", "Energy above the high band edge", "mean square (sine: 0.5)"),
        FeatureSpec(
            "onset_low", "Low Onsets", "Onset strength below the low band edge: the kick", "log-amplitude rise"
        ),
        FeatureSpec(
            "onset_mid", "Mid Onsets", "Onset strength between the band edges: snare, notes", "log-amplitude rise"
        ),
        FeatureSpec(
            "onset_high", "High Onsets", "Onset strength above the high band edge: hats, cymbals", "log-amplitude rise"
        ),
        FeatureSpec(
            "harmonic", "Harmonic", "Energy of the sustained, pitched part (pads, voices)", "mean square (sine: 0.5)"
        ),
        FeatureSpec(
            "percussive", "Percussive", "Energy of the percussive part (drums, hits)", "mean square (sine: 0.5)"
        ),
        FeatureSpec(
            "beat_phase",
            "Beat Phase",
            "Fraction of the current beat elapsed: 0 on the beat, rising to 1",
            "beats",
            normalize=False,
        ),
        FeatureSpec(
            "beat_pulse",
            "Beat Pulse",
            "1 on each beat, decaying exponentially until the next",
            "0 to 1",
            normalize=False,
        ),
        FeatureSpec(
            "bar_phase",
            "Bar Phase",
            "Fraction of the current bar elapsed: 0 on the downbeat",
            "bars",
            normalize=False,
        ),
        FeatureSpec(
            "section",
            "Section",
            "Index of the song section the frame is in: 0, 1, 2 ...",
            "sections",
            normalize=False,
        ),
        *(
            FeatureSpec(
                f"chroma_{key}", f"Chroma {label}", f"Strength of pitch class {label}, 1 for the strongest", "0 to 1"
            )
            for key, label in _PITCH_CLASSES
        ),
        FeatureSpec(
            "pitch_class",
            "Pitch Class",
            "The strongest pitch class: 0 = C, 1 = C#, ... 11 = B",
            "semitones above C",
            normalize=False,
        ),
        *(
            FeatureSpec(
                f"embed_{k}",
                f"Embedding {k}",
                f"Principal component {k} of the frame's audio descriptors",
                "standard deviations",
            )
            for k in range(EMBEDDING_COMPONENTS)
        ),
    )
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)
# The per-window spectral statistics of the paper, computed frame by frame; the rest look across frames.
SPECTRAL_FEATURE_NAMES: tuple[str, ...] = FEATURE_NAMES[:10]
MUSIC_FEATURE_NAMES: tuple[str, ...] = FEATURE_NAMES[10:]
NORMALIZATIONS: tuple[str, ...] = ("none", "minmax", "percentile")
# The tempo a beat tracker may be told (FeatureSettings.tempo_bpm); the Blender side bounds its Tempo field by it.
MIN_TEMPO_BPM: float = 10.0
MAX_TEMPO_BPM: float = 1000.0
