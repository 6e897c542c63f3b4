"""Every operator against its formula (paper section 3.1), on a batch with different parameters per sample."""

from __future__ import annotations

import math
from typing import Any

import kornia
import numpy as np
import pytest
import torch

from engine.bends import ParamBatch
from engine.operators import OPERATORS, apply_operator, kernel_size

N, C, H, W = 3, 4, 8, 8


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(N, C, H, W, generator=torch.Generator().manual_seed(1234))


def run(
    name: str,
    x: torch.Tensor,
    values: tuple[Any, ...] | None = None,
    frames: tuple[int, ...] | None = None,
    **options: Any,
) -> torch.Tensor:
    out = apply_operator(name, x, None if values is None else ParamBatch(values, frames), options)
    assert out.shape == x.shape and out.dtype == x.dtype
    return out


# ---------------------------------------------------------------------------------------------------------------
# Point-wise operators (section 3.1.1)


def test_add_eq1(x: torch.Tensor) -> None:
    r = (0.5, -2.0, 10.0)
    out = run("add", x, r)
    for n in range(N):
        torch.testing.assert_close(out[n], x[n] + r[n])


def test_multiply_eq2(x: torch.Tensor) -> None:
    r = (0.5, -2.0, 10.0)
    out = run("multiply", x, r)
    for n in range(N):
        torch.testing.assert_close(out[n], x[n] * r[n])


def test_threshold_eq3_is_binary_and_inclusive(x: torch.Tensor) -> None:
    r = (0.0, 0.5, -1.0)
    x = x.clone()
    x[1, 2, 3, 4] = 0.5  # exactly r: eq. 3 says x ≥ r gives 1
    x[1, 2, 3, 6] = 0.49999997  # the float32 just below 0.5
    out = run("threshold", x, r)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    for n in range(N):
        torch.testing.assert_close(out[n], (x[n] >= r[n]).float())
    assert out[1, 2, 3, 4] == 1.0
    assert out[1, 2, 3, 6] == 0.0


def test_magnitude_gate_keeps_large_magnitudes(x: torch.Tensor) -> None:
    r = (0.0, 0.5, 1.5)
    x = x.clone()
    x[2, 0, 0, 0] = -1.5  # |x| == r is kept
    x[2, 0, 0, 1] = float("inf")
    x[1, 0, 0, 2] = 0.25
    out = run("magnitude_gate", x, r)
    xn = x.numpy()
    for n in range(N):
        np.testing.assert_array_equal(out[n].numpy(), np.where(np.abs(xn[n]) >= r[n], xn[n], 0.0))
    assert out[2, 0, 0, 0] == -1.5 and out[2, 0, 0, 1] == float("inf") and out[1, 0, 0, 2] == 0.0


def test_invert_eq4(x: torch.Tensor) -> None:
    r = (0.5, -4.0, 3.0)
    out = run("invert", x, r)
    for n in range(N):
        torch.testing.assert_close(out[n], 1.0 / r[n] - x[n])


def test_ablate_gives_zeros(x: torch.Tensor) -> None:
    x = x.clone()
    x[0, 0, 0, 0] = float("nan")
    assert torch.equal(run("ablate", x), torch.zeros_like(x))


# ---------------------------------------------------------------------------------------------------------------
# Tensor operators (section 3.1.2): the matrices written out exactly as printed in the paper


def paper_r1(t: float) -> np.ndarray:
    c, s = math.cos(t), math.sin(t)
    return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1]])


def paper_r2(t: float) -> np.ndarray:
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, 0, s, 0], [0, 1, 0, 0], [-s, 0, c, 0], [0, 0, 0, 1]])


def paper_r3(t: float) -> np.ndarray:
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, 0, 0, s], [0, 1, 0, 0], [0, 0, 1, 0], [-s, 0, 0, c]])


def paper_r4(t: float) -> np.ndarray:
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])


PAPER_MATRICES = {"rotate_r1": paper_r1, "rotate_r2": paper_r2, "rotate_r3": paper_r3, "rotate_r4": paper_r4}


@pytest.mark.parametrize("name", sorted(PAPER_MATRICES))
def test_paper_rotations_match_printed_matrices(name: str, x: torch.Tensor) -> None:
    thetas = (0.3, math.pi / 4, -2.0)
    out = run(name, x, thetas).double().numpy()
    xn = x.double().numpy()
    for n, theta in enumerate(thetas):
        # The authors' code: tensordot(M, x, dims=1) over the channel axis of the (4, H, W) latent
        expected = np.tensordot(PAPER_MATRICES[name](theta), xn[n], axes=1)
        np.testing.assert_allclose(out[n], expected, rtol=1e-5, atol=1e-5)


def test_r1_quarter_turn_maps_channel_2_into_channel_1_with_the_printed_sign(x: torch.Tensor) -> None:
    out = run("rotate_r1", x, (math.pi / 2,) * N)
    torch.testing.assert_close(out[:, 1], -x[:, 2])  # row 1 of R1 is (0, cos, −sin, 0)
    torch.testing.assert_close(out[:, 2], x[:, 1])  # row 2 is (0, sin, cos, 0)
    torch.testing.assert_close(out[:, 0], x[:, 0])
    torch.testing.assert_close(out[:, 3], x[:, 3])


def test_r2_and_r3_quarter_turns_have_plus_sin_above_the_diagonal(x: torch.Tensor) -> None:
    out = run("rotate_r2", x, (math.pi / 2,) * N)
    torch.testing.assert_close(out[:, 0], x[:, 2])
    torch.testing.assert_close(out[:, 2], -x[:, 0])
    out = run("rotate_r3", x, (math.pi / 2,) * N)
    torch.testing.assert_close(out[:, 0], x[:, 3])
    torch.testing.assert_close(out[:, 3], -x[:, 0])


def test_rotate_plane_generalises_r1_and_r4(x: torch.Tensor) -> None:
    thetas = (0.7, -1.1, 3.0)
    torch.testing.assert_close(run("rotate_plane", x, thetas, plane=(1, 2)), run("rotate_r1", x, thetas))
    torch.testing.assert_close(run("rotate_plane", x, thetas, plane=(0, 1)), run("rotate_r4", x, thetas))
    # Swapping the plane's channels reverses the rotation
    torch.testing.assert_close(
        run("rotate_plane", x, thetas, plane=(2, 1)), run("rotate_r1", x, tuple(-t for t in thetas))
    )


def test_rotate_plane_on_eight_channels_preserves_norm_and_other_channels() -> None:
    x = torch.randn(3, 8, 5, 5, generator=torch.Generator().manual_seed(5))
    out = run("rotate_plane", x, (0.4, 2.0, -5.0), plane=(6, 2))
    torch.testing.assert_close(out.norm(dim=1), x.norm(dim=1))
    untouched = [c for c in range(8) if c not in (2, 6)]
    assert torch.equal(out[:, untouched], x[:, untouched])
    assert not torch.allclose(out[:, 2], x[:, 2])


@pytest.mark.parametrize("k", range(C))
def test_reflect_negates_one_channel(k: int, x: torch.Tensor) -> None:
    m = np.eye(4)
    m[k, k] = -1.0
    out = run("reflect", x, channel=k)
    for n in range(N):
        np.testing.assert_allclose(out[n].numpy(), np.tensordot(m, x[n].numpy(), axes=1))


# ---------------------------------------------------------------------------------------------------------------
# Morphological operators (section 3.1.3)


@pytest.mark.parametrize("name", ["erode", "dilate"])
def test_morphology_matches_kornia_with_mixed_kernel_sizes(name: str, x: torch.Tensor) -> None:
    reference = kornia.morphology.erosion if name == "erode" else kornia.morphology.dilation
    values = (2.6, 4.0, 3.2)  # kernel sizes 3, 4, 3: two runs of the same size separated by another
    out = run(name, x, values)
    for n, v in enumerate(values):
        k = kernel_size(v)
        expected = reference(x[n : n + 1], torch.ones(k, k))  # as in the authors' code: (1, 4, H, W)
        torch.testing.assert_close(out[n : n + 1], expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["erode", "dilate"])
def test_morphology_kernel_bigger_than_the_map_matches_kornia(name: str) -> None:
    reference = kornia.morphology.erosion if name == "erode" else kornia.morphology.dilation
    x = torch.randn(2, 2, 3, 5, generator=torch.Generator().manual_seed(9))
    out = run(name, x, (1.0, 13.0))  # 13 > 2 · max(H, W): clamped internally, which must change nothing
    torch.testing.assert_close(out[:1], x[:1], rtol=0, atol=0)  # a 1×1 kernel is the identity
    torch.testing.assert_close(out[1:], reference(x[1:], torch.ones(13, 13)), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["erode", "dilate"])
@pytest.mark.parametrize("dim", [0, 1, 2])
def test_morphology_normalize_dim_gives_zero_mean_along_it(name: str, dim: int, x: torch.Tensor) -> None:
    out = run(name, x, (2.0, 3.0, 4.0), normalize_dim=dim)
    torch.testing.assert_close(out.mean(dim=dim + 1), torch.zeros_like(out.mean(dim=dim + 1)), atol=1e-6, rtol=0)
    plain = run(name, x, (2.0, 3.0, 4.0))
    torch.testing.assert_close(out, plain - plain.mean(dim=dim + 1, keepdim=True))


# ---------------------------------------------------------------------------------------------------------------
# Spatial operators (Broad et al.)


def test_translate_by_zero_is_identity(x: torch.Tensor) -> None:
    torch.testing.assert_close(run("spatial_translate", x, (0.0,) * N), x)
    torch.testing.assert_close(run("spatial_translate", x, (0.0,) * N, axis="y"), x)


@pytest.mark.parametrize("axis", ["x", "y"])
def test_translate_moves_a_pixel_by_a_fraction_of_the_size(axis: str) -> None:
    x = torch.zeros(3, 4, H, W)
    x[:, :, 3, 2] = 1.0
    out = run("spatial_translate", x, (0.25, -0.25, 0.0), axis=axis)
    shift = W // 4 if axis == "x" else H // 4
    for n, sign in enumerate((1, -1, 0)):
        expected = torch.zeros(4, H, W)
        row, col = (3, 2 + sign * shift) if axis == "x" else (3 + sign * shift, 2)
        expected[:, row, col] = 1.0
        torch.testing.assert_close(out[n], expected, atol=1e-5, rtol=0)


def test_translate_beyond_the_map_gives_zeros(x: torch.Tensor) -> None:
    out = run("spatial_translate", x, (1.0, -1.5, 1e30))
    torch.testing.assert_close(out, torch.zeros_like(x), atol=1e-6, rtol=0)


def test_rotate_by_zero_is_identity_and_by_180_is_a_double_flip(x: torch.Tensor) -> None:
    torch.testing.assert_close(run("spatial_rotate", x, (0.0, 360.0, -720.0)), x, atol=1e-5, rtol=0)
    out = run("spatial_rotate", x, (180.0, -180.0, 540.0))
    torch.testing.assert_close(out, torch.flip(x, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_rotate_per_sample_angles_differ(x: torch.Tensor) -> None:
    out = run("spatial_rotate", x, (0.0, 90.0, 180.0))
    torch.testing.assert_close(out[0], x[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], torch.rot90(x[1], k=1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_scale_one_is_identity_and_two_magnifies_the_centre(x: torch.Tensor) -> None:
    torch.testing.assert_close(run("spatial_scale", x, (1.0,) * N), x, atol=1e-5, rtol=0)
    img = torch.zeros(1, 1, 5, 5)
    img[0, 0, 2, 2] = 1.0  # the exact centre of a 5×5 map stays put under any zoom
    img[0, 0, 2, 3] = 1.0
    out = run("spatial_scale", img, (2.0,))
    assert out[0, 0, 2, 2] == pytest.approx(1.0) and out[0, 0, 2, 4] == pytest.approx(1.0)


@pytest.mark.parametrize(("axis", "dim"), [("x", -1), ("y", -2)])
def test_flip_equals_torch_flip(axis: str, dim: int, x: torch.Tensor) -> None:
    assert torch.equal(run("spatial_flip", x, axis=axis), torch.flip(x, dims=(dim,)))


# ---------------------------------------------------------------------------------------------------------------
# All operators


# Per operator: per-sample parameter values (None: takes none) and options, for the all-operator tests
CASES: dict[str, tuple[tuple[float, ...] | None, dict[str, Any]]] = {
    "add": ((0.5, -1.0, 3.0), {}),
    "multiply": ((0.5, -1.0, 3.0), {}),
    "threshold": ((0.0, 0.5, -0.5), {}),
    "magnitude_gate": ((0.2, 0.8, 1.2), {}),
    "invert": ((0.5, -1.0, 3.0), {}),
    "rotate_r1": ((0.3, 1.0, -2.0), {}),
    "rotate_r2": ((0.3, 1.0, -2.0), {}),
    "rotate_r3": ((0.3, 1.0, -2.0), {}),
    "rotate_r4": ((0.3, 1.0, -2.0), {}),
    "rotate_plane": ((0.3, 1.0, -2.0), {"plane": (3, 0)}),
    "reflect": (None, {"channel": 2}),
    "erode": ((2.0, 1.0, 3.0), {"normalize_dim": 1}),
    "dilate": ((3.0, 3.0, 2.0), {}),
    "spatial_translate": ((0.1, -0.3, 0.5), {"axis": "y"}),
    "spatial_rotate": ((10.0, 45.0, -90.0), {}),
    "spatial_scale": ((0.5, 1.5, 2.0), {}),
    "spatial_flip": (None, {"axis": "x"}),
    "ablate": (None, {}),
    "subtract": ((0.5, -1.0, 3.0), {}),
    "negate": (None, {}),
    "absolute": (None, {}),
    "clamp": (((-0.5, 0.5), (0.0, 2.0), (-3.0, -1.0)), {}),
    "gaussian_noise": ((0.1, 0.5, 2.0), {"seed": 9}),
    "power": ((0.5, 2.0, 3.0), {}),
    "log": ((2.0, 10.0, 0.5), {}),
    "soft_threshold": ((0.2, 0.5, 1.0), {}),
    "soft_threshold2": ((0.2, 0.5, 1.5), {}),
    "gaussian_bump": ((1.0, -5.0, 20.0), {}),
    "hadamard_channels": (None, {}),
    "hadamard_spatial": (None, {}),
    "normalize_max_abs": (None, {}),
    "normalize_l2_channels": (None, {}),
    "remove_mean": (None, {"normalize_dim": 2}),
    "rotate_six": (((0.1, 0.2, 0.3, 0.4, 0.5, 0.6), (1.0, 0.0, -2.0, 0.0, 3.0, 0.0), (0.0,) * 6), {}),
    "contract": ((tuple(range(16)), tuple(np.eye(4).flatten()), tuple(np.linspace(-1, 1, 16))), {}),
}
FRAMES = (40, 41, 57)  # frame numbers of the batch's samples: gaussian_noise seeds from them


def test_cases_cover_the_registry() -> None:
    assert set(CASES) == set(OPERATORS)
    for name, (values, _) in CASES.items():
        assert OPERATORS[name].takes_param == (values is not None)


@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_equals_one_sample_at_a_time(name: str, x: torch.Tensor) -> None:
    values, options = CASES[name]
    batched = run(name, x, values, FRAMES, **options)
    for n in range(N):
        single = run(name, x[n : n + 1], None if values is None else (values[n],), (FRAMES[n],), **options)
        torch.testing.assert_close(batched[n : n + 1], single, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_operators_never_modify_their_input(name: str, x: torch.Tensor) -> None:
    values, options = CASES[name]
    before = x.clone()
    run(name, x, values, **options)
    assert torch.equal(x, before)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(CASES))
def test_half_precision_keeps_dtype_and_tracks_float32(name: str, dtype: torch.dtype, x: torch.Tensor) -> None:
    values, options = CASES[name]
    low = run(name, x.to(dtype), values, **options)
    reference = run(name, x.to(dtype).float(), values, **options)
    # Loose: half precision keeps ~3 significant digits, and threshold may flip where x rounds onto r
    close = torch.isclose(low.float(), reference, atol=0.05, rtol=0.05)
    assert close.float().mean() > 0.98


# ---------------------------------------------------------------------------------------------------------------
# The authors' later operators (JAES 2025, utils/bending.py), each against their formula, sample by sample


def test_subtract_negate_absolute(x: torch.Tensor) -> None:
    r = (0.5, -2.0, 10.0)
    out = run("subtract", x, r)
    for n in range(N):
        torch.testing.assert_close(out[n], x[n] - torch.ones_like(x[n]) * r[n])  # their x − ones_like(x)·r
    assert torch.equal(run("negate", x), -1 * x)
    assert torch.equal(run("absolute", x), x.abs())


def test_clamp_to_a_per_sample_range(x: torch.Tensor) -> None:
    ranges = ((-0.5, 0.5), (0.0, 0.0), (1.0, 3.0))
    out = run("clamp", x, ranges)
    for n, (low, high) in enumerate(ranges):
        # their element-wise rule: low if y < low, high if y > high, else y
        expected = np.vectorize(lambda y, lo=low, hi=high: lo if y < lo else hi if y > hi else y)(x[n].numpy())
        np.testing.assert_array_equal(out[n].numpy(), expected.astype(np.float32))


def test_gaussian_noise_is_x_plus_r_times_seeded_normal_noise(x: torch.Tensor) -> None:
    from engine.operators import noise_seed

    r, frames = (0.1, 0.5, 2.0), (3, 4, 3)
    out = run("gaussian_noise", x, r, frames, seed=5)
    for n in range(N):
        generator = torch.Generator().manual_seed(noise_seed(5, frames[n]))
        noise = torch.randn(x.shape[1:], generator=generator)
        torch.testing.assert_close(out[n], x[n] + r[n] * noise)
    # the same frame draws the same noise wherever it sits in a batch; another frame or seed draws other noise
    noise0, noise2 = (out[0] - x[0]) / r[0], (out[2] - x[2]) / r[2]
    torch.testing.assert_close(noise0, noise2)
    other_frame = (run("gaussian_noise", x[:1], (1.0,), (4,), seed=5) - x[:1])[0]
    other_seed = (run("gaussian_noise", x[:1], (1.0,), (3,), seed=6) - x[:1])[0]
    assert not torch.allclose(other_frame, noise0) and not torch.allclose(other_seed, noise0)


def test_gaussian_noise_is_standard_normal_and_frames_are_uncorrelated() -> None:
    zeros = torch.zeros(2, 4, 64, 64)
    noise = run("gaussian_noise", zeros, (1.0, 1.0), (0, 1))
    assert abs(noise.mean().item()) < 0.02 and abs(noise.std().item() - 1.0) < 0.02
    correlation = torch.corrcoef(noise.flatten(1))[0, 1].item()
    assert abs(correlation) < 0.03


def test_noise_seed_mixes_seed_and_frame() -> None:
    from engine.operators import noise_seed

    seeds = {noise_seed(s, f) for s in range(20) for f in range(50)}
    assert len(seeds) == 1000 and all(0 <= v < 2**64 for v in seeds)
    assert noise_seed(1, 2) == noise_seed(1, 2)


def test_power_is_odd_and_matches_torch_pow_where_that_is_defined(x: torch.Tensor) -> None:
    r = (0.5, 2.0, 3.0)
    x = x.clone()
    x[:, 0, 0, 0] = 0.0
    out = run("power", x, r)
    for n in range(N):
        torch.testing.assert_close(out[n], torch.sign(x[n]) * x[n].abs() ** r[n])
    positive = x > 0
    torch.testing.assert_close(out[0][positive[0]], torch.pow(x[0], 0.5)[positive[0]])  # the authors' x^r
    torch.testing.assert_close(out[2], torch.pow(x[2], 3.0))  # odd integer: identical everywhere
    assert torch.all(out[:, 0, 0, 0] == 0)
    negative_exponent = run("power", x, (-1.0, -0.5, -2.0))
    assert torch.all(negative_exponent[:, 0, 0, 0] == 0) and torch.isfinite(negative_exponent).all()


def test_log_of_magnitude_in_base_r_with_a_floor_at_zero(x: torch.Tensor) -> None:
    from engine.operators import LOG_FLOOR

    r = (2.0, 10.0, 0.5)
    x = x.clone()
    x[:, 1, 2, 3] = 0.0
    out = run("log", x, r)
    for n in range(N):
        nonzero = x[n] != 0
        expected = torch.log(x[n].abs()) / math.log(r[n])  # the authors' log(|x|) / log(r)
        torch.testing.assert_close(out[n][nonzero], expected[nonzero])
        assert out[n, 1, 2, 3].item() == pytest.approx(math.log(LOG_FLOOR) / math.log(r[n]), rel=1e-6)
    assert torch.isfinite(out).all()


def test_soft_threshold_form_1(x: torch.Tensor) -> None:
    r = (0.2, 0.5, 1.0)
    x = x.clone()
    x[:, 0, 0, 0] = 0.0
    out = run("soft_threshold", x, r)
    for n in range(N):
        theirs = x[n] / x[n].abs() * torch.maximum(x[n].abs() - r[n], torch.zeros_like(x[n]))
        nonzero = x[n] != 0
        torch.testing.assert_close(out[n][nonzero], theirs[nonzero])
    assert torch.all(out[:, 0, 0, 0] == 0)  # theirs is 0/0 = NaN there


def test_soft_threshold_form_2(x: torch.Tensor) -> None:
    r = (0.2, 0.5, 1.5)
    x = x.clone()
    x[1, 0, 0, 0] = 0.5  # |x| == r is kept (scaled): their test is |y| < r
    out = run("soft_threshold2", x, r)
    for n in range(N):
        expected = np.vectorize(lambda y, r=r[n]: 0.0 if abs(y) < r else y * (1 - r))(x[n].numpy().astype(np.float64))
        np.testing.assert_allclose(out[n].numpy(), expected, rtol=1e-6, atol=1e-7)
    assert out[1, 0, 0, 0].item() == pytest.approx(0.25)


def _authors_bump(size: int, r: float) -> np.ndarray:
    a = np.linspace(-5, 5, size)
    grid_x, grid_y = np.meshgrid(a, a)
    sigma = 1.5
    z = np.exp(-0.5 * ((grid_x / sigma) ** 2 + (grid_y / sigma) ** 2)) / (2 * np.pi * sigma**2)
    return z * r


def test_gaussian_bump_on_the_authors_64_grid() -> None:
    x = torch.randn(2, 4, 64, 64, generator=torch.Generator().manual_seed(3))
    r = (1.0, -7.5)
    out = run("gaussian_bump", x, r)
    for n in range(2):
        expected = x[n].double() + torch.from_numpy(_authors_bump(64, r[n]))
        torch.testing.assert_close(out[n].double(), expected, rtol=1e-6, atol=1e-6)


def test_gaussian_bump_scales_to_the_map_and_peaks_at_its_centre() -> None:
    out = run("gaussian_bump", torch.zeros(1, 4, 9, 15), (1.0,))
    peak = 1 / (2 * math.pi * 1.5**2)
    assert out[0, :, 4, 7].tolist() == pytest.approx([peak] * 4)  # odd sides: a grid point sits on (0, 0)
    assert out[0, 0, 0, 0].item() == pytest.approx(peak * math.exp(-50 / 4.5), rel=1e-5)  # corner (−5, −5)
    torch.testing.assert_close(out[0], out[0].flip(-1))
    torch.testing.assert_close(out[0], out[0].flip(-2))


def test_hadamard_channels_is_the_authors_tensordot(x: torch.Tensor) -> None:
    from scipy.linalg import hadamard

    out = run("hadamard_channels", x)
    h4 = torch.tensor(hadamard(4), dtype=torch.float32)
    for n in range(N):
        torch.testing.assert_close(out[n], torch.tensordot(h4, x[n], dims=1))


@pytest.mark.parametrize("side", [8, 64])
def test_hadamard_spatial_is_the_authors_tensordot(side: int) -> None:
    from scipy.linalg import hadamard

    x = torch.randn(2, 4, side, side, generator=torch.Generator().manual_seed(side))
    out = run("hadamard_spatial", x)
    h = torch.tensor(hadamard(side), dtype=torch.float32)
    for n in range(2):
        torch.testing.assert_close(out[n], torch.tensordot(x[n], h, dims=[[1], [1]]), rtol=1e-5, atol=1e-4)


def test_normalisers(x: torch.Tensor) -> None:
    x = x * torch.tensor([1.0, 5.0, 0.1]).view(-1, 1, 1, 1)
    peak = run("normalize_max_abs", x)
    l2 = run("normalize_l2_channels", x)
    mean = run("remove_mean", x)
    for n in range(N):
        torch.testing.assert_close(peak[n], x[n] / x[n].abs().max())  # the authors' normalize
        torch.testing.assert_close(l2[n], torch.nn.functional.normalize(x[n], dim=0))  # normalize2
        torch.testing.assert_close(mean[n], x[n] - x[n].mean())  # normalize3
    for dim in range(3):
        along = run("remove_mean", x, normalize_dim=dim)
        for n in range(N):
            torch.testing.assert_close(along[n], x[n] - torch.mean(x[n], dim=dim, keepdim=True))  # normalize4
    assert torch.equal(run("normalize_max_abs", torch.zeros(1, 4, 2, 2)), torch.zeros(1, 4, 2, 2))


def _authors_six_plane_matrix(angles: tuple[float, ...]) -> np.ndarray:
    """Their make_six_plane_rotation_matrix, in numpy: the planes' matrices multiplied left to right."""
    combined = np.eye(4)
    for angle, (i, j) in zip(angles, [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)], strict=True):
        m = np.eye(4)
        m[i, i] = m[j, j] = math.cos(angle)
        m[i, j] = -math.sin(angle)
        m[j, i] = math.sin(angle)
        combined = combined @ m
    return combined


def test_rotate_six_is_the_authors_six_plane_rotation(x: torch.Tensor) -> None:
    angles = ((0.1, 0.2, 0.3, 0.4, 0.5, 0.6), (1.0, -2.0, 0.5, 3.0, 0.0, -1.0), (0.0,) * 6)
    out = run("rotate_six", x, angles)
    for n in range(N):
        m = torch.tensor(_authors_six_plane_matrix(angles[n]), dtype=torch.float32)
        torch.testing.assert_close(out[n], torch.tensordot(m, x[n], dims=1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.norm(dim=1), x.norm(dim=1))  # a rotation keeps each pixel's channel norm
    assert torch.equal(out[2], x[2])


def test_rotate_six_with_one_angle_is_that_plane_rotation(x: torch.Tensor) -> None:
    only_01 = run("rotate_six", x, ((0.7, 0, 0, 0, 0, 0),) * N)
    torch.testing.assert_close(only_01, run("rotate_r4", x, (0.7,) * N))  # R4 is plane (0, 1), −sin at [0, 1]
    only_23 = run("rotate_six", x, ((0, 0, 0, 0, 0, 1.3),) * N)
    torch.testing.assert_close(only_23, run("rotate_plane", x, (1.3,) * N, plane=(2, 3)))


def test_six_plane_order_is_left_to_right() -> None:
    from engine.operators import six_plane_matrix

    angles = (0.3, 0.0, 0.0, 0.9, 0.0, 0.0)
    m = six_plane_matrix(torch.tensor([angles], dtype=torch.float64))[0].numpy()
    np.testing.assert_allclose(m, _authors_six_plane_matrix(angles), atol=1e-12)
    reversed_order = _authors_six_plane_matrix((0, 0, 0, 0.9, 0, 0)) @ _authors_six_plane_matrix((0.3, 0, 0, 0, 0, 0))
    assert not np.allclose(m, reversed_order)  # the planes do not commute, so the order is tested


def test_contract_with_any_matrix_row_major(x: torch.Tensor) -> None:
    matrices = (tuple(range(16)), tuple(np.eye(4).flatten()), tuple(np.linspace(-1, 1, 16)))
    out = run("contract", x, matrices)
    for n in range(N):
        m = torch.tensor(matrices[n], dtype=torch.float32).view(4, 4)
        torch.testing.assert_close(out[n], torch.tensordot(m, x[n], dims=1))  # their tensor_multiply
    assert torch.equal(out[1], x[1])
