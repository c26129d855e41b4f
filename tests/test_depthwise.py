"""``depthwise_conv2d`` and its two gradients, against the float64 reference; with
dilations the true gradients of the dilated op (TensorFlow's CPU kernels ignore them)."""

import numpy as np
import pytest
from conftest import assert_matches, random
from test_ops import Problem, padding_arg, shape_in, to_format

import numbaconv as nc
import reference as ref
from numbaconv.cpu import depthwise, direct
from numbaconv.cpu.families import CPU
from numbaconv.cpu.rule import rule
from numbaconv.geometry import conv_geometry
from numbaconv.machine import this_machine
from numbaconv.tune.space import load_space
from test_machine import MACHINES

OPS = ["depthwise_conv2d", "depthwise_conv2d_backprop_input", "depthwise_conv2d_backprop_filter"]


class DepthwiseProblem(Problem):
    """Random x, w [R, S, C, M], dy of one depthwise geometry and the reference results."""

    @staticmethod
    def output_channels(filter_shape) -> int:
        return filter_shape[2] * filter_shape[3]

    def expected(self, op):
        if op == "depthwise_conv2d":
            return ref.depthwise_conv2d(self.x, self.w, *self.args)
        if op == "depthwise_conv2d_backprop_input":
            return ref.depthwise_conv2d_backprop_input(self.x.shape, self.w, self.dy, *self.args)
        return ref.depthwise_conv2d_backprop_filter(self.x, self.w.shape, self.dy, *self.args)


def run_op(op, p, strides, padding, data_format, dilations):
    """As a TF2 user writes it: strides of 4 entries in data_format order."""
    x, dy = to_format(p.x, data_format), to_format(p.dy, data_format)
    sh, sw = strides
    strides4 = [1, sh, sw, 1] if data_format == "NHWC" else [1, 1, sh, sw]
    options = dict(strides=strides4, padding=padding_arg(padding, data_format),
                   data_format=data_format, dilations=list(dilations))
    if op == "depthwise_conv2d":
        result = nc.depthwise_conv2d(x, p.w, **options)
    elif op == "depthwise_conv2d_backprop_input":
        result = nc.depthwise_conv2d_backprop_input(shape_in(p.x.shape, data_format), p.w, dy,
                                                    **options)
    else:
        return nc.depthwise_conv2d_backprop_filter(x, p.w.shape, dy, **options)
    return result if data_format == "NHWC" else result.transpose(0, 2, 3, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("multiplier", [1, 3], ids=lambda m: f"M{m}")
@pytest.mark.parametrize("strides, dilations", [((1, 1), (1, 1)), ((2, 2), (1, 1)),
                                                ((2, 1), (1, 1)), ((1, 1), (2, 2)),
                                                ((2, 3), (2, 1))],
                         ids=["s1", "s2", "s2x1", "d2", "s2x3_d2x1"])
@pytest.mark.parametrize("padding", ["SAME", "VALID", "EXPLICIT"])
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("op", OPS)
def test_depthwise_op_matches_reference(rng, op, data_format, padding, strides, dilations,
                                        multiplier, dtype):
    """Unequal strides and strides with dilations too: TensorFlow refuses both."""
    p = DepthwiseProblem(rng, (2, 9, 8, 5), (3, 2, 5, multiplier), strides, dilations, padding,
                         dtype)
    assert_matches(run_op(op, p, strides, padding, data_format, dilations), p.expected(op),
                   dtype)


EDGES = {
    "kernel_larger_than_input_same": ((2, 3, 2, 4), (5, 4, 4, 2), (1, 1), (1, 1), "SAME"),
    "stride_larger_than_kernel": ((1, 11, 10, 3), (2, 2, 3, 1), (4, 3), (1, 1), "VALID"),
    "one_channel": ((2, 6, 7, 1), (3, 3, 1, 4), (1, 1), (1, 1), "SAME"),
    "batch_1_odd": ((1, 7, 5, 35), (3, 3, 35, 1), (2, 2), (1, 1), "SAME"),
    "mobilenet_like": ((1, 14, 14, 96), (3, 3, 96, 1), (2, 2), (1, 1), "SAME"),
    "wide_filter": ((1, 9, 9, 16), (5, 5, 16, 1), (1, 1), (1, 1), "SAME"),
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("case", EDGES.values(), ids=EDGES.keys())
def test_depthwise_edge_shapes(rng, case, op):
    input_shape, filter_shape, strides, dilations, padding = case
    p = DepthwiseProblem(rng, input_shape, filter_shape, strides, dilations, padding, np.float32)
    assert_matches(run_op(op, p, strides, padding, "NHWC", dilations), p.expected(op),
                   np.float32)


def test_depthwise_is_grouped_convolution_with_one_channel_per_group(rng):
    x = random(rng, (2, 8, 7, 6), np.float64)
    w = random(rng, (3, 3, 6, 2), np.float64)
    grouped_filter = w.reshape(3, 3, 1, 12)
    y = nc.depthwise_conv2d(x, w, [1, 2, 2, 1], "SAME")
    np.testing.assert_allclose(y, nc.conv2d(x, grouped_filter, 2, "SAME"), rtol=1e-12, atol=1e-12)
    dy = random(rng, y.shape, np.float64)
    np.testing.assert_allclose(nc.depthwise_conv2d_backprop_input(x.shape, w, dy, 2, "SAME"),
                               nc.conv2d_backprop_input(x.shape, grouped_filter, dy, 2, "SAME"),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        nc.depthwise_conv2d_backprop_filter(x, w.shape, dy, 2, "SAME"),
        nc.conv2d_backprop_filter(x, grouped_filter.shape, dy, 2, "SAME").reshape(w.shape),
        rtol=1e-12, atol=1e-12)


def test_dilated_gradients_are_the_adjoints_of_the_dilated_op(rng):
    """<depthwise_conv2d(x, w), dy> = <x, dx> = <w, dw> with dilation 2: the true gradient
    (TensorFlow's CPU backprops would give the undilated one)."""
    x = random(rng, (1, 9, 9, 4), np.float64)
    w = random(rng, (3, 3, 4, 2), np.float64)
    y = nc.depthwise_conv2d(x, w, [1, 1, 1, 1], "SAME", dilations=[2, 2])
    dy = random(rng, y.shape, np.float64)
    dx = nc.depthwise_conv2d_backprop_input(x.shape, w, dy, 1, "SAME", dilations=[2, 2])
    dw = nc.depthwise_conv2d_backprop_filter(x, w.shape, dy, 1, "SAME", dilations=[2, 2])
    inner = float((y * dy).sum())
    assert abs(float((x * dx).sum()) - inner) < 1e-9 * abs(inner)
    assert abs(float((w * dw).sum()) - inner) < 1e-9 * abs(inner)
    undilated = nc.depthwise_conv2d_backprop_input(x.shape, w, dy, 1, "SAME")
    assert not np.allclose(dx, undilated)


@pytest.mark.parametrize("multiplier, stride", [(2, 2), (1, 1), (1, 2)],
                         ids=["M2_s2", "M1_s1", "M1_s2"])
@pytest.mark.parametrize("primitive", ["forward", "backward_data", "backward_filter"])
def test_every_offered_schedule_computes_the_same(rng, primitive, multiplier, stride):
    x = random(rng, (2, 9, 10, 24), np.float32)
    w = random(rng, (3, 3, 24, multiplier), np.float32)
    dy = random(rng, nc.depthwise_conv2d(x, w, stride, "SAME").shape, np.float32)
    call = {"forward": lambda: nc.call_for("depthwise_conv2d", x, w, stride, "SAME"),
            "backward_data": lambda: nc.call_for("depthwise_conv2d_backprop_input", x.shape, w,
                                                 dy, stride, "SAME"),
            "backward_filter": lambda: nc.call_for("depthwise_conv2d_backprop_filter", x,
                                                   w.shape, dy, stride, "SAME")}[primitive]()
    schedules = CPU.candidates(primitive, call.geometry, 4, load_space()["cpu"], this_machine())
    assert {s.algorithm for s in schedules} == {"direct", "depthwise"}
    orders = {s.loop_order for s in schedules if s.algorithm == "depthwise"}
    flat = multiplier == 1 and (stride == 1 or primitive == "backward_filter")
    assert ("flat_rows" in orders) == flat
    assert call.choice().schedule.algorithm == "depthwise"
    expected = call.run(direct.default(primitive, call.geometry))
    split = [depthwise.DepthwiseSchedule(order, channel_block=16, reduction_splits=3)
             for order in orders]
    for schedule in schedules + split:
        assert CPU.illegal_reason(primitive, call.geometry, schedule, 4) is None
        np.testing.assert_allclose(call.run(schedule), expected, rtol=2e-5, atol=2e-5)


def test_depthwise_nan_and_inf_stay_in_their_channel():
    x = np.ones((1, 5, 5, 3))
    x[0, 2, 2, 0] = np.nan
    x[0, 0, 0, 2] = -np.inf
    y = nc.depthwise_conv2d(x, np.ones((3, 3, 3, 2)), [1, 1, 1, 1], "SAME")
    assert np.isnan(y[0, 1:4, 1:4, 0:2]).all() and np.isfinite(y[0, 0, 0, 0:2]).all()
    assert np.isneginf(y[0, 0, 0, 4:6]).all() and np.isfinite(y[0, 4, 4, 4:6]).all()
    assert np.isfinite(y[0, :, :, 2:4]).all()


def test_data_format_none_is_nhwc_and_rate_is_dilations(rng):
    x = random(rng, (1, 7, 7, 3), np.float32)
    w = random(rng, (3, 3, 3, 1), np.float32)
    np.testing.assert_array_equal(nc.depthwise_conv2d(x, w, [1, 1, 1, 1], "VALID"),
                                  nc.depthwise_conv2d(x, w, [1, 1, 1, 1], "VALID",
                                                      data_format="NHWC"))
    dilated = nc.depthwise_conv2d(x, w, [1, 1, 1, 1], "VALID", dilations=[2, 2])
    assert dilated.shape == (1, 3, 3, 3)
    np.testing.assert_array_equal(nc.depthwise_conv2d(x, w, [1, 1, 1, 1], "VALID", rate=[2, 2]),
                                  dilated)
    with pytest.raises(TypeError, match=r"both dilations= and its alias rate="):
        nc.depthwise_conv2d(x, w, 1, "VALID", dilations=2, rate=2)


VECTOR_GEOMETRIES = {"s1": ((1, 1), (1, 1)), "s2x1_d1x2": ((2, 1), (1, 2)),
                     "s1x2_d2x1": ((1, 2), (2, 1))}
#: Backward-data at a stride > 1 runs one sweep per stride phase of dx, each with the taps
#: that reach it (stride 2 with dilation 2: no tap reaches every second phase).
VECTOR_CASES = {f"{op}-{name}": (op, geometry) for op in OPS
                for name, geometry in VECTOR_GEOMETRIES.items()}
VECTOR_CASES["depthwise_conv2d_backprop_input-s2_d2"] = ("depthwise_conv2d_backprop_input",
                                                          ((2, 2), (2, 2)))


@pytest.mark.parametrize("width", [1, 2, 5, 9, 12, 13, 21])
@pytest.mark.parametrize("op, geometry", VECTOR_CASES.values(), ids=VECTOR_CASES.keys())
def test_vector_tiles_write_every_column_once(rng, op, geometry, width):
    """Tiles of 4 and 8 pixels over rows narrower than a tile, exactly whole tiles, and
    whole tiles plus a rest (the last tile moved back over its neighbour); edge columns
    one pixel at a time; backward-filter's rows in chunks of 16 pixels (64 channels). (The
    tuner's 12-pixel tiles: ``test_every_offered_schedule_computes_the_same``.)"""
    strides, dilations = geometry
    p = DepthwiseProblem(rng, (2, 5, width, 64), (3, 3, 64, 1), strides, dilations, "SAME",
                         np.float32)
    x, dy = p.x, p.dy
    options = dict(strides=[1, *strides, 1], padding="SAME", dilations=list(dilations))
    arguments = {"depthwise_conv2d": (x, p.w),
                 "depthwise_conv2d_backprop_input": (x.shape, p.w, dy),
                 "depthwise_conv2d_backprop_filter": (x, p.w.shape, dy)}[op]
    call = nc.call_for(op, *arguments, **options)
    primitive = call.primitive
    if primitive != "backward_data" or strides == (1, 1):  # phases: only on larger layers
        assert call.choice().schedule.loop_order == "vector_tiles"
    for pixels in (4, 8):
        schedule = depthwise.fit(depthwise.DepthwiseSchedule("vector_tiles", tile_pixels=pixels),
                                 primitive, call.geometry, 4)
        result = call.run(schedule)
        if op == "depthwise_conv2d_backprop_filter":
            result = result.reshape(p.w.shape)
        assert_matches(result, p.expected(op), np.float32)


#: Column strides and dilations (the tap step) whose sweep kernels are compiled for them,
#: each operand column a tile reads loaded once (1 and 2), and ones that run the kernel
#: taking any (3).
COLUMN_STEPS = {"s1": ((1, 1), (1, 1)), "s1_d2": ((1, 1), (1, 2)), "s2": ((2, 2), (1, 1)),
                "s2_d2": ((1, 2), (1, 2)), "s3": ((1, 3), (1, 1)), "d3": ((1, 1), (1, 3))}


#: Filter sizes whose widths (1, 5, 7) compile sweep kernels of their own.
FILTER_SIZES = {"1x1": (1, 1), "2x5": (2, 5), "3x7": (3, 7)}


def _width_and_column_step_cases():
    """Every column step with one filter size per op, each size with two steps: each
    compiled window (column step 1 or 2) and the any-step kernel twice: a third of the
    product, whose kernels are the costliest compilation of the cold suite. The whole
    product runs with ``-m slow``."""
    cases = []
    for op in OPS[:2]:
        for i, (step, (strides, dilations)) in enumerate(COLUMN_STEPS.items()):
            for j, (size_name, size) in enumerate(FILTER_SIZES.items()):
                marks = () if (i + j) % len(FILTER_SIZES) == 0 else (pytest.mark.slow,)
                cases.append(pytest.param(op, strides, dilations, size, marks=marks,
                                          id=f"{op}-{step}-{size_name}"))
    return cases


@pytest.mark.parametrize("op, strides, dilations, filter_size", _width_and_column_step_cases())
def test_vector_tiles_of_every_filter_width_and_column_step(rng, op, strides, dilations,
                                                            filter_size):
    """A sweep kernel is compiled per filter width: tiles of 4 and 12 pixels (12 more than
    a window tile holds on AVX2: it takes fewer), rows that take tiles and rows narrower
    than them. (3×3 filters with 8-pixel tiles: the test above.)"""
    for width in (5, 30):
        p = DepthwiseProblem(rng, (1, 6, width, 32), (*filter_size, 32, 1), strides, dilations,
                             "SAME", np.float32)
        options = dict(strides=[1, *strides, 1], padding="SAME", dilations=list(dilations))
        arguments = {"depthwise_conv2d": (p.x, p.w),
                     "depthwise_conv2d_backprop_input": (p.x.shape, p.w, p.dy)}[op]
        call = nc.call_for(op, *arguments, **options)
        for pixels in (4, 12):
            schedule = depthwise.fit(depthwise.DepthwiseSchedule("vector_tiles",
                                                                 tile_pixels=pixels),
                                     call.primitive, call.geometry, 4)
            assert_matches(call.run(schedule), p.expected(op), np.float32)


@pytest.mark.parametrize("op", OPS[:2])
def test_vector_tiles_prefetching_rows_compute_the_same(rng, op, monkeypatch):
    """Operands larger than a fraction of the last-level cache have each tile prefetch the
    rows of its thread's next task: a hint, the sums unchanged (here forced on a small
    operand), unit and larger strides."""
    for strides in ((1, 1), (2, 2)):
        p = DepthwiseProblem(rng, (4, 9, 30, 32), (3, 3, 32, 1), strides, (1, 1), "SAME",
                             np.float32)
        options = dict(strides=[1, *strides, 1], padding="SAME")
        arguments = {"depthwise_conv2d": (p.x, p.w),
                     "depthwise_conv2d_backprop_input": (p.x.shape, p.w, p.dy)}[op]
        call = nc.call_for(op, *arguments, **options)
        schedule = depthwise.fit(depthwise.DepthwiseSchedule("vector_tiles"), call.primitive,
                                 call.geometry, 4)
        assert schedule.channel_block == 32  # a task's whole row: the next task is the next row
        without = call.run(schedule)
        monkeypatch.setattr(depthwise, "PREFETCH_FRACTION", 0.0)
        prefetching = call.run(schedule)
        monkeypatch.undo()
        np.testing.assert_array_equal(prefetching, without)
        assert_matches(prefetching, p.expected(op), np.float32)


@pytest.mark.parametrize("machine", [MACHINES["avx2_16_registers"],
                                     MACHINES["avx512_full_rate"]], ids=["avx2", "avx512"])
def test_the_rule_takes_vector_tiles_where_they_apply_and_fit(machine):
    def order(primitive, input_shape, filter_shape, strides=(1, 1), itemsize=4):
        g = conv_geometry(input_shape, filter_shape, strides, (1, 1), "SAME")
        return rule(primitive, g, itemsize, machine).loop_order

    for primitive in ("forward", "backward_data", "backward_filter"):
        assert order(primitive, (1, 14, 14, 96), (3, 3, 1, 96)) == "vector_tiles"
        # A channel multiplier of 2: output channel k reads input channel k // 2.
        assert order(primitive, (1, 14, 14, 48), (3, 3, 1, 96)) != "vector_tiles"
        # 35 channels: one-lane vectors, slower than the loops LLVM vectorises.
        assert order(primitive, (1, 14, 14, 35), (3, 3, 1, 35)) != "vector_tiles"
    assert order("forward", (1, 14, 14, 96), (3, 3, 1, 96), strides=(2, 2)) == "vector_tiles"
    # Backward-data at stride 2 (one sweep per stride phase) where dx is 1-16 MB.
    assert order("backward_data", (1, 56, 56, 144), (3, 3, 1, 144), strides=(2, 2)) == \
        "vector_tiles"
    assert order("backward_data", (1, 14, 14, 96), (3, 3, 1, 96), strides=(2, 2)) != "vector_tiles"
    assert order("backward_data", (8, 112, 112, 96), (3, 3, 1, 96), strides=(2, 2)) != \
        "vector_tiles"
    # Backward-filter keeps one accumulator per tap: 25 + 3 fit 32 registers, not 16.
    five = order("backward_filter", (1, 14, 14, 96), (5, 5, 1, 96))
    assert (five == "vector_tiles") == (machine.vector_registers == 32)
    assert order("backward_filter", (1, 14, 14, 96), (7, 7, 1, 96)) != "vector_tiles"
