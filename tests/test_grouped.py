"""Grouped convolution (TensorFlow's ``filters.shape[2]`` dividing the input channels) on
``conv2d`` and every gradient, against the float64 reference."""

import numpy as np
import pytest
from conftest import assert_matches, random
from test_ops import Problem, padding_arg, shape_in, to_format

import numbaconv as nc
import reference as ref
from numbaconv.cpu import depthwise
from numbaconv.cpu.families import CPU
from numbaconv.geometry import conv_geometry, geometry_key
from numbaconv.tune.space import load_space

OPS = ["conv2d", "conv2d_backprop_input", "conv2d_backprop_input_v2", "conv2d_transpose",
       "conv2d_backprop_filter", "conv2d_backprop_filter_v2"]


class GroupedProblem(Problem):
    """Random x, w, dy of one grouped geometry and the reference results (NHWC / HWIO)."""

    def expected(self, op):
        if op == "conv2d":
            return ref.grouped_conv2d(self.x, self.w, *self.args)
        if op.startswith(("conv2d_backprop_input", "conv2d_transpose")):
            return ref.grouped_conv2d_backprop_input(self.x.shape, self.w, self.dy, *self.args)
        return ref.grouped_conv2d_backprop_filter(self.x, self.w.shape, self.dy, *self.args)


def run_op(op, p, strides, padding, data_format, dilations):
    x, dy = to_format(p.x, data_format), to_format(p.dy, data_format)
    options = dict(strides=strides, padding=padding_arg(padding, data_format),
                   data_format=data_format, dilations=dilations)
    x_shape = shape_in(p.x.shape, data_format)
    result = {
        "conv2d": lambda: nc.conv2d(x, p.w, **options),
        "conv2d_backprop_input": lambda: nc.conv2d_backprop_input(x_shape, p.w, dy, **options),
        "conv2d_backprop_input_v2": lambda: nc.conv2d_backprop_input_v2(x, p.w, dy, **options),
        "conv2d_transpose": lambda: nc.conv2d_transpose(dy, p.w, x_shape, **options),
        "conv2d_backprop_filter": lambda: nc.conv2d_backprop_filter(x, p.w.shape, dy, **options),
        "conv2d_backprop_filter_v2": lambda: nc.conv2d_backprop_filter_v2(x, p.w, dy, **options),
    }[op]()
    if op.startswith("conv2d_backprop_filter"):
        return result
    return to_format(result, "NHWC") if data_format == "NHWC" else result.transpose(0, 2, 3, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("stride, dilation", [(1, 1), (2, 1), (1, 2), (3, 2)],
                         ids=["s1d1", "s2d1", "s1d2", "s3d2"])
@pytest.mark.parametrize("padding", ["SAME", "VALID", "EXPLICIT"])
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("op", OPS)
def test_grouped_op_matches_reference(rng, op, data_format, padding, stride, dilation, dtype):
    """3 groups of 2 input and 3 output channels (filter [3, 2, 2, 9] on 6 channels)."""
    p = GroupedProblem(rng, (2, 9, 8, 6), (3, 2, 2, 9), (stride, stride),
                       (dilation, dilation), padding, dtype)
    actual = run_op(op, p, stride, padding, data_format, dilation)
    assert_matches(actual, p.expected(op), dtype)


# (input NHWC, filter HWIO, strides, dilations, padding)
GROUPED_EDGES = {
    "one_channel_per_group": ((2, 7, 6, 4), (3, 3, 1, 8), (1, 1), (1, 1), "SAME"),
    "one_output_per_group": ((1, 6, 7, 8), (3, 3, 2, 4), (2, 1), (1, 1), "SAME"),
    "kernel_larger_than_input_same": ((2, 3, 2, 6), (5, 4, 3, 4), (1, 1), (1, 1), "SAME"),
    "stride_larger_than_kernel": ((1, 11, 10, 4), (2, 2, 2, 6), (4, 3), (1, 1), "VALID"),
    "odd_sizes_batch_1": ((1, 7, 5, 15), (3, 3, 5, 21), (2, 2), (1, 1), "SAME"),
    "one_by_one": ((2, 5, 6, 32), (1, 1, 8, 16), (1, 1), (1, 1), "VALID"),
    "wide_groups": ((1, 5, 5, 96), (3, 3, 48, 64), (1, 1), (1, 1), "SAME"),
    "resnext_like": ((1, 8, 8, 128), (3, 3, 4, 128), (1, 1), (1, 1), "SAME"),
}


@pytest.mark.parametrize("op", ["conv2d", "conv2d_backprop_input", "conv2d_backprop_filter"])
@pytest.mark.parametrize("case", GROUPED_EDGES.values(), ids=GROUPED_EDGES.keys())
def test_grouped_edge_shapes(rng, case, op):
    input_shape, filter_shape, strides, dilations, padding = case
    p = GroupedProblem(rng, input_shape, filter_shape, strides, dilations, padding, np.float32)
    actual = run_op(op, p, list(strides), padding, "NHWC", list(dilations))
    assert_matches(actual, p.expected(op), np.float32)


def test_grouped_is_the_dense_convolutions_of_its_groups_concatenated(rng):
    x = random(rng, (2, 8, 7, 12), np.float32)
    w = random(rng, (3, 3, 4, 6), np.float32)  # 3 groups, 2 output channels each
    y = nc.conv2d(x, w, 1, "SAME")
    dy = random(rng, y.shape, np.float32)
    dx = nc.conv2d_backprop_input(x.shape, w, dy, 1, "SAME")
    dw = nc.conv2d_backprop_filter(x, w.shape, dy, 1, "SAME")
    for group in range(3):
        xs, ks = slice(4 * group, 4 * group + 4), slice(2 * group, 2 * group + 2)
        np.testing.assert_allclose(y[..., ks], nc.conv2d(x[..., xs], w[..., ks], 1, "SAME"),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dx[..., xs], nc.conv2d_backprop_input(
            (2, 8, 7, 4), w[..., ks], dy[..., ks], 1, "SAME"), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dw[..., ks], nc.conv2d_backprop_filter(
            x[..., xs], (3, 3, 4, 2), dy[..., ks], 1, "SAME"), rtol=1e-5, atol=1e-5)


def test_non_contiguous_and_fortran_grouped_operands(rng):
    p = GroupedProblem(rng, (2, 6, 7, 6), (3, 3, 3, 4), (1, 1), (1, 1), "SAME", np.float64)
    strided = np.zeros((2, 12, 7, 6))
    strided[:, ::2] = p.x
    x = strided[:, ::2]
    assert_matches(nc.conv2d(x, np.asfortranarray(p.w), 1, "SAME"), p.expected("conv2d"),
                   np.float64)
    assert_matches(nc.conv2d_backprop_filter(x, p.w.shape, np.asfortranarray(p.dy), 1, "SAME"),
                   p.expected("conv2d_backprop_filter"), np.float64)


def test_groups_are_part_of_the_geometry_and_its_key():
    dense = conv_geometry((1, 8, 8, 16), (3, 3, 16, 32), padding="SAME")
    grouped = conv_geometry((1, 8, 8, 16), (3, 3, 4, 32), padding="SAME")
    assert (dense.groups, grouped.groups) == (1, 4)
    assert grouped.filter_shape == (3, 3, 4, 32)
    assert grouped.flops * 4 == dense.flops
    assert geometry_key(dense) == "N1-H8-W8-C16-K32-R3-S3-s1x1-d1x1-p1,1,1,1"  # as before
    assert geometry_key(grouped) == geometry_key(dense) + "-g4"


def test_only_the_families_that_take_groups_are_offered(rng):
    """Direct loops and register tiles that stay inside a group; never one matmul."""
    g = conv_geometry((1, 8, 8, 64), (3, 3, 16, 32), padding="SAME")  # 4 groups of 8 outputs
    space = load_space()["cpu"]
    from numbaconv.machine import this_machine

    for primitive in ("forward", "backward_data", "backward_filter"):
        offered = CPU.candidates(primitive, g, 4, space, this_machine())
        assert {s.algorithm for s in offered} == {"direct", "tiled"}, primitive
    explained = str(nc.explain("conv2d", np.ones((1, 8, 8, 64), np.float32),
                               np.ones((3, 3, 16, 32), np.float32), 1, "SAME"))
    assert "groups 4" in explained and "algorithm=tiled" in explained


@pytest.mark.parametrize("primitive", ["forward", "backward_data", "backward_filter"])
@pytest.mark.parametrize("filter_shape", [(3, 3, 16, 64), (3, 3, 4, 32), (1, 1, 8, 16)],
                         ids=["2_groups", "4_outputs_per_group", "1x1_4_outputs_per_group"])
def test_every_grouped_schedule_computes_the_same(rng, primitive, filter_shape):
    """Every legal candidate and the narrow tiles the rule adds for small groups."""
    from numbaconv.cpu import direct, tiled
    from numbaconv.machine import this_machine

    x_shape = (2, 9, 10, 32)
    p = GroupedProblem(rng, x_shape, filter_shape, (1, 1), (1, 1), "SAME", np.float32)
    call = {"forward": lambda: nc.call_for("conv2d", p.x, p.w, 1, "SAME"),
            "backward_data": lambda: nc.call_for("conv2d_backprop_input", x_shape, p.w, p.dy, 1,
                                                 "SAME"),
            "backward_filter": lambda: nc.call_for("conv2d_backprop_filter", p.x, filter_shape,
                                                   p.dy, 1, "SAME")}[primitive]()
    expected = p.expected({"forward": "conv2d", "backward_data": "conv2d_backprop_input",
                           "backward_filter": "conv2d_backprop_filter"}[primitive])
    machine = this_machine()
    offered = CPU.candidates(primitive, call.geometry, 4, load_space()["cpu"], machine)
    narrow = [tiled.fit(tiled.TiledSchedule(loop_order=order, register_tile=tile), primitive,
                        call.geometry, 4)
              for tile in tiled.narrow_tiles(primitive, 4, machine)[:1]
              for order in ("pixel_tiles_outer", "packed_panels")]
    legal = [s for s in offered + narrow
             if CPU.illegal_reason(primitive, call.geometry, s, 4) is None]
    assert any(s.algorithm == "tiled" for s in legal)
    chosen = call.choice().schedule
    # Groups of as many channels in as out, a few: the depthwise family's vector tiles
    # (forward, stride-1 backward-data); else register tiles within the groups.
    groups = x_shape[3] // filter_shape[2]
    vectors = filter_shape[3] // groups == filter_shape[2] and primitive != "backward_filter"
    assert chosen.algorithm == ("depthwise" if vectors else "tiled")
    assert any(s.algorithm == "depthwise" for s in legal) == vectors
    # The rule's choice, one of each other tile and loop order offered (compiling every
    # tile of the menu would cost minutes cold), the direct loops.
    tiles = {}
    for schedule in legal:
        if schedule.algorithm in ("tiled", "depthwise"):
            tiles.setdefault((schedule.algorithm, schedule.loop_order), schedule)
    for schedule in [chosen, *tiles.values(), direct.default(primitive, call.geometry)]:
        assert_matches(call.run(schedule), expected, np.float32)


def test_grouped_nan_and_inf_stay_in_their_group():
    x = np.ones((1, 5, 5, 4))
    x[0, 2, 2, 0] = np.nan   # group 0
    x[0, 0, 0, 3] = np.inf   # group 1
    y = nc.conv2d(x, np.ones((3, 3, 2, 2)), 1, "SAME")
    assert np.isnan(y[0, 1:4, 1:4, 0]).all() and np.isfinite(y[0, :, :, 1]).any()
    assert np.isposinf(y[0, 0, 0, 1]) and np.isfinite(y[0, 4, 4, 1])
    assert np.isfinite(y[0, 0, 0, 0])


NARROW_GROUPS = {"s1": ((1, 1), (1, 1)), "s2x1_d1x2": ((2, 1), (1, 2)),
                 "s1_d2": ((1, 1), (2, 2))}


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("width", [5, 13, 21])
@pytest.mark.parametrize("geometry", NARROW_GROUPS.values(), ids=NARROW_GROUPS.keys())
@pytest.mark.parametrize("group, dtype", [(2, np.float32), (4, np.float32), (8, np.float32),
                                          (4, np.float64)], ids=["g2", "g4", "g8", "g4_f64"])
@pytest.mark.parametrize("op", ["conv2d", "conv2d_backprop_input"])
def test_groups_of_a_few_channels_run_on_vector_tiles(rng, op, group, dtype, geometry, width,
                                                     data_format):
    """As many channels in as out per group (ResNeXt's 4 and 8): each group's channels
    spread over its lanes in registers; every tile and edge column against the reference
    (backward-data at strides > 1 one sweep per stride phase of dx)."""
    strides, dilations = geometry
    p = GroupedProblem(rng, (2, 6, width, 32), (3, 3, group, 32), strides, dilations, "SAME",
                       dtype)
    x_shape = shape_in(p.x.shape, data_format)
    arguments = {"conv2d": (to_format(p.x, data_format), p.w),
                 "conv2d_backprop_input": (x_shape, p.w, to_format(p.dy, data_format))}[op]
    options = dict(strides=list(strides), padding="SAME", data_format=data_format,
                   dilations=list(dilations))
    call = nc.call_for(op, *arguments, **options)
    schedule = depthwise.fit(depthwise.DepthwiseSchedule("vector_tiles"), call.primitive,
                             call.geometry, np.dtype(dtype).itemsize)
    if op == "conv2d" or strides == (1, 1):  # strided backward-data: only on larger layers
        chosen = call.choice().schedule
        assert (chosen.algorithm, chosen.loop_order) == ("depthwise", "vector_tiles")
    actual = call.run(schedule)
    if data_format == "NCHW":
        actual = actual.transpose(0, 2, 3, 1)
    assert_matches(actual, p.expected(op), dtype)
