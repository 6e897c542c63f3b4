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

The authors' later code (JAES 2025, dzluke/JAES2025 utils/bending.py; function names in brackets):
    subtract           x − r                                  [subtract_full]
    negate             −x                                     [inversion2]
    absolute           |x|                                    [absolute]
    clamp              min(max(x, low), high), r = [low, high], low ≤ high            [clamp]
    gaussian_noise     x + r · N(0, 1), seeded per frame (option "seed")              [add_noise, unseeded there]
    power              sign(x) · |x|^r, 0 ↦ 0 (theirs: x^r, NaN for x < 0)          [power]
    log                log(max(|x|, 1e-30)) / log(r), r > 0, r ≠ 1 (theirs: −inf at 0)  [log]
    soft_threshold     sign(x) · max(|x| − r, 0) (theirs: x/|x|, NaN at 0)         [soft_threshold]
    soft_threshold2    0 if |x| < r else x · (1 − r)                                [soft_threshold2]
    gaussian_bump      x + r · exp(−(X² + Y²)/(2σ²))/(2πσ²), σ = 1.5, X, Y on linspace(−5, 5) at the map's size
                                                                                    [add_normal]
    hadamard_channels  H4 · x over the channels, unnormalised; needs C = 4          [hadamard1]
    hadamard_spatial   x_cᵀ · H_S per channel, unnormalised; needs H = W = S = 2^k  [hadamard2]
    normalize_max_abs  x / max|x| over the sample                                   [normalize]
    normalize_l2_channels  x / ‖x‖₂ over the channels at each pixel               [normalize2]
    remove_mean        x − mean(x) over the sample, or along dim d (option "normalize_dim")  [normalize3, normalize4]
    rotate_six         R01(a0)·R02(a1)·R03(a2)·R12(a3)·R13(a4)·R23(a5) · x over the channels, six angles per
                       frame, R_ij with −sin at [i,j]; needs C = 4                  [six_plane_rotation]
    contract           M · x over the channels, M's sixteen entries per frame row by row; needs C = 4
                                                                                    [tensor_multiply]
clamp, rotate_six and contract take a vector parameter (2, 6 and 16 numbers per frame). Their "random fraction of
rows or columns" is a selection (``selection.py``), so it restricts any operator.

Every function here is vectorised over the batch and never reads a device tensor back to the host: values that
must be known on the host (kernel sizes) come from ``ParamBatch.values``. Parameter values are validated by
``bends.check_params``; the operators themselves assume valid values and valid options.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

# torch loads with this module, which bends.apply_bend imports only when a bend is first applied; kornia (0.2 s of a
# cold start) loads inside the few operators that use it
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
    import kornia

    return _morphology(x, params, options, kornia.morphology.erosion)


def dilate(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """Dilation with an r×r kernel of ones per channel (paper section 3.1.3, kornia.morphology.dilation)."""
    import kornia

    return _morphology(x, params, options, kornia.morphology.dilation)


# ---------------------------------------------------------------------------------------------------------------
# Spatial operators (Broad et al.), via kornia.geometry. The warps run in at least float32 (see _work_dtype);
# kornia already does this on the CPU, and on CUDA an fp16 sampling grid is off by pixels on large maps.

# A zoom outside this range maps the whole map onto (or from) less than a pixel for any map smaller than 10^6
# pixels, so clamping changes nothing visible while keeping the warp matrix and its inverse finite in float32.
_SCALE_RANGE = (1e-6, 1e6)


def spatial_translate(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """Shift the map by r × width (axis "x", positive = right) or r × height (axis "y", positive = down)."""
    import kornia

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
    import kornia

    work = x.to(_work_dtype(x))
    # Reduce first: deg→rad of a large angle loses the fraction of a turn in float32
    angle = torch.remainder(params.tensor(x.device, work.dtype), 360.0)
    return kornia.geometry.transform.rotate(work, angle, padding_mode="zeros").to(x.dtype)


def spatial_scale(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """Zoom the map by factor r about its centre (r > 1 magnifies, r < 1 shrinks, zeros outside)."""
    import kornia

    work = x.to(_work_dtype(x))
    factor = params.tensor(x.device, work.dtype).clamp(*_SCALE_RANGE)
    return kornia.geometry.transform.scale(work, factor, padding_mode="zeros").to(x.dtype)


def spatial_flip(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """Mirror the map: axis "x" flips left-right (the default), "y" flips top-bottom."""
    return torch.flip(x, dims=(-1,) if options.get("axis", "x") == "x" else (-2,))


# ---------------------------------------------------------------------------------------------------------------
# The authors' later vocabulary (JAES 2025, utils/bending.py): point-wise


def subtract(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = x − r (the authors' subtract_full)."""
    return x - _r(x, params)


def negate(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = −x (the authors' inversion2)."""
    return -x


def absolute(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = |x| (the authors' absolute)."""
    return x.abs()


def clamp(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = min(max(x, low), high) with the per-sample range r = [low, high] (the authors' clamp; low ≤ high is
    checked on the host)."""
    bounds = params.tensor(x.device, x.dtype)
    return torch.clamp(x, min=bounds[:, 0].view(-1, 1, 1, 1), max=bounds[:, 1].view(-1, 1, 1, 1))


def noise_seed(seed: int, frame: int) -> int:
    """The seed of frame ``frame``'s noise for option seed ``seed``: a fixed 64-bit mix (splitmix64's constants),
    so neighbouring frames and neighbouring seeds draw unrelated noise and the result never depends on the process."""
    z = (seed * 0x9E3779B97F4A7C15 + frame + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


@functools.lru_cache(maxsize=32)
def _frame_noise(seed: int, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """N(0, 1) of ``shape`` drawn on the CPU in float32 from ``seed``, then moved: the same on every device. Cached,
    because a U-Net hook asks for the same frame's noise at every step."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device)


def gaussian_noise(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = x + r · N(0, 1) (the authors' add_noise), with the noise seeded per frame.

    The authors draw unseeded noise, so their renders cannot be repeated. Here sample n's noise comes from
    ``noise_seed(option seed, frame number of n)``: a render is reproducible, a frame gets the same noise batched
    or alone, and at every step a U-Net hook applies it.
    """
    seed = options.get("seed", 0)
    shape = tuple(x.shape[1:])
    noise = torch.stack([_frame_noise(noise_seed(seed, f), shape, x.device) for f in params.sample_frames()])
    return (x + _r(x, params, _work_dtype(x)) * noise).to(x.dtype)


def power(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = sign(x) · |x|^r, and f(0) = 0 for every r.

    The authors' code is torch.pow(x, r), which is NaN for negative x whenever r is not an integer, so an animated
    r would blank the image between integers. The odd extension sign(x)·|x|^r agrees with it for x ≥ 0 and for odd
    integer r, and is continuous in r. 0 maps to 0 (not 0^r, which is inf for r < 0) so the sign is kept.
    """
    work = x.to(_work_dtype(x))
    magnitude = work.abs().pow(_r(x, params, work.dtype))
    return torch.where(work == 0, 0.0, torch.sign(work) * magnitude).to(x.dtype)


# The floor of |x| for the logarithm: log(0) is −inf, and the authors' code lets it through. 1e-30 is far below any
# latent value yet a normal float32, so log(|x|) is at least ln(1e-30) ≈ −69 instead of −inf.
LOG_FLOOR = 1e-30


def log(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = log(max(|x|, 1e-30)) / log(r), the logarithm of |x| in base r (r > 0, r ≠ 1; the authors' log).

    Computed in at least float32, where the floor exists (in float16 it would be 0).
    """
    work = x.to(_work_dtype(x))
    base = _r(x, params, work.dtype)
    return (torch.log(work.abs().clamp_min(LOG_FLOOR)) / torch.log(base)).to(x.dtype)


def soft_threshold(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = sign(x) · max(|x| − r, 0) (the authors' soft_threshold).

    They compute x/|x| for the sign, which is 0/0 = NaN at x = 0; sign(0) = 0 gives the limit, f(0) = 0.
    """
    return torch.sign(x) * (x.abs() - _r(x, params)).clamp_min(0.0)


def soft_threshold2(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = 0 if |x| < r else x · (1 − r) (the authors' soft_threshold2)."""
    r = _r(x, params)
    return torch.where(x.abs() < r, 0.0, x * (1.0 - r)).to(x.dtype)


# ---------------------------------------------------------------------------------------------------------------
# The authors' later vocabulary: spatial and channel transforms

# The authors' bump: a 64×64 grid over [−5, 5]², σ = 1.5, the normal density. Here the grid has the map's size, so
# a 64×64 latent gets exactly their values and other sizes the same bump, scaled to the map.
_BUMP_EXTENT = 5.0
_BUMP_SIGMA = 1.5


@functools.lru_cache(maxsize=16)
def gaussian_bump_field(height: int, width: int) -> Tensor:
    """G[h, w] = exp(−(X² + Y²)/(2σ²)) / (2πσ²), X over the columns and Y over the rows, both linspace(−5, 5),
    in float64 (as the authors' numpy); shape (H, W), on the CPU."""
    xs = torch.linspace(-_BUMP_EXTENT, _BUMP_EXTENT, width, dtype=torch.float64)
    ys = torch.linspace(-_BUMP_EXTENT, _BUMP_EXTENT, height, dtype=torch.float64)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    two_var = 2.0 * _BUMP_SIGMA**2
    return torch.exp(-(grid_x**2 + grid_y**2) / two_var) / (math.pi * two_var)


def gaussian_bump(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = x + r · G on every channel, G the authors' centred 2-D Gaussian (add_normal) at the map's size."""
    work = _work_dtype(x)
    bump = gaussian_bump_field(x.shape[-2], x.shape[-1]).to(x.device, work)
    return (x + _r(x, params, work) * bump).to(x.dtype)


@functools.lru_cache(maxsize=16)
def hadamard_matrix(n: int) -> Tensor:
    """The n×n Sylvester Hadamard matrix (n = 2^k), entries ±1: scipy.linalg.hadamard(n), as the authors use."""
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def hadamard_channels(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """out[n,i] = Σ_j H4[i,j] · x[n,j]: the authors' tensordot(H4, x) over the channels (hadamard1).

    Unnormalised, as theirs: H4 scales the latent by 2 (H4/2 is orthogonal). Follow it with a multiply by 0.5 or a
    normaliser to keep the magnitude; their videos use it bare.
    """
    h = hadamard_matrix(x.shape[1]).to(x.device, x.dtype)
    return torch.einsum("ij,njhw->nihw", h, x)


def hadamard_spatial(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """out[n,c] = x[n,c]ᵀ · H_S, S = H = W: the authors' tensordot(x, H_S, dims=[[1], [1]]) (hadamard2).

    Their contraction sums over the rows and leaves the columns first, so out[c, w, k] = Σ_h x[c, h, w]·H[k, h]:
    the transform of each column, transposed. That is kept exactly (it is what their images show), and it is why
    the map must be square. Unnormalised, as theirs: it scales by √S (8 on a 64×64 latent).
    """
    h = hadamard_matrix(x.shape[-2]).to(x.device, x.dtype)
    return torch.einsum("nchw,kh->ncwk", x, h)


def normalize_max_abs(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = x / max|x|, the max over each sample (the authors' normalize). An all-zero sample stays zero."""
    peak = x.abs().amax(dim=(1, 2, 3), keepdim=True)
    return x / torch.where(peak > 0, peak, 1.0).to(x.dtype)


def normalize_l2_channels(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = x / max(‖x‖₂, 1e-12), the norm over the channels at each pixel: the authors' normalize2,
    torch.nn.functional.normalize(x, dim=0) on their (C, H, W) latent."""
    work = x.to(_work_dtype(x))  # the squares overflow float16 from |x| ≈ 256
    return torch.nn.functional.normalize(work, dim=1).to(x.dtype)


def remove_mean(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """f(x) = x − mean(x): over the whole sample (the authors' normalize3), or with option normalize_dim d along the
    latent's dim d, keeping the others (normalize4: 0 channels, 1 rows, 2 columns)."""
    dim = options.get("normalize_dim")
    dims = (1, 2, 3) if dim is None else (dim + 1,)
    return x - x.mean(dim=dims, keepdim=True)


# The authors' six planes, in their order; the matrices multiply left to right: M = R01·R02·R03·R12·R13·R23.
SIX_PLANES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def six_plane_matrix(angles: Tensor) -> Tensor:
    """(N, 6) angles to (N, 4, 4) matrices R01(a0)·R02(a1)·…·R23(a5), each plane (i, j) with cos a at [i,i] and
    [j,j], −sin a at [i,j] and +sin a at [j,i] (the authors' make_six_plane_rotation_matrix)."""
    batch = angles.shape[0]
    m = torch.eye(4, dtype=angles.dtype, device=angles.device).repeat(batch, 1, 1)
    for k, (i, j) in enumerate(SIX_PLANES):
        cos, sin = torch.cos(angles[:, k]), torch.sin(angles[:, k])
        plane = torch.eye(4, dtype=angles.dtype, device=angles.device).repeat(batch, 1, 1)
        plane[:, i, i] = cos
        plane[:, j, j] = cos
        plane[:, i, j] = -sin
        plane[:, j, i] = sin
        m = m @ plane
    return m


def rotate_six(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """out[n,i] = Σ_j M[n,i,j] · x[n,j] with M the six-plane rotation of sample n's six angles (the authors'
    six_plane_rotation), so one bend rotates the latent in every channel plane at once."""
    m = six_plane_matrix(params.tensor(x.device, _work_dtype(x)))
    return torch.einsum("nij,njhw->nihw", m.to(x.dtype), x)


def contract(x: Tensor, params: ParamBatch, options: Mapping[str, Any]) -> Tensor:
    """out[n,i] = Σ_j M[n,i,j] · x[n,j], M sample n's sixteen values row by row (the authors' tensor_multiply,
    tensordot(M, x, dims=1); their audio-to-video script feeds it sixteen audio components per frame)."""
    m = params.tensor(x.device, x.dtype).view(-1, 4, 4)
    return torch.einsum("nij,njhw->nihw", m, x)


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
        subtract,
        negate,
        absolute,
        clamp,
        gaussian_noise,
        power,
        log,
        soft_threshold,
        soft_threshold2,
        gaussian_bump,
        hadamard_channels,
        hadamard_spatial,
        normalize_max_abs,
        normalize_l2_channels,
        remove_mean,
        rotate_six,
        contract,
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
