"""The bending operators: pure tensor functions on a batch ``x`` of shape (N, C, H, W).

Equation numbers and section numbers refer to Dzwonczyk, Cella and Ban, "Network Bending of Diffusion Models for
Audio-Visual Generation" (DAFx 2024), section 3.1; the spatial operators and ``ablate`` come from Broad et al.'s
original network bending. ``r`` is the operator's parameter, one value per sample (see ``bends.ParamBatch``).

Point-wise (section 3.1.1), on every element x:
    add              x + r                                   (eq. 1)
    multiply         x · r                                   (eq. 2)
    threshold        1 where x ≥ r, else 0                   (eq. 3, binary, as printed)
    magnitude_gate   x where |x| ≥ r, else 0                 (the authors' code's threshold)
    invert           1/r − x                                 (eq. 4; r ≠ 0)
    ablate           x · 0                                   (Broad et al.; no parameter)

Tensor (section 3.1.2), a matrix M contracted with the channel axis: out[n,i,h,w] = Σ_j M[n,i,j]·x[n,j,h,w]:
    rotate_r1 … r4   the paper's R1 (plane 1,2), R2 (0,2), R3 (0,3), R4 (0,1), θ = r radians; needs C = 4
    rotate_plane     rotation by θ = r in the channel plane (i, j) for any C (option "plane": [i, j])
    reflect          identity with M[k,k] = −1 (option "channel": k; no parameter)

Morphological (section 3.1.3), per channel, kernel of ones of size round(r) × round(r):
    erode, dilate    kornia erosion / dilation; option "normalize_dim" d ∈ {0, 1, 2} subtracts the mean along
                     the latent's (C, H, W) dim d afterwards

Spatial (Broad et al.), on the (H, W) plane, zeros outside:
    spatial_translate  shift by r × width (option "axis": "x", the default) or r × height ("y")
    spatial_rotate     rotate by r degrees about the centre (anticlockwise on screen, kornia's convention)
    spatial_scale      zoom by factor r about the centre (r > 0)
    spatial_flip       mirror left-right (option "axis": "x", the default) or top-bottom ("y"); no parameter

Every function here is vectorised over the batch and never reads a device tensor back to the host: values that
must be known on the host (kernel sizes) come from ``ParamBatch.values``. Parameter values are validated by
``bends.check_params``; the operators themselves assume valid values and valid options.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import kornia
import torch
from torch import Tensor

from .catalog import OPERATORS, OperatorSpec
from .errors import BendError

if TYPE_CHECKING:
    from .bends import ParamBatch

__all__ = ["OPERATORS", "OperatorSpec", "apply_operator", "kernel_size"]


OperatorFn = Callable[[Tensor, "ParamBatch", Mapping[str, Any]], Tensor]


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def _work_dtype(x: Tensor) -> torch.dtype:
    """float32 for half-precision inputs, else x's dtype.

    Angles, reciprocals and warp matrices lose too much in float16/bfloat16 (an fp16 angle near 2π is only good
    to ~0.002 rad, and 1/r overflows for small r), so they are computed at least in float32.
    """
    return torch.promote_types(x.dtype, torch.float32)


def _r(x: Tensor, params: ParamBatch, dtype: torch.dtype | None = None) -> Tensor:
    """The per-sample parameter as an (N, 1, 1, 1) tensor on x's device, ready to broadcast."""
    return params.tensor(x.device, dtype or x.dtype).view(-1, 1, 1, 1)


def kernel_size(r: float) -> int:
    """The integer morphology kernel size for a parameter value: r rounded half up.

    Half up rather than Python's round-half-to-even, so that an animated r crosses each integer at the same
    fraction (round(2.5) == 2 but round(3.5) == 4 would make the kernel jump unevenly).
    """
    return math.floor(r + 0.5)


# ---------------------------------------------------------------------------------------------------------------
# Point-wise operators (paper section 3.1.1)


def add(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = x + r (paper eq. 1)."""
    return x + _r(x, params)


def multiply(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = x · r (paper eq. 2)."""
    return x * _r(x, params)


def threshold(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = 1 if x ≥ r else 0 (paper eq. 3), in x's dtype."""
    return (x >= _r(x, params)).to(x.dtype)


def magnitude_gate(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = x if |x| ≥ r else 0: the threshold in the authors' code (their figures look like this form)."""
    # where() rather than x * mask: an inf element below the gate must become 0, not inf · 0 = NaN
    return torch.where(x.abs() >= _r(x, params), x, 0.0)


def invert(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = 1/r − x (paper eq. 4). r = 0 is rejected on the host by ``bends.check_params``."""
    reciprocal = _r(x, params, _work_dtype(x)).reciprocal()
    return reciprocal.to(x.dtype) - x


def ablate(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = 0 (Broad et al.'s ablation). zeros_like rather than x · 0, so NaN or inf elements are ablated too."""
    return torch.zeros_like(x)


# ---------------------------------------------------------------------------------------------------------------
# Tensor operators (paper section 3.1.2)

# (i, j, sign): the paper's matrix R has cos θ at [i,i] and [j,j], sign · sin θ at [i,j] and −sign · sin θ at
# [j,i], the identity elsewhere. Signs exactly as printed: R1 and R4 have −sin above the diagonal, R2 and R3 +sin.
_PAPER_ROTATIONS: dict[str, tuple[int, int, float]] = {
    "rotate_r1": (1, 2, -1.0),
    "rotate_r2": (0, 2, +1.0),
    "rotate_r3": (0, 3, +1.0),
    "rotate_r4": (0, 1, -1.0),
}


def _paper_rotation(name: str, x: Tensor, params: ParamBatch) -> Tensor:
    """Contract the batched 4×4 matrix R(θ_n) with the channel axis: out[n,i] = Σ_j R[n,i,j]·x[n,j]."""
    i, j, sign = _PAPER_ROTATIONS[name]
    theta = params.tensor(x.device, _work_dtype(x))
    cos, sin = torch.cos(theta), torch.sin(theta)
    # The matrix is built on the device from θ, so no host→device copy happens per call
    m = torch.eye(4, dtype=theta.dtype, device=theta.device).repeat(theta.shape[0], 1, 1)
    m[:, i, i] = cos
    m[:, j, j] = cos
    m[:, i, j] = sign * sin
    m[:, j, i] = -sign * sin
    return torch.einsum("nij,njhw->nihw", m.to(x.dtype), x)


def rotate_r1(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """R1(θ) from paper section 3.1.2: channel plane (1,2), −sin θ at [1,2], +sin θ at [2,1]."""
    return _paper_rotation("rotate_r1", x, params)


def rotate_r2(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """R2(θ) from paper section 3.1.2: channel plane (0,2), +sin θ at [0,2], −sin θ at [2,0]."""
    return _paper_rotation("rotate_r2", x, params)


def rotate_r3(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """R3(θ) from paper section 3.1.2: channel plane (0,3), +sin θ at [0,3], −sin θ at [3,0]."""
    return _paper_rotation("rotate_r3", x, params)


def rotate_r4(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """R4(θ) from paper section 3.1.2: channel plane (0,1), −sin θ at [0,1], +sin θ at [1,0]."""
    return _paper_rotation("rotate_r4", x, params)


def rotate_plane(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """Rotation by θ = r in the channel plane (i, j), for any channel count (generalises section 3.1.2).

    out_i = cos θ · x_i − sin θ · x_j, out_j = sin θ · x_i + cos θ · x_j, other channels unchanged; so plane (1, 2)
    is R1 and plane (0, 1) is R4. Only two channels change, so this touches 2/C of the tensor instead of a C×C
    contraction, which matters on U-Net feature maps with hundreds of channels.
    """
    i, j = options["plane"]
    theta = params.tensor(x.device, _work_dtype(x)).view(-1, 1, 1)
    cos, sin = torch.cos(theta).to(x.dtype), torch.sin(theta).to(x.dtype)
    xi, xj = x[:, i], x[:, j]
    out = x.clone()
    out[:, i] = cos * xi - sin * xj
    out[:, j] = sin * xi + cos * xj
    return out


def reflect(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """The paper's reflection (section 3.1.2): the identity matrix with M[k,k] = −1, i.e. negate channel k."""
    k = options["channel"]
    out = x.clone()
    out[:, k] = -x[:, k]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Morphological operators (paper section 3.1.3)


def _morphology(x: Tensor, params: ParamBatch, options: Mapping[str, Any], fn: Callable[..., Tensor]) -> Tensor:
    """Erosion or dilation with a k×k kernel of ones per sample, then the paper's optional normalisation.

    Kernel sizes are host integers (``ParamBatch.values``), so samples are grouped on the host into runs of equal
    size and each run is a slice of x (a view): no index tensor, hence no host→device copy and no sync. A batch
    usually has one size, so this is one call.

    Two exact rewrites keep big kernels cheap:
    - a k×k kernel of ones is separable: the min (max) over a k×k window is the min (max) over k rows of the min
      (max) over k columns, and with kornia's default geodesic border (outside pixels ignored) the window is a
      product of intervals even at the edges, so the result is identical to one k×k pass;
    - a kernel of size ≥ 2·max(H, W) already covers the whole map from every pixel (origin k//2), so larger
      kernels are clamped to that size without changing the result.
    """
    height, width = x.shape[-2:]
    sizes = [min(kernel_size(v), 2 * max(height, width)) for v in params.values]
    # kornia's "shift" engine is exact and needs no k-sized intermediate; its "unfold" engine (the CUDA default)
    # allocates k × the input, too much on a feature map with a large kernel. Under autograd "auto" is leaner.
    engine = "auto" if x.requires_grad else "shift"
    pieces: list[Tensor] = []
    start = 0
    for k, run in itertools.groupby(sizes):
        stop = start + len(list(run))
        piece = x[start:stop]
        rows = torch.ones(k, 1, dtype=x.dtype, device=x.device)  # x's dtype: a float32 kernel would widen fp16
        piece = fn(piece, rows, engine=engine)
        piece = fn(piece, rows.view(1, k), engine=engine)
        pieces.append(piece)
        start = stop
    out = pieces[0] if len(pieces) == 1 else torch.cat(pieces)
    dim = options.get("normalize_dim")
    if dim is not None:
        # As in the authors' code: x − mean(x, dim=d, keepdim=True) on the (C, H, W) latent, so d=0 removes the
        # mean over channels and d=1 the mean over H (the paper words d=1 as "the mean of each row").
        out = out - out.mean(dim=dim + 1, keepdim=True)
    return out


def erode(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """Erosion with an r×r kernel of ones per channel (paper section 3.1.3, kornia.morphology.erosion)."""
    return _morphology(x, params, options, kornia.morphology.erosion)


def dilate(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """Dilation with an r×r kernel of ones per channel (paper section 3.1.3, kornia.morphology.dilation)."""
    return _morphology(x, params, options, kornia.morphology.dilation)


# ---------------------------------------------------------------------------------------------------------------
# Spatial operators (Broad et al.), via kornia.geometry. The warps run in at least float32 (see _work_dtype);
# kornia already does this on the CPU, and on CUDA an fp16 sampling grid is off by pixels on large maps.

# A zoom outside this range maps the whole map onto (or from) less than a pixel for any map smaller than 10^6
# pixels, so clamping changes nothing visible while keeping the warp matrix and its inverse finite in float32.
_SCALE_RANGE = (1e-6, 1e6)


def spatial_translate(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """Shift the map by r × width (axis "x", positive = right) or r × height (axis "y", positive = down)."""
    work = x.to(_work_dtype(x))
    # |r| ≥ 1 already shifts every pixel out of the map (all zeros); clamping at 2 changes no output value but keeps
    # the translation finite for huge r
    r = params.tensor(x.device, work.dtype).clamp(-2.0, 2.0)
    axis = options.get("axis", "x")
    shift = r * (x.shape[-1] if axis == "x" else x.shape[-2])
    zero = torch.zeros_like(shift)
    translation = torch.stack([shift, zero] if axis == "x" else [zero, shift], dim=-1)
    return kornia.geometry.transform.translate(work, translation, padding_mode="zeros").to(x.dtype)


def spatial_rotate(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """Rotate the map by r degrees about its centre, anticlockwise on screen (kornia's convention)."""
    work = x.to(_work_dtype(x))
    # Reduce first: deg→rad of a large angle loses the fraction of a turn in float32
    angle = torch.remainder(params.tensor(x.device, work.dtype), 360.0)
    return kornia.geometry.transform.rotate(work, angle, padding_mode="zeros").to(x.dtype)


def spatial_scale(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """Zoom the map by factor r about its centre (r > 1 magnifies, r < 1 shrinks, zeros outside)."""
    work = x.to(_work_dtype(x))
    factor = params.tensor(x.device, work.dtype).clamp(*_SCALE_RANGE)
    return kornia.geometry.transform.scale(work, factor, padding_mode="zeros").to(x.dtype)


def spatial_flip(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """Mirror the map: axis "x" flips left-right (the default), "y" flips top-bottom."""
    return torch.flip(x, dims=(-1,) if options.get("axis", "x") == "x" else (-2,))


# ---------------------------------------------------------------------------------------------------------------
# Registry


# The function's name is the operator's public name, so the two can never drift apart.
_FUNCTIONS: dict[str, OperatorFn] = {
    fn.__name__: fn
    for fn in (
        add,
        multiply,
        threshold,
        magnitude_gate,
        invert,
        rotate_r1,
        rotate_r2,
        rotate_r3,
        rotate_r4,
        rotate_plane,
        reflect,
        erode,
        dilate,
        spatial_translate,
        spatial_rotate,
        spatial_scale,
        spatial_flip,
        ablate,
    )
}
assert _FUNCTIONS.keys() == OPERATORS.keys(), "engine/catalog.py and engine/operators.py list different operators"


def apply_operator(name: str, x: Tensor, params: ParamBatch | None, options: Mapping[str, Any]) -> Tensor:
    """Apply operator ``name`` to the batch ``x`` with per-sample ``params`` and the operator's ``options``.

    ``params`` is ignored (and may be None) for operators without a parameter; otherwise it is tiled to the batch
    with ``ParamBatch.for_batch`` (the classifier-free-guidance case). Options are assumed valid: ``bends.apply_bend``
    validates them against the tensor's shape first. Returns a new tensor; x is never modified.
    """
    fn = _FUNCTIONS.get(name)
    if fn is None:
        raise BendError(f"unknown operator {name!r}; valid operators: {', '.join(OPERATORS)}")
    spec = OPERATORS[name]
    if spec.takes_param:
        if params is None:
            raise BendError(f"operator {name!r} needs a parameter value per sample, got none")
        params = params.for_batch(x.shape[0])
    return fn(x, params, options)  # type: ignore[arg-type]  # params is only None for operators that ignore it
