"""Selections, bends, parameter batches, and the errors a user can cause (each a BendError naming the bend)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from engine.bends import Bend, ParamBatch, apply_bend, check_params, validate_bend
from engine.catalog import OPTIONS, Domain
from engine.errors import BendError, EngineError
from engine.operators import OPERATORS
from engine.selection import SELECTION_KINDS, Selection, clear_selection_cache, selection_mask

CPU = torch.device("cpu")


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(3, 4, 16, 12, generator=torch.Generator().manual_seed(7))


# ---------------------------------------------------------------------------------------------------------------
# Selection masks


@pytest.mark.parametrize(
    ("selection", "shape"),
    [
        (Selection("channel", 2), (1, 4, 1, 1)),
        (Selection("row", 5), (1, 1, 16, 1)),
        (Selection("column", 11), (1, 1, 1, 12)),
        (Selection("random"), (1, 4, 16, 12)),
        (Selection("random_channels"), (1, 4, 1, 1)),
    ],
)
def test_mask_shapes(selection: Selection, shape: tuple[int, ...]) -> None:
    mask = selection_mask(selection, (4, 16, 12), CPU, "b")
    assert mask is not None and mask.dtype == torch.bool and tuple(mask.shape) == shape


def test_all_has_no_mask() -> None:
    assert selection_mask(Selection(), (4, 16, 12), "cpu", "b") is None


@pytest.mark.parametrize(
    ("selection", "where"),
    [
        (Selection("channel", 2), (slice(None), 2, slice(None), slice(None))),
        (Selection("row", 5), (slice(None), slice(None), 5, slice(None))),
        (Selection("column", 11), (slice(None), slice(None), slice(None), 11)),
    ],
)
def test_indexed_selections_change_exactly_their_slice(selection: Selection, where: tuple, x: torch.Tensor) -> None:
    out = apply_bend(Bend("b", "add", selection), x, ParamBatch((1.0, 2.0, 3.0)))
    expected_changed = torch.zeros_like(x, dtype=torch.bool)
    expected_changed[where] = True
    assert torch.equal(out != x, expected_changed)
    for n, r in enumerate((1.0, 2.0, 3.0)):
        torch.testing.assert_close(out[n][where[1:]], x[n][where[1:]] + r)


def test_random_mask_is_five_percent_and_the_same_every_time() -> None:
    shape = (4, 64, 64)
    selection = Selection("random", seed=46)
    mask = selection_mask(selection, shape, CPU, "b")
    assert mask is not None
    assert mask.float().mean().item() == pytest.approx(0.05, abs=0.005)
    assert torch.equal(selection_mask(selection, shape, CPU, "b"), mask)
    # A freshly seeded CPU generator gives the same mask, so it does not depend on the process or the device
    fresh = torch.rand(shape, generator=torch.Generator().manual_seed(46)) < 0.05
    assert torch.equal(mask[0], fresh)
    clear_selection_cache()
    assert torch.equal(selection_mask(selection, shape, CPU, "b"), mask)
    assert not torch.equal(selection_mask(Selection("random", seed=47), shape, CPU, "b"), mask)


def test_random_channels_selects_whole_channels() -> None:
    selection = Selection("random_channels", fraction=0.25, seed=3)
    mask = selection_mask(selection, (320, 8, 8), CPU, "b")
    assert mask is not None and tuple(mask.shape) == (1, 320, 1, 1)
    assert 0.15 < mask.float().mean().item() < 0.35
    x = torch.randn(2, 320, 8, 8, generator=torch.Generator().manual_seed(0))
    out = apply_bend(Bend("b", "spatial_flip", selection), x)
    changed = (out != x).flatten(2).any(-1)  # (N, C): did any element of the channel change
    assert torch.equal(changed, mask.view(1, 320).expand(2, -1))
    selected = mask.view(-1)
    assert torch.equal(out[:, selected], torch.flip(x[:, selected], dims=(-1,)))


def test_random_fraction_extremes(x: torch.Tensor) -> None:
    r = ParamBatch((1.0, 1.0, 1.0))
    assert torch.equal(apply_bend(Bend("b", "add", Selection("random", fraction=0.0)), x, r), x)
    torch.testing.assert_close(apply_bend(Bend("b", "add", Selection("random", fraction=1.0)), x, r), x + 1.0)


# ---------------------------------------------------------------------------------------------------------------
# apply_bend


def test_selection_limits_changes_and_leaves_x_alone(x: torch.Tensor) -> None:
    before = x.clone()
    bend = Bend("b", "multiply", Selection("random", fraction=0.3, seed=1))
    out = apply_bend(bend, x, ParamBatch((2.0, 3.0, -1.0)))
    mask = selection_mask(bend.selection, (4, 16, 12), CPU, "b")
    assert mask is not None
    assert torch.equal(x, before)
    assert torch.equal(out[:, ~mask[0]], x[:, ~mask[0]])
    torch.testing.assert_close(out[1][mask[0]], 3.0 * x[1][mask[0]])


def test_rotation_with_a_row_selection_rotates_only_that_row(x: torch.Tensor) -> None:
    out = apply_bend(Bend("b", "rotate_r4", Selection("row", 3)), x, ParamBatch((math.pi / 2,) * 3))
    torch.testing.assert_close(out[:, 0, 3], -x[:, 1, 3])
    torch.testing.assert_close(out[:, 1, 3], x[:, 0, 3])
    rest = [h for h in range(16) if h != 3]
    assert torch.equal(out[:, :, rest], x[:, :, rest])


def test_cfg_tiling_gives_both_halves_the_same_params(x: torch.Tensor) -> None:
    params = ParamBatch((0.5, 1.0, 2.0))
    bend = Bend("b", "rotate_r2")
    doubled = apply_bend(bend, torch.cat([x, x]), params)  # [uncond..., cond...]
    single = apply_bend(bend, x, params)
    torch.testing.assert_close(doubled[:3], single)
    torch.testing.assert_close(doubled[3:], single)


def test_param_batch_caches_device_tensor_and_tiling() -> None:
    params = ParamBatch([1, 2.5])
    assert params.values == (1.0, 2.5)
    assert params.tensor("cpu", torch.float32) is params.tensor(CPU, torch.float32)
    assert params.tensor(CPU, torch.float16).dtype == torch.float16
    assert params.for_batch(2) is params
    tiled = params.for_batch(6)
    assert tiled.values == (1.0, 2.5) * 3 and params.for_batch(6) is tiled
    with pytest.raises(BendError, match="batch of 5"):
        params.for_batch(5)
    with pytest.raises(BendError):
        ParamBatch(()).for_batch(2)


def test_bend_options_are_frozen_and_compare_by_value() -> None:
    a = Bend("b", "rotate_plane", options={"plane": [1, 2]})
    b = Bend("b", "rotate_plane", options={"plane": (1, 2)})
    assert a == b and hash(a) == hash(b)
    with pytest.raises(TypeError):
        a.options["plane"] = (0, 1)  # type: ignore[index]
    assert Bend("b", "add") == Bend("b", "add", options={})


def test_params_ignored_by_parameterless_operators(x: torch.Tensor) -> None:
    out = apply_bend(Bend("b", "reflect", options={"channel": 1}), x)
    torch.testing.assert_close(out[:, 1], -x[:, 1])
    check_params(Bend("b", "ablate"), [float("nan")])


def _defaults(op: str) -> tuple[dict[str, Any], ParamBatch | None]:
    """A bend's required options at their catalog defaults, and one sample of its default parameter."""
    spec = OPERATORS[op]
    options = {key: OPTIONS[key].default for key in spec.required_options}
    return options, None if spec.param is None else ParamBatch((spec.param.default,))


@pytest.mark.parametrize("op", sorted(OPERATORS))
def test_empty_batch_passes_through(op: str) -> None:
    options, params = _defaults(op)
    out = apply_bend(Bend("b", op, options=options), torch.zeros(0, 4, 4, 4), params)
    assert out.shape == (0, 4, 4, 4)


# ---------------------------------------------------------------------------------------------------------------
# Errors: each is a BendError whose message names the bend and the offending value


def raises(bend: Bend, x: torch.Tensor, values: tuple[float, ...] | None, *fragments: str) -> str:
    with pytest.raises(BendError) as info:
        apply_bend(bend, x, None if values is None else ParamBatch(values))
    message = str(info.value)
    assert f"'{bend.name}'" in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_unknown_operator_lists_valid_names(x: torch.Tensor) -> None:
    message = raises(Bend("wobble", "twist"), x, (1.0,) * 3, "'twist'")
    assert all(name in message for name in OPERATORS)


def test_invert_by_zero(x: torch.Tensor) -> None:
    raises(Bend("inv", "invert"), x, (1.0, 0.0, 2.0), "r = 0", "zero", "sample 1")


def test_invert_by_zero_names_the_frame() -> None:
    with pytest.raises(BendError, match=r"bend 'inv' \(invert\) at frame 12: r = 0 divides by zero"):
        check_params(Bend("inv", "invert"), [1.0, 0.0], frames=[11, 12])


@pytest.mark.parametrize("name", ["erode", "dilate"])
def test_kernel_size_below_one(name: str, x: torch.Tensor) -> None:
    raises(Bend("morph", name), x, (3.0, 0.4, 2.0), "kernel", "0.4")


def test_channel_row_column_out_of_range(x: torch.Tensor) -> None:
    r = (1.0, 1.0, 1.0)
    raises(Bend("sel", "add", Selection("channel", 4)), x, r, "channel 4", "0..3")
    raises(Bend("sel", "add", Selection("row", 70)), x, r, "row 70", "16 rows", "0..15")
    raises(Bend("sel", "add", Selection("column", 12)), x, r, "column 12", "0..11")
    raises(Bend("sel", "add", Selection("row", -1)), x, r, "row -1")
    raises(Bend("refl", "reflect", options={"channel": 9}), x, None, "channel 9", "0..3")
    raises(Bend("pl", "rotate_plane", options={"plane": [0, 5]}), x, r, "channel 5")


def test_paper_rotation_on_eight_channels_suggests_rotate_plane() -> None:
    raises(Bend("rot", "rotate_r1"), torch.zeros(1, 8, 4, 4), (1.0,), "8 channels", "rotate_plane")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e300])
@pytest.mark.parametrize("op", ["add", "rotate_r3", "spatial_rotate"])
def test_non_finite_params(op: str, bad: float, x: torch.Tensor) -> None:
    raises(Bend("nf", op), x, (1.0, bad, 1.0), f"r = {bad:g}")


@pytest.mark.parametrize("bad", [0.0, -0.5])
def test_scale_needs_a_positive_factor(bad: float, x: torch.Tensor) -> None:
    raises(Bend("zoom", "spatial_scale"), x, (1.0, 1.0, bad), f"r = {bad:g}", "> 0")


def test_wrong_number_of_params(x: torch.Tensor) -> None:
    raises(Bend("count", "add"), x, (1.0, 2.0), "2 parameter value(s)", "batch of 3")
    raises(Bend("count", "add"), x, None, "needs a parameter")


@pytest.mark.parametrize(
    ("op", "options", "fragment"),
    [
        ("add", {"axis": "x"}, "unknown option"),
        ("rotate_plane", {}, "missing option"),
        ("rotate_plane", {"plane": [1, 1]}, "two different"),
        ("rotate_plane", {"plane": [1]}, "plane"),
        ("rotate_plane", {"plane": "12"}, "plane"),
        ("erode", {"normalize_dim": 3}, "normalize_dim"),
        ("spatial_flip", {"axis": "z"}, "'z'"),
        ("reflect", {"channel": -1}, "-1"),
        ("reflect", {"channel": True}, "True"),
    ],
)
def test_bad_options(op: str, options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(BendError, match="'opt'") as info:
        validate_bend(Bend("opt", op, options=options))
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("selection", "fragment"),
    [
        (Selection("diagonal"), "diagonal"),
        (Selection("random", fraction=1.5), "1.5"),
        (Selection("random", fraction=float("nan")), "nan"),
        (Selection("random", seed=-1), "-1"),
    ],
)
def test_bad_selections(selection: Selection, fragment: str) -> None:
    with pytest.raises(BendError, match="'sel'") as info:
        validate_bend(Bend("sel", "add", selection))
    assert fragment in str(info.value)


def test_bend_errors_are_engine_errors() -> None:
    assert issubclass(BendError, EngineError)


# ---------------------------------------------------------------------------------------------------------------
# Property: whatever the user puts in a job, the result is a tensor of the same shape or a BendError

_WEIRD_FLOATS = [float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 0.4999, 1e-45, 1e38, 1e39, 1e300, -1e300]


@st.composite
def _maybe(draw: st.DrawFn, good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
    """Mostly a good value, sometimes a bad one: each example can then go wrong in one or two ways, not all."""
    return draw(bad) if draw(st.integers(0, 9)) == 0 else draw(good)


_floats = _maybe(
    st.floats(min_value=-8.0, max_value=8.0),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(_WEIRD_FLOATS)),
)
_index = _maybe(st.integers(min_value=0, max_value=4), st.integers(min_value=-3, max_value=100))
_selections = st.builds(
    Selection,
    kind=_maybe(st.sampled_from(SELECTION_KINDS), st.sampled_from(["bogus", "ROW", ""])),
    index=_index,
    fraction=_maybe(st.floats(min_value=0.0, max_value=1.0), st.sampled_from([-0.1, 1.5, float("nan"), 2])),
    seed=_maybe(st.integers(min_value=0, max_value=2**64 - 1), st.sampled_from([-1, 2**64, 1.5])),
)
_OPTION_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "plane": _maybe(st.lists(st.integers(0, 4), min_size=2, max_size=2), st.lists(_index, max_size=3)),
    "channel": _index,
    "normalize_dim": _maybe(st.sampled_from([None, 0, 1, 2]), st.sampled_from([3, -1, "1", 1.0])),
    "axis": _maybe(st.sampled_from(["x", "y"]), st.sampled_from(["z", "", None])),
    "seed": _maybe(st.integers(0, 2**63 - 1), st.sampled_from([-1, 2**63, 1.5, None, True])),
}


@st.composite
def _user_input(draw: st.DrawFn) -> tuple[str, dict[str, Any], list[Any], tuple[int, int, int, int]]:
    """A bend and its parameters as a job file could state them, for a tiny tensor."""
    op = draw(_maybe(st.sampled_from(sorted(OPERATORS)), st.text(max_size=8)))
    spec = OPERATORS.get(op)
    options: dict[str, Any] = {}
    for key in spec.options if spec else ():
        if key in spec.required_options or draw(st.booleans()):
            options[key] = draw(_OPTION_VALUES[key])
    if draw(st.integers(0, 9)) == 0:
        key = draw(st.sampled_from([*_OPTION_VALUES, "colour"]))
        options[key] = draw(_OPTION_VALUES.get(key, st.integers()))
    shape = draw(st.tuples(st.integers(1, 2), st.sampled_from([1, 3, 4, 4]), st.integers(1, 5), st.integers(1, 5)))
    if draw(st.booleans()):
        shape = (shape[0], shape[1], shape[2], shape[2])  # square maps, so the spatial Hadamard runs too
    count = draw(_maybe(st.just(shape[0]), st.integers(0, 4)))
    length = spec.param.length if spec and spec.param and spec.param.is_vector else None
    # a vector operator mostly gets lists of its length, sometimes numbers or lists of another length
    value = _maybe(st.lists(_floats, min_size=length, max_size=length), _floats) if length else _floats
    values = draw(st.lists(value, min_size=count, max_size=count))
    return op, options, values, shape


@settings(max_examples=150, deadline=None, database=None)
@given(case=_user_input(), selection=_selections, dtype=st.sampled_from([torch.float32, torch.float16]))
def test_any_user_input_gives_a_tensor_or_a_bend_error(
    case: tuple[str, dict[str, Any], list[Any], tuple[int, int, int, int]],
    selection: Selection,
    dtype: torch.dtype,
) -> None:
    op, options, values, shape = case
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    before = x.clone()
    try:
        bend = Bend("prop", op, selection, options)
        check_params(bend, values, frames=list(range(len(values))))
        out = apply_bend(bend, x, ParamBatch(values))
    except BendError as error:
        assert "'prop'" in str(error), str(error)
        event("BendError")
        return
    event("tensor")
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, before)


# ---------------------------------------------------------------------------------------------------------------
# One description per operator: validation generated from the catalog


def test_every_operator_is_described_completely() -> None:
    for name, spec in OPERATORS.items():
        assert spec.name == name and spec.summary and spec.source, name
        assert set(spec.required_options) <= set(spec.options) <= set(OPTIONS), name
        if spec.param is not None:
            # the default is a valid value: the Blender side starts a new bend from it
            check_params(
                Bend("d", name, options={k: OPTIONS[k].default for k in spec.required_options}), [spec.param.default]
            )
            assert spec.param.is_vector == isinstance(spec.param.default, tuple), name
    for key, option in OPTIONS.items():
        assert option.problem(option.default) is None, key


@pytest.mark.parametrize(
    ("op", "value", "fragments"),
    [
        ("log", 1.0, ["r = 1", "not a logarithm base", "other than 1"]),
        ("log", 0.0, ["r = 0", "> 0"]),
        ("log", -2.0, ["r = -2", "> 0"]),
        ("clamp", (1.0, -1.0), ["low, high = 1, -1", "low ≤ high"]),
        ("clamp", (0.0,), ["list of 2 numbers", "[low, high]"]),
        ("clamp", 0.5, ["list of 2 numbers"]),
        ("rotate_six", (0.0,) * 5, ["list of 6 numbers", "a01"]),
        ("rotate_six", (0.0, 0.0, float("nan"), 0.0, 0.0, 0.0), ["a03 = nan", "finite"]),
        ("contract", (1e39,) + (0.0,) * 15, ["m00 = 1e+39", "float32"]),
        ("add", (1.0, 2.0), ["expects one number"]),
        ("add", "loud", ["'loud'", "not a number"]),
    ],
)
def test_parameter_domains_come_from_the_catalog(op: str, value: Any, fragments: list[str]) -> None:
    with pytest.raises(BendError) as info:
        check_params(Bend("p", op), [value], frames=[7])
    message = str(info.value)
    assert "bend 'p'" in message and "frame 7" in message
    for fragment in fragments:
        assert fragment in message, message


def test_domain_descriptions() -> None:
    assert Domain().describe() == "any number"
    assert Domain(low=0.0, low_open=True, excluded=((1.0, "x"),)).describe() == "> 0, ≠ 1"
    assert Domain(low=0.0, high=1.0).describe() == "≥ 0 and ≤ 1"
    assert Domain(low=0.5).problem(0.5) is None and Domain(low=0.5, low_open=True).problem(0.5) is not None
    assert Domain(high=2.0, high_open=True).problem(2.0) is not None and Domain(high=2.0).problem(2.0) is None


@pytest.mark.parametrize(
    ("op", "options", "fragment"),
    [
        ("gaussian_noise", {"seed": -1}, "-1"),
        ("gaussian_noise", {"seed": 2**63}, "seed"),
        ("gaussian_noise", {"seed": 1.0}, "1.0"),
        ("remove_mean", {"normalize_dim": 3}, "normalize_dim"),
        ("negate", {"seed": 1}, "it takes no options"),
    ],
)
def test_new_operators_bad_options(op: str, options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(BendError, match="'opt'") as info:
        validate_bend(Bend("opt", op, options=options))
    assert fragment in str(info.value)


@pytest.mark.parametrize("op", ["rotate_six", "contract", "hadamard_channels"])
def test_channel_matrices_need_four_channels(op: str) -> None:
    _, params = _defaults(op)
    raises(Bend("m", op), torch.zeros(1, 8, 4, 4), None if params is None else params.values, "8 channels", "4×4")


@pytest.mark.parametrize("shape", [(1, 4, 8, 4), (1, 4, 6, 6)])
def test_spatial_hadamard_needs_a_square_power_of_two(shape: tuple[int, ...]) -> None:
    raises(Bend("h", "hadamard_spatial"), torch.zeros(shape), None, f"{shape[2]}×{shape[3]}", "power of two")


def test_vector_params_batch_tile_and_keep_frames() -> None:
    params = ParamBatch([[0.0, 1.0], (2, 3)], frames=[5, 6])
    assert params.values == ((0.0, 1.0), (2.0, 3.0)) and params.frames == (5, 6)
    assert tuple(params.tensor(CPU, torch.float32).shape) == (2, 2)
    tiled = params.for_batch(4)
    assert tiled.values == params.values * 2 and tiled.frames == (5, 6, 5, 6)
    assert ParamBatch((1.0, 2.0)).sample_frames() == (0, 1)
    with pytest.raises(BendError, match="frame number"):
        ParamBatch((1.0,), frames=(1, 2))
    with pytest.raises(BendError, match="different lengths"):
        ParamBatch([(1.0, 2.0), (3.0,)]).tensor(CPU, torch.float32)


def test_gaussian_noise_under_guidance_gives_both_halves_the_frames_noise(x: torch.Tensor) -> None:
    params = ParamBatch((1.0, 0.5, 2.0), frames=(3, 8, 9))
    bend = Bend("n", "gaussian_noise", options={"seed": 4})
    doubled = apply_bend(bend, torch.cat([x, x]), params)
    single = apply_bend(bend, x, params)
    torch.testing.assert_close(doubled[:3], single)
    torch.testing.assert_close(doubled[3:], single)


@pytest.mark.parametrize(("kind", "axis"), [("random_rows", 2), ("random_columns", 3)])
def test_random_rows_and_columns_pick_exactly_a_fraction(kind: str, axis: int, x: torch.Tensor) -> None:
    size = x.shape[axis]
    selection = Selection(kind, fraction=0.3, seed=11)
    mask = selection_mask(selection, (4, 16, 12), CPU, "b")
    assert mask is not None and mask.shape[axis] == size and mask.numel() == size
    assert int(mask.sum()) == int(0.3 * size)  # the authors' random.sample(range(dim), int(k · dim))
    out = apply_bend(Bend("b", "add", selection), x, ParamBatch((1.0, 2.0, 3.0)))
    changed = (out != x).transpose(axis, -1).flatten(0, -2).all(0)  # which rows (columns) changed everywhere
    assert torch.equal(changed, mask.flatten())
    unchanged = (out == x).transpose(axis, -1).flatten(0, -2).all(0)
    assert torch.equal(unchanged, ~mask.flatten())
    assert torch.equal(selection_mask(selection, (4, 16, 12), CPU, "b"), mask)
    assert not torch.equal(selection_mask(Selection(kind, fraction=0.3, seed=12), (4, 16, 12), CPU, "b"), mask)


def test_random_rows_extremes_and_bad_fraction() -> None:
    assert not selection_mask(Selection("random_rows", fraction=0.0), (4, 8, 8), CPU, "b").any()
    assert selection_mask(Selection("random_columns", fraction=1.0), (4, 8, 8), CPU, "b").all()
    with pytest.raises(BendError, match=r"1\.5"):
        validate_bend(Bend("b", "add", Selection("random_rows", fraction=1.5)))
