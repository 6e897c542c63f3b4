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


def run(name: str, x: torch.Tensor, values: tuple[float, ...] | None = None, **options: Any) -> torch.Tensor:
    out = apply_operator(name, x, None if values is None else ParamBatch(values), options)
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
}


def test_cases_cover_the_registry() -> None:
    assert set(CASES) == set(OPERATORS)
    for name, (values, _) in CASES.items():
        assert OPERATORS[name].takes_param == (values is not None)


@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_equals_one_sample_at_a_time(name: str, x: torch.Tensor) -> None:
    values, options = CASES[name]
    batched = run(name, x, values, **options)
    for n in range(N):
        single = run(name, x[n : n + 1], None if values is None else (values[n],), **options)
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
