"""The winograd family: F(m×m, 3×3) tiles for 3×3 stride-1 forward and backward-data,
exact transforms, accuracy as a condition of legality, TensorFlow's NaN/Inf patterns."""

from fractions import Fraction

import numpy as np
import pytest
from conftest import TOLERANCE, assert_matches, random
from test_ops import Problem, call_op, to_format

import numbaconv as nc
from numbaconv.cpu import direct, families, heuristic, winograd
from numbaconv.cpu.families import CPU
from numbaconv.cpu.rule import rule
from numbaconv.cpu.winograd import (WinogradSchedule, fallback, filter_cache, fit, kernels,
                                    transforms)
from numbaconv.geometry import conv_geometry
from numbaconv.machine import this_machine
from numbaconv.tune.space import load_space
from numbaconv.tune.tuner import TOLERANCE as TUNER_TOLERANCE

#: (input shape, padding): odd sizes (partial edge tiles), batch 1, an image smaller than
#: one tile with SAME (the filter larger than the input), pads beyond the filter.
GEOMETRIES = {
    "odd_same": ((2, 7, 9, 8), "SAME"),
    "odd_valid": ((1, 9, 6, 8), "VALID"),
    "smaller_than_a_tile": ((1, 2, 1, 8), "SAME"),
    "explicit_pads_beyond_filter": ((2, 5, 7, 8), ((3, 0), (1, 4))),
}
PRIMITIVES = ("forward", "backward_data", "backward_filter")
#: Register tiles that fit the tests' 8-channel layers: (pixels, output channels) for the
#: products, (input, output channels) for backward-filter's sums.
TILE = {"forward": (3, 8), "backward_data": (3, 8), "backward_filter": (4, 8)}


def problem(rng, input_shape, padding, out_channels, dtype):
    return Problem(rng, input_shape, (3, 3, input_shape[3], out_channels), (1, 1), (1, 1),
                   padding, dtype)


def geometry(input_shape, padding, out_channels):
    return conv_geometry(input_shape, (3, 3, input_shape[3], out_channels), (1, 1), (1, 1),
                         padding)


def operands(primitive, p):
    """The primitive's two operands of problem ``p``, in the primitive table's order."""
    return {"forward": (p.x, p.w), "backward_data": (p.dy, p.w),
            "backward_filter": (p.x, p.dy)}[primitive]


def run(primitive, p, g, schedule):
    return families.run(primitive, operands(primitive, p), g, schedule)


@pytest.mark.parametrize("m", sorted(transforms.POINTS))
def test_transforms_are_an_exact_correlation(m):
    """Aᵀ[(G g) ⊙ (Bᵀ d)] = the m outputs of d correlated with g, in exact arithmetic:
    Σ_j Aᵀ[i, j] G[j, k] Bᵀ[j, s] is 1 where s = i + k and 0 elsewhere."""
    t = transforms.transform(m)
    for i in range(m):
        for k in range(3):
            for s in range(t.alpha):
                total = sum(t.output[i][j] * t.filter[j][k] * t.data[j][s]
                            for j in range(t.alpha))
                assert total == Fraction(int(s == i + k))
    assert all(value.denominator == 1 for row in t.data for value in row)  # no rounding


@pytest.mark.parametrize("rotate", [False, True], ids=["forward", "backward_data"])
def test_filter_transform_is_g_f_gt_over_channel_blocks(rng, rotate):
    """u[ξ·α + ν, kt, c, j] = (G f[:, :, c, kt·KB + j] Gᵀ)[ξ, ν], f the filter (for
    backward-data turned by 180°, its channel axes swapped), over channels that fill one of
    the transform's blocks and part of the next."""
    t, tile, columns = transforms.transform(4), 8, 24
    channels = kernels.filter_block_channels(tile) + 8
    w = random(rng, (3, 3, columns, channels) if rotate else (3, 3, channels, columns),
               np.float32)
    g_matrix = np.array(t.floats("filter"))
    out = np.empty(t.alpha ** 2 * channels * columns, np.float32)
    u = kernels.transformed_filter(w, t, tile, rotate, g_matrix, out)
    f = np.rot90(w, 2, axes=(0, 1)).transpose(0, 1, 3, 2) if rotate else w
    expected = np.einsum("xr,rsck,ys->xyck", g_matrix, f.astype(np.float64), g_matrix)
    expected = expected.reshape(t.alpha ** 2, channels, columns // tile, tile)
    np.testing.assert_allclose(u, expected.transpose(0, 2, 1, 3), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype, m", [(np.float32, 2), (np.float32, 4), (np.float64, 2),
                                      (np.float64, 4), (np.float64, 6)],
                         ids=["f32-m2", "f32-m4", "f64-m2", "f64-m4", "f64-m6"])
@pytest.mark.parametrize("name", GEOMETRIES)
@pytest.mark.parametrize("primitive", PRIMITIVES)
def test_family_matches_reference(rng, primitive, name, dtype, m):
    input_shape, padding = GEOMETRIES[name]
    p = problem(rng, input_shape, padding, 16, dtype)
    g = geometry(input_shape, padding, 16)
    schedule = fit(WinogradSchedule(output_tile=m, register_tile=TILE[primitive]), primitive, g,
                   np.dtype(dtype).itemsize)
    assert CPU.illegal_reason(primitive, g, schedule, np.dtype(dtype).itemsize) is None
    assert_matches(run(primitive, p, g, schedule), p.expected(primitive), dtype)


@pytest.mark.parametrize("primitive", PRIMITIVES)
def test_chunks_and_tiles_that_do_not_divide(rng, primitive):
    """Chunks of 5 tiles (the last one short) and a 3-row register tile give the same
    result as one chunk (backward-filter: its sums added chunk by chunk, within rounding)."""
    p = problem(rng, (3, 9, 11, 8), "SAME", 8, np.float32)
    g = geometry((3, 9, 11, 8), "SAME", 8)
    tile = TILE[primitive]
    whole = run(primitive, p, g, fit(WinogradSchedule(register_tile=tile), primitive, g, 4))
    chunked = run(primitive, p, g, WinogradSchedule(register_tile=tile, chunk_tiles=5))
    assert_matches(chunked, p.expected(primitive), np.float32)
    if primitive != "backward_filter":
        np.testing.assert_array_equal(chunked, whole)


@pytest.mark.parametrize("primitive", PRIMITIVES)
def test_a_prepared_run_serves_call_after_call(rng, primitive):
    """What a prepared run makes once (pads, bound kernels, the products' tables for a
    short last chunk too) holds nothing of a call's operands, and the scratch buffers its
    calls reuse (backward-filter's sums of each chunk and their total) are never a
    result: each call, its own result, untouched by the next call."""
    g = geometry((2, 9, 11, 8), "SAME", 8)
    prepared = families.prepare(primitive, g, WinogradSchedule(register_tile=TILE[primitive],
                                                               chunk_tiles=7), np.float32)
    calls = []
    for _ in range(2):
        p = problem(rng, (2, 9, 11, 8), "SAME", 8, np.float32)
        calls.append((prepared(*operands(primitive, p)), p.expected(primitive)))
    for result, expected in calls:
        assert_matches(result, expected, np.float32)


def test_the_sums_splits_are_problems_of_their_own(rng):
    """The tiled backward-filter that Winograd's sums run on: one reduction split per image
    row, each split's partial filter that row's own products, not summed."""
    from numbaconv.cpu import tiled
    g = conv_geometry((1, 3, 10, 8), (1, 1, 8, 16), (1, 1), (1, 1), "VALID")
    x, dy = random(rng, g.input_shape, np.float32), random(rng, g.output_shape, np.float32)
    schedule = tiled.TiledSchedule(loop_order="channel_tiles_outer", register_tile=(4, 8),
                                   reduction_splits=3)
    found = tiled.backward_filter_splits_into_scratch(g, schedule, np.float32, "test")(x, dy)
    assert found.shape == (3, 1, 1, 8, 16)
    for row in range(3):
        expected = x[0, row].astype(np.float64).T @ dy[0, row].astype(np.float64)
        assert_matches(found[row, 0, 0], expected, np.float32)


def test_one_input_channel(rng):
    p = problem(rng, (1, 6, 5, 1), "SAME", 8, np.float32)
    g = geometry((1, 6, 5, 1), "SAME", 8)
    assert_matches(run("forward", p, g, WinogradSchedule(register_tile=(3, 8))),
                   p.expected("forward"), np.float32)


@pytest.mark.parametrize("m", [2, 4])
def test_float32_error_at_realistic_reduction_lengths(rng, m):
    """3×3×512 (4608 products per output): F(2×2) stays within the tests' tolerance, F(4×4)
    within the tuner's (its error grows with the transforms' larger entries, about 1e-5 of
    the largest output here); in float64 both within the tests' tolerance."""
    p = problem(rng, (1, 8, 8, 512), "SAME", 16, np.float64)
    g = geometry((1, 8, 8, 512), "SAME", 16)
    expected = p.expected("forward")
    scale = np.abs(expected).max()
    schedule = WinogradSchedule(output_tile=m, register_tile=(3, 8))
    single = families.run("forward", (p.x.astype(np.float32), p.w.astype(np.float32)), g,
                          schedule)
    error = np.abs(single - expected).max() / scale
    assert error <= (TOLERANCE[np.float32] if m == 2 else TUNER_TOLERANCE["float32"])
    exact = np.abs(run("forward", p, g, schedule) - expected).max() / scale
    assert exact <= TOLERANCE[np.float64]


def reason(filter_shape=(3, 3, 8, 8), strides=(1, 1), dilations=(1, 1), primitive="forward",
           schedule=WinogradSchedule(register_tile=(3, 8)), itemsize=4):
    """Why ``schedule`` cannot run on a 1×8×8×8 input with these filter, strides and
    dilations (None: it can)."""
    g = conv_geometry((1, 8, 8, 8), filter_shape, strides, dilations, "SAME")
    return CPU.illegal_reason(primitive, g, schedule, itemsize)


def test_legality():
    assert reason() is None
    assert reason(primitive="backward_filter", schedule=WinogradSchedule(register_tile=(4, 8))) \
        is None
    reasons = {
        "backward_filter tile": reason(primitive="backward_filter",
                                       schedule=WinogradSchedule(register_tile=(3, 8))),
        "stride 2": reason(strides=(2, 2)),
        "dilation 2": reason(dilations=(2, 2)),
        "5×5": reason(filter_shape=(5, 5, 8, 8)),
        "grouped": reason(filter_shape=(3, 3, 4, 8)),
        "f32 m6": reason(schedule=WinogradSchedule(output_tile=6, register_tile=(3, 8))),
        "tile channels": reason(schedule=WinogradSchedule(register_tile=(3, 16))),
    }
    assert all(reasons.values()), reasons
    assert reason(schedule=WinogradSchedule(output_tile=6, register_tile=(3, 8)),
                  itemsize=8) is None


@pytest.mark.parametrize("itemsize, tiles", [(4, {2, 4}), (8, {2, 4, 6})])
def test_tuner_offers_the_accurate_output_tiles(itemsize, tiles):
    space = load_space()["cpu"]
    g = conv_geometry((1, 28, 28, 64), (3, 3, 64, 64), (1, 1), (1, 1), "SAME")
    found = [s for s in CPU.candidates("forward", g, itemsize, space, this_machine())
             if s.algorithm == "winograd"]
    assert {s.output_tile for s in found} == tiles
    strided = conv_geometry((1, 28, 28, 64), (3, 3, 64, 64), (2, 2), (1, 1), "SAME")
    assert not [s for s in CPU.candidates("forward", strided, itemsize, space, this_machine())
                if s.algorithm == "winograd"]


#: Positions of one non-finite input value: tile corners and edges of F(4×4) and F(2×2)
#: tiles, the image's corners, a pixel inside.
NONFINITE_AT = [(0, 0, 0, 0), (0, 3, 4, 2), (0, 4, 3, 5), (1, 8, 9, 7), (1, 5, 0, 1), (0, 2, 2, 3)]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("primitive", PRIMITIVES)
@pytest.mark.parametrize("operand", ["first", "second"])
def test_nonfinite_values_give_tensorflows_pattern(rng, operand, primitive, m, value):
    """The NaN and Inf outputs of the family the rule runs otherwise, exactly where it has
    them: a non-finite value spreads over a whole Winograd tile, so such calls are computed
    again by that family. In the first operand (x, or dy for backward-data) that is
    TensorFlow's pattern, the windows that read the value (the direct loops' too); in the
    second (the filter, or dy for backward-filter) a value also meets the zero padding
    (0 · NaN), as in the tiled kernels."""
    p = problem(rng, (2, 9, 10, 8), "SAME", 8, np.float32)
    g = geometry((2, 9, 10, 8), "SAME", 8)
    first, second = {"forward": (p.x, p.w), "backward_data": (p.dy, p.w),
                     "backward_filter": (p.x, p.dy)}[primitive]
    if operand == "second" and primitive != "backward_filter":
        second[1, 2, 3, 4] = value
    else:
        for position in NONFINITE_AT:
            (first if operand == "first" else second)[position] = value
    expected = run(primitive, p, g, fallback(primitive, g, 4))
    if operand == "first":
        direct_result = run(primitive, p, g, direct.default(primitive, g, 4))
        np.testing.assert_array_equal(np.isfinite(expected), np.isfinite(direct_result))
    actual = run(primitive, p, g, WinogradSchedule(output_tile=m, register_tile=TILE[primitive]))
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(np.isposinf(actual), np.isposinf(expected))
    np.testing.assert_array_equal(np.isneginf(actual), np.isneginf(expected))
    finite = np.isfinite(expected)
    assert finite.any() and not finite.all()
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=0, atol=1e-4)


#: A layer the default rule runs in Winograd tiles (28×28 at batch 1, both channel counts
#: 64): the public ops pick it and give the reference result.
RULE_SIZED = (1, 28, 28, 64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("op", ["conv2d", "conv2d_backprop_input", "conv2d_transpose"])
def test_public_ops_run_winograd_by_default(rng, op, data_format, dtype):
    p = problem(rng, RULE_SIZED, "SAME", 64, dtype)
    x, dy = to_format(p.x, data_format), to_format(p.dy, data_format)
    if op == "conv2d":
        arguments = (x, p.w, 1, "SAME")
    elif op == "conv2d_backprop_input":
        arguments = (x.shape, p.w, dy, 1, "SAME")
    else:
        arguments = (dy, p.w, x.shape, 1, "SAME")
    explanation = nc.explain(op, *arguments, data_format=data_format)
    assert explanation.choice.schedule.algorithm == "winograd", str(explanation)
    primitive, actual = call_op(op, p, 1, "SAME", data_format, 1)
    if data_format == "NCHW":
        actual = actual.transpose(0, 2, 3, 1)
    assert_matches(actual, p.expected(primitive), dtype)


@pytest.mark.parametrize("shape, output_tile", [
    ((1, 14, 14, 256), 4),  # 16 F(4×4) tiles, 3.06× fewer multiply-adds
    ((8, 7, 7, 512), 4),    # 32 tiles
    ((1, 12, 12, 64), 2),   # 9 F(4×4) tiles: too few rows; 36 F(2×2) tiles, 2.25×
])
def test_the_choice_puts_winograd_over_another_familys_schedule(shape, output_tile):
    """Where the rule keeps a layer off Winograd (its transform not paid back on each call),
    the CPU's choice runs Winograd on a filter that comes again unchanged, and the rule's
    schedule on the other calls; not for backward-filter, half types or integers."""
    g = conv_geometry(shape, (3, 3, shape[3], shape[3]), (1, 1), (1, 1), "SAME")
    for primitive in ("forward", "backward_data"):
        chosen = heuristic.choose(primitive, g, "float32", 4).schedule
        assert chosen.algorithm == "winograd" and chosen.output_tile == output_tile
        assert chosen.otherwise == rule(primitive, g, 4, this_machine()) != chosen
        assert chosen.calls_for_every_path == 4
        assert families.CPU.parse(chosen.to_dict()) == chosen  # a cold start's build gets it
    assert heuristic.choose("backward_filter", g, "float32", 4).schedule.algorithm != "winograd"
    for dtype, itemsize in (("float16", 4), ("int32", 8)):
        assert heuristic.choose("forward", g, dtype, itemsize).schedule.algorithm != "winograd"


def test_no_winograd_over_a_schedule_where_its_tiles_save_too_little():
    """7×7 at batch 1: F(4×4) makes 4 tiles, too few rows for its products; F(2×2) 16
    tiles that save 1.72× the multiply-adds, short of the 2× a kept transform needs."""
    g = conv_geometry((1, 7, 7, 512), (3, 3, 512, 512), (1, 1), (1, 1), "SAME")
    for primitive in ("forward", "backward_data"):
        assert heuristic.choose(primitive, g, "float32", 4).schedule.algorithm != "winograd"


def test_public_ops_run_winograd_from_an_unchanged_filters_third_call(rng):
    """A 12×12 image at batch 1: conv2d runs the tiles on a filter's first two calls and
    Winograd from its third, unchanged, on; explain() says so."""
    p = problem(rng, (1, 12, 12, 64), "SAME", 64, np.float32)
    explanation = str(nc.explain("conv2d", p.x, p.w, 1, "SAME"))
    assert "algorithm=winograd" in explanation
    assert "until the filter comes again unchanged" in explanation
    before = filter_cache.statistics()
    for _ in range(4):
        assert_matches(nc.conv2d(p.x, p.w, 1, "SAME"), p.expected("forward"), np.float32)
    after = filter_cache.statistics()
    assert (after["misses"], after["hits"]) == (before["misses"] + 1, before["hits"] + 1)


@pytest.mark.parametrize("shape, channels, saved, chosen", [
    ((1, 28, 28, 128), 128, 147, True),   # 49 F(4×4) tiles for 784 pixels
    ((1, 26, 26, 64), 64, 120, True),     # the rule's threshold
    ((1, 24, 24, 64), 64, 108, False),
    ((1, 14, 14, 256), 256, 33, False),
    ((8, 7, 7, 512), 512, 66, False),     # 7×7 leaves a 4×4 tile 3/16 full
    ((1, 27, 29, 64), 64, 139.75, True),  # partial tiles at the edges count
])
def test_rule_runs_winograd_where_the_multiply_adds_saved_pay_for_the_filter(
        shape, channels, saved, chosen):
    """The saved multiply-adds per channel pair (9 per pixel against 36 per F(4×4) tile)
    over the transformed filter's 36 values per channel pair, against the rule's
    threshold; backward-filter stays on the tiled kernels whatever the size."""
    g = conv_geometry(shape, (3, 3, shape[3], channels), (1, 1), (1, 1), "SAME")
    assert winograd.saved_per_filter_value("forward", g, 4) == pytest.approx(saved)
    assert winograd.MIN_SAVED_PER_FILTER_VALUE == 120
    for primitive in ("forward", "backward_data"):
        assert (rule(primitive, g, 4, this_machine()).algorithm == "winograd") == chosen
    assert rule("backward_filter", g, 4, this_machine()).algorithm != "winograd"


@pytest.mark.parametrize("shape, in_channels, out_channels, chosen", [
    ((8, 28, 28, 128), 128, 128, True),   # the probe layer: 1176 saved, intensity 64
    ((8, 14, 14, 256), 256, 256, True),   # 264 saved
    ((1, 28, 28, 128), 128, 128, False),  # 147: enough for forward, not for the sums
    ((1, 112, 112, 64), 64, 128, True),   # 2352 saved, intensity 43
    ((1, 56, 56, 64), 64, 64, False),     # 588 saved, but intensity 32
    ((8, 7, 7, 512), 512, 512, False),
])
def test_rule_runs_winograd_backward_filter_only_where_calibration_found_it_faster(
        shape, in_channels, out_channels, chosen):
    """Backward-filter: from MIN_SAVED_BACKWARD_FILTER up where its sums read few enough
    values per multiply-add, and only where the calibration probe found Winograd faster
    than the tiles; forward's choice stays as it was."""
    g = conv_geometry(shape, (3, 3, in_channels, out_channels), (1, 1), (1, 1), "SAME")
    probe = conv_geometry(*winograd.BACKWARD_FILTER_PROBE, (1, 1), (1, 1), "SAME")
    assert winograd.default("backward_filter", probe, 4, this_machine(), True) is not None
    assert (winograd.MIN_SAVED_BACKWARD_FILTER, winograd.MIN_SUMS_INTENSITY) == (250, 40)
    machine = this_machine()
    faster = {"winograd_backward_filter": {"winograd_over_tiles": 0.6, "pays": True}}
    slower = {"winograd_backward_filter": {"winograd_over_tiles": 0.9, "pays": False}}
    found = rule("backward_filter", g, 4, machine, faster)
    assert (found.algorithm == "winograd") == chosen
    assert CPU.illegal_reason("backward_filter", g, found, 4) is None
    for calibration in (slower, {"fma": {}}, None):
        assert rule("backward_filter", g, 4, machine, calibration).algorithm != "winograd"
    assert (rule("forward", g, 4, machine, faster).algorithm
            == rule("forward", g, 4, machine, slower).algorithm)


def test_rule_keeps_small_images_and_strided_layers_off_winograd():
    machine = this_machine()
    small = conv_geometry((1, 7, 7, 512), (3, 3, 512, 512), (1, 1), (1, 1), "SAME")
    strided = conv_geometry((1, 56, 56, 64), (3, 3, 64, 64), (2, 2), (1, 1), "SAME")
    few_channels = conv_geometry((1, 64, 64, 3), (3, 3, 3, 64), (1, 1), (1, 1), "SAME")
    for g in (small, strided, few_channels):
        for primitive in PRIMITIVES:
            assert rule(primitive, g, 4, machine).algorithm != "winograd"


def test_inputs_are_not_written(rng):
    p = problem(rng, (1, 9, 10, 8), "SAME", 8, np.float32)
    g = geometry((1, 9, 10, 8), "SAME", 8)
    copies = (p.x.copy(), p.w.copy(), p.dy.copy())
    for primitive in PRIMITIVES:
        run(primitive, p, g, WinogradSchedule(register_tile=TILE[primitive]))
    for before, after in zip(copies, (p.x, p.w, p.dy)):
        np.testing.assert_array_equal(before, after)
