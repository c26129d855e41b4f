"""float16 and bfloat16 on every op (computed in float32, rounded once), int32 on conv2d
and the input-gradient ops (exact), and conv2d's leading batch dimensions."""

import dataclasses

import ml_dtypes
import numba
import numpy as np
import pytest
from conftest import random

import numbaconv as nc
from numbaconv import api
import reference as ref
from numbaconv.cpu import depthwise, families, half, tiled
from numbaconv.machine import this_machine

HALVES = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
X_SHAPE, W_SHAPE = (2, 9, 8, 6), (3, 3, 6, 4)
PADS = ref.pads_for("SAME", X_SHAPE[1:3], W_SHAPE[:2], (2, 2), (1, 1))
ARGS = ((2, 2), (1, 1), PADS)


def half_problem(rng, dtype):
    x, w = random(rng, X_SHAPE).astype(dtype), random(rng, W_SHAPE).astype(dtype)
    dy = random(rng, (2, 5, 4, 4)).astype(dtype)
    return x, w, dy


def ulp(value: float, dtype) -> float:
    """The spacing of ``dtype`` at ``value``."""
    eps = float(ml_dtypes.finfo(dtype).eps)
    return eps * 2.0 ** np.floor(np.log2(value))


def assert_within_two_ulp(actual, exact, dtype, op):
    """Two ulp of the output's largest value: the float32 sum rounded once to ``dtype``."""
    assert actual.dtype == np.dtype(dtype) and actual.shape == exact.shape, op
    error = np.abs(actual.astype(np.float64) - exact).max()
    assert error <= 2 * ulp(np.abs(exact).max(), dtype), f"{op}: error {error:.3g}"


def half_cases(x, w, dy):
    """op name -> (its result, the float64 reference of the same (rounded) operands)."""
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    dw_ref = ref.depthwise_conv2d_backprop_filter(x64, (3, 3, 6, 1), _depthwise_dy(dy64), *ARGS)
    depthwise_w = w[:, :, :, :1]
    return {
        "conv2d": (nc.conv2d(x, w, 2, "SAME"), ref.conv2d(x64, w64, *ARGS)),
        "conv2d_backprop_input": (nc.conv2d_backprop_input(x.shape, w, dy, 2, "SAME"),
                                  ref.conv2d_backprop_input(x.shape, w64, dy64, *ARGS)),
        "conv2d_backprop_input_v2": (nc.conv2d_backprop_input_v2(x, w, dy, 2, "SAME"),
                                     ref.conv2d_backprop_input(x.shape, w64, dy64, *ARGS)),
        "conv2d_transpose": (nc.conv2d_transpose(dy, w, x.shape, 2, "SAME"),
                             ref.conv2d_backprop_input(x.shape, w64, dy64, *ARGS)),
        "conv2d_backprop_filter": (nc.conv2d_backprop_filter(x, w.shape, dy, 2, "SAME"),
                                   ref.conv2d_backprop_filter(x64, w.shape, dy64, *ARGS)),
        "conv2d_backprop_filter_v2": (nc.conv2d_backprop_filter_v2(x, w, dy, 2, "SAME"),
                                      ref.conv2d_backprop_filter(x64, w.shape, dy64, *ARGS)),
        "bias_add_grad": (nc.bias_add_grad(dy), ref.bias_add_grad(dy64, -1)),
        "depthwise_conv2d": (nc.depthwise_conv2d(x, depthwise_w, 2, "SAME"),
                             ref.depthwise_conv2d(x64, depthwise_w.astype(np.float64), *ARGS)),
        "depthwise_conv2d_backprop_input": (
            nc.depthwise_conv2d_backprop_input(x.shape, depthwise_w, _depthwise_dy(dy), 2, "SAME"),
            ref.depthwise_conv2d_backprop_input(x.shape, depthwise_w.astype(np.float64),
                                                _depthwise_dy(dy64), *ARGS)),
        "depthwise_conv2d_backprop_filter": (
            nc.depthwise_conv2d_backprop_filter(x, (3, 3, 6, 1), _depthwise_dy(dy), 2, "SAME"),
            dw_ref),
    }


def _depthwise_dy(dy):
    """A [2, 5, 4, 6] out_backprop for the 6-channel depthwise layer (multiplier 1)."""
    return np.concatenate([dy, dy[..., :2]], axis=-1)


@pytest.mark.parametrize("dtype_name", HALVES)
def test_half_precision_on_every_op_is_the_exact_result_rounded(rng, dtype_name):
    dtype = HALVES[dtype_name]
    for op, (actual, exact) in half_cases(*half_problem(rng, dtype)).items():
        assert_within_two_ulp(actual, exact, dtype, op)


def test_half_precision_nchw_and_nan(rng):
    x, w, _ = half_problem(rng, np.float16)
    x[0, 4, 4, 0] = np.nan
    y = nc.conv2d(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), w, 2, "SAME",
                  data_format="NCHW")
    assert y.dtype == np.float16 and np.isnan(y[0, :, 2, 2]).all()
    assert np.isfinite(y[1]).all()


DEPTHWISE_OPS = ("depthwise_conv2d", "depthwise_conv2d_backprop_input",
                 "depthwise_conv2d_backprop_filter")


#: On a grouped layer of 4 channels in and out per group, where vector tiles run them.
GROUPED_OPS = ("conv2d", "conv2d_backprop_input")


@pytest.mark.parametrize("op", ["depthwise_conv2d_backprop_input", "conv2d_backprop_input"])
@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_strided_backward_data_converts_half_types_in_its_phases(rng, monkeypatch, dtype_name,
                                                                  op):
    """Backward-data at stride 2 on vector tiles (one sweep per stride phase of dx, taken
    here on a small layer too): bit for bit the float32 phases on the widened operands."""
    monkeypatch.setattr(depthwise, "PHASED_BYTES", (0, 2**62))
    dtype = HALVES[dtype_name]
    w = random(rng, (3, 3, 4, 32) if op == "conv2d_backprop_input" else (3, 3, 32, 1))
    dy = (random(rng, (2, 5, 6, 32)) * 1e4).astype(dtype)
    dy[0, 2, 2, 9] = np.inf
    options = dict(strides=[1, 2, 2, 1], padding="SAME")
    call = nc.call_for(op, (2, 9, 11, 32), w.astype(dtype), dy, **options)
    assert call.choice().schedule.loop_order == "vector_tiles"
    fused = getattr(nc, op)((2, 9, 11, 32), w.astype(dtype), dy, **options)
    widened = getattr(nc, op)((2, 9, 11, 32), w.astype(dtype).astype(np.float32),
                              dy.astype(np.float32), **options)
    np.testing.assert_array_equal(fused.view(np.uint16),
                                  half.from_float32(widened, dtype).view(np.uint16))


@pytest.mark.parametrize("multiplier", [1, 2])
@pytest.mark.parametrize("op", ["depthwise_conv2d", "depthwise_conv2d_backprop_input"])
@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_per_pixel_loops_convert_half_types_in_their_kernels(rng, dtype_name, op, multiplier):
    """Depthwise forward and backward-data pixel by pixel (``pixel_taps``: the rule's order
    for small strided backward-data layers): every tensor read and written as its bits,
    each value widened as it is read and each sum rounded once as it is stored, bit for bit
    the float32 loops on the widened operands rounded once (NaN, Inf included)."""
    dtype = HALVES[dtype_name]
    x_shape, filter_shape = (2, 9, 11, 12), (3, 3, 12, multiplier)
    w = random(rng, filter_shape).astype(dtype)
    x = random(rng, x_shape).astype(dtype)
    dy = (random(rng, (2, 5, 6, 12 * multiplier)) * 1e4).astype(dtype)
    x[0, 3, 4, 5], dy[0, 2, 2, 9], dy[1, 4, 5, 0] = np.nan, np.inf, -np.inf
    w[1, 2, 7, 0] = np.inf
    arguments = {"depthwise_conv2d": lambda x, w, dy: (x, w),
                 "depthwise_conv2d_backprop_input": lambda x, w, dy: (x_shape, w, dy)}[op]
    options = dict(strides=[1, 2, 2, 1], padding="SAME")
    call = nc.call_for(op, *arguments(x, w, dy), **options)
    schedule = dataclasses.replace(call.choice().schedule, loop_order="pixel_taps")
    if op == "depthwise_conv2d_backprop_input" and multiplier == 1:
        assert call.choice().schedule == schedule  # the rule's own choice here
    converts = dtype_name == "bfloat16" or half.hardware_float16()
    assert set(families.CPU.half_storage(call.primitive, call.geometry, schedule, dtype_name)) \
        == ({"input", "filter", "output"} if converts else set())
    fused = call.prepare(schedule).run(call.operands)
    on_float32 = nc.call_for(op, *arguments(*(a.astype(np.float32) for a in (x, w, dy))),
                             **options)
    widened = on_float32.prepare(schedule).run(on_float32.operands)
    assert fused.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(fused.view(np.uint16),
                                  half.from_float32(widened, dtype).view(np.uint16))


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("op, group", [(op, 1) for op in DEPTHWISE_OPS]
                         + [(op, group) for op in GROUPED_OPS for group in (4, 8)])
@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_vector_tiles_convert_half_types_in_their_kernels(rng, dtype_name, op, group,
                                                          data_format):
    """Half-type activations converted in registers: read and written as they are
    (depthwise ops, and groups of up to 4 channels in and out), or only written so
    (groups of 8, whose operand is widened first): bit for bit the float32 kernels on the
    widened operands, rounded once (NaN, Inf, values beyond the type's range included)."""
    dtype = HALVES[dtype_name]
    x = random(rng, (2, 7, 13, 32)).astype(dtype)
    w = random(rng, (3, 3, group, 32) if op in GROUPED_OPS else (3, 3, 32, 1)).astype(dtype)
    dy = (random(rng, (2, 7, 13, 32)) * 1e4).astype(dtype)
    x[0, 3, 4, 5], x[1, 0, 0, 7], dy[0, 2, 2, 9] = np.nan, np.inf, -np.inf
    if data_format == "NCHW":
        x, dy = (np.ascontiguousarray(a.transpose(0, 3, 1, 2)) for a in (x, dy))
    strides = [1, 1, 1, 1]
    options = dict(strides=strides, padding="SAME", data_format=data_format)
    arguments = {"depthwise_conv2d": lambda x, w, dy: (x, w),
                 "depthwise_conv2d_backprop_input": lambda x, w, dy: (x.shape, w, dy),
                 "depthwise_conv2d_backprop_filter": lambda x, w, dy: (x, w.shape, dy),
                 "conv2d": lambda x, w, dy: (x, w),
                 "conv2d_backprop_input": lambda x, w, dy: (x.shape, w, dy)}[op]
    call = nc.call_for(op, *arguments(x, w, dy), **options)
    assert call.choice().schedule.loop_order == "vector_tiles"
    converts = dtype_name == "bfloat16" or half.hardware_float16()
    as_bits = families.CPU.half_storage(call.primitive, call.geometry, call.choice().schedule,
                                        dtype_name)
    result = {"depthwise_conv2d_backprop_filter": "filter", "conv2d": "output",
              "depthwise_conv2d": "output"}.get(op, "input")
    assert set(as_bits) == (set() if not converts else {result} if group == 8
                            else {"input", "output"})
    fused = getattr(nc, op)(*arguments(x, w, dy), **options)
    widened = getattr(nc, op)(*arguments(*(a.astype(np.float32) for a in (x, w, dy))),
                              **options)
    assert fused.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(fused.view(np.uint16),
                                  half.from_float32(widened, dtype).view(np.uint16))


def test_float16_overflow_rounds_to_inf_as_a_float16_sum_would():
    x = np.full((1, 3, 3, 1), 200.0, np.float16)
    w = np.full((3, 3, 1, 1), 100.0, np.float16)   # 9 · 20000 > 65504
    assert np.isposinf(nc.conv2d(x, w, 1, "VALID")).all()


INTEGER_OPS = ["conv2d", "conv2d_backprop_input", "conv2d_backprop_input_v2",
               "conv2d_transpose"]


def integer_call(op, x, w, dy):
    return {"conv2d": lambda: nc.conv2d(x, w, 2, "SAME"),
            "conv2d_backprop_input": lambda: nc.conv2d_backprop_input(x.shape, w, dy, 2, "SAME"),
            "conv2d_backprop_input_v2": lambda: nc.conv2d_backprop_input_v2(x, w, dy, 2, "SAME"),
            "conv2d_transpose": lambda: nc.conv2d_transpose(dy, w, x.shape, 2, "SAME")}[op]()


@pytest.mark.parametrize("op", INTEGER_OPS)
def test_int32_is_exact(rng, op):
    x = rng.integers(-1000, 1000, X_SHAPE).astype(np.int32)
    w = rng.integers(-1000, 1000, W_SHAPE).astype(np.int32)
    dy = rng.integers(-1000, 1000, (2, 5, 4, 4)).astype(np.int32)
    actual = integer_call(op, x, w, dy)
    expected = (ref.conv2d(x, w, *ARGS) if op == "conv2d"
                else ref.conv2d_backprop_input(x.shape, w, dy, *ARGS))
    assert actual.dtype == np.int32
    np.testing.assert_array_equal(actual, expected.astype(np.int64))


def test_int32_sums_that_overflow_wrap_as_int32_arithmetic_does():
    x = np.full((1, 3, 3, 2), 2**20, np.int32)
    w = np.full((3, 3, 2, 1), 2**12, np.int32)       # 18 · 2**32: wraps to 0
    assert (nc.conv2d(x, w, 1, "VALID") == 0).all()
    w[0, 0, 0, 0] += 1
    assert (nc.conv2d(x, w, 1, "VALID") == 2**20).all()


def test_int32_nchw_and_explain(rng):
    x = rng.integers(-9, 9, (1, 3, 6, 6)).astype(np.int32)
    w = rng.integers(-9, 9, (3, 3, 3, 2)).astype(np.int32)
    y = nc.conv2d(x, w, 1, "SAME", data_format="NCHW")
    expected = ref.conv2d(x.transpose(0, 2, 3, 1), w, (1, 1), (1, 1), ((1, 1), (1, 1)))
    np.testing.assert_array_equal(y, expected.transpose(0, 3, 1, 2).astype(np.int64))
    assert "integer arithmetic" in str(nc.explain("conv2d", x, w, 1, "SAME", data_format="NCHW"))


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_leading_batch_dimensions_are_flattened_into_the_batch(rng, data_format):
    x = random(rng, (3, 2, 7, 6, 4), np.float32)  # batch_shape (3, 2)
    if data_format == "NCHW":
        x = np.ascontiguousarray(np.moveaxis(x, -1, -3))
    w = random(rng, (3, 3, 4, 5), np.float32)
    y = nc.conv2d(x, w, 2, "SAME", data_format=data_format)
    flat = nc.conv2d(x.reshape((6,) + x.shape[2:]), w, 2, "SAME", data_format=data_format)
    assert y.shape == (3, 2) + flat.shape[1:]
    np.testing.assert_array_equal(y.reshape(flat.shape), flat)
    deeper = nc.conv2d(x[None], w, 2, "SAME", data_format=data_format)
    assert deeper.shape == (1,) + y.shape


def test_batch_dimensions_of_a_non_contiguous_input(rng):
    x = random(rng, (2, 3, 6, 12, 4), np.float64)[:, :, :, ::2]
    w = random(rng, (3, 3, 4, 2), np.float64)
    y = nc.conv2d(x, w, 1, "VALID")
    for i in range(2):
        np.testing.assert_allclose(y[i], nc.conv2d(x[i], w, 1, "VALID"), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype_name", HALVES)
def test_widening_is_exact_for_every_half_value(dtype_name):
    from numbaconv.cpu import half

    every = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(HALVES[dtype_name])
    widened = half.to_float32(every)
    assert widened.dtype == np.float32
    # Bit for bit, but that a signaling NaN may come out quiet (the CPU's conversion).
    np.testing.assert_array_equal(np.isnan(widened), np.isnan(every.astype(np.float32)))
    quiet = np.uint32(0x00400000)
    np.testing.assert_array_equal(widened.view(np.uint32) | np.where(np.isnan(widened), quiet, 0),
                                  every.astype(np.float32).view(np.uint32)
                                  | np.where(np.isnan(widened), quiet, 0))


@pytest.mark.parametrize("dtype_name", HALVES)
def test_conversions_split_between_tasks_cover_every_element_once(rng, dtype_name):
    """The conversions cut an array into a multiple of the thread count of equal parts:
    sizes that divide unevenly, fewer elements than tasks, and none; small arrays are
    converted by the calling thread alone, up to :data:`half.SERIAL_ELEMENTS`."""
    dtype = HALVES[dtype_name]
    many = max(2 * half.CHUNK * numba.get_num_threads(), half.SERIAL_ELEMENTS) + 5
    for size in (0, 1, 3, half.CHUNK - 1, half.CHUNK + 1, half.SERIAL_ELEMENTS,
                 half.SERIAL_ELEMENTS + 1, many):
        values = rng.standard_normal(size).astype(np.float32)
        rounded = half.from_float32(values, dtype)
        np.testing.assert_array_equal(rounded.view(np.uint16), values.astype(dtype).view(np.uint16))
        np.testing.assert_array_equal(half.to_float32(rounded), rounded.astype(np.float32))


@pytest.mark.parametrize("dtype_name", HALVES)
def test_rounding_to_a_half_type_matches_numpy_and_ml_dtypes(rng, dtype_name):
    """Round to nearest even, ties, subnormals, overflow to Inf, NaN kept: bit for bit."""
    from numbaconv.cpu import half

    dtype = HALVES[dtype_name]
    edges = np.array([65504, 65519.99, 65520, 7e4, 3.4e38, np.inf, -np.inf, 1e-8, 2.98e-8,
                      2.99e-8, 5.96e-8, 6e-8, 6.1035156e-05, 6.097555e-05, -0.0, 0.0, 1.0,
                      1.0009765625, 1.00048828125, 1.00146484375, 1.00390625, 1.005859375,
                      9.2e-41], np.float32)
    values = np.concatenate([
        edges, rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
        (rng.standard_normal(100_000) * 1e3).astype(np.float32),
        (rng.standard_normal(100_000) * 1e-6).astype(np.float32)])
    ours = half.from_float32(values, dtype)
    with np.errstate(all="ignore"):
        theirs = values.astype(dtype)
    nan = np.isnan(values)
    assert np.isnan(ours[nan].astype(np.float32)).all()
    np.testing.assert_array_equal(ours[~nan].view(np.uint16), theirs[~nan].view(np.uint16))


#: Layers for the tiled family: a 3×3 layer at stride 1 (odd sizes, SAME) and at stride 2
#: (backward-data's stride phases), a 1×1 layer with no padding, and a grouped 3×3 layer
#: at stride 2 (two groups of 32 channels: backward-data swaps the filter within groups).
TILED_LAYERS = [((2, 9, 11, 32), (3, 3, 32, 64), 1), ((2, 9, 11, 32), (3, 3, 32, 64), 2),
                ((1, 6, 7, 64), (1, 1, 64, 64), 1), ((1, 9, 11, 64), (3, 3, 32, 64), 2)]


@pytest.mark.parametrize("x_shape, w_shape, stride", TILED_LAYERS)
@pytest.mark.parametrize("op", ["conv2d", "conv2d_backprop_input"])
@pytest.mark.parametrize("loop_order", ["packed_panels", "pixel_tiles_outer",
                                        "channel_tiles_outer"])
@pytest.mark.parametrize("dtype_name", HALVES)
def test_tiled_forward_and_backward_data_convert_half_types_themselves(
        rng, dtype_name, loop_order, op, x_shape, w_shape, stride):
    """Tiled forward and backward-data take a half type's bits: the input (dy) widened in
    its padded copy (bfloat16 on the 1×1 layer: widened as the kernel broadcasts it), the
    filter widened before it is packed (packed panels: each panel as the task packs it),
    the tiles' sums rounded as they are stored. Bit for bit the float32 kernels on the
    widened operands, rounded once (NaN, Inf and values beyond the type's range included),
    NHWC and NCHW."""
    if dtype_name == "float16" and not half.hardware_float16():
        pytest.skip("float16 is converted in the kernels only where the CPU has instructions")
    from numbaconv.cpu.tiled import TiledSchedule

    dtype = HALVES[dtype_name]
    x = random(rng, x_shape).astype(dtype)
    w = random(rng, w_shape).astype(dtype)
    out_shape = nc.conv2d(x, w, stride, "SAME").shape
    dy = (random(rng, out_shape) * 1e4).astype(dtype)
    x[0, 3, 4, 5], w[0, 0, 1, 7], dy[0, 2, 2, 9] = np.nan, np.inf, -np.inf
    arguments = {"conv2d": lambda x, w, dy: (x, w),
                 "conv2d_backprop_input": lambda x, w, dy: (x.shape, w, dy)}[op]
    for data_format in ("NHWC", "NCHW"):
        operands = (x, w, dy) if data_format == "NHWC" else (
            np.ascontiguousarray(x.transpose(0, 3, 1, 2)), w,
            np.ascontiguousarray(dy.transpose(0, 3, 1, 2)))
        options = dict(strides=stride, padding="SAME", data_format=data_format)
        call = nc.call_for(op, *arguments(*operands), **options)
        schedule = families.CPU.fit(TiledSchedule(loop_order=loop_order, register_tile=(4, 32)),
                                    call.primitive, call.geometry, 4)
        assert families.CPU.half_storage(call.primitive, call.geometry, schedule,
                                         dtype_name) == ("input", "filter", "output")
        # bfloat16 on the 1×1 layer (few channel tiles): the input's bits broadcast as they
        # are, else a widened copy.
        result_channels = w_shape[3] if op == "conv2d" else w_shape[2]
        assert tiled.broadcasts_half_input(call.geometry, schedule, result_channels,
                                           dtype_name) == (dtype_name == "bfloat16"
                                                           and w_shape[:2] == (1, 1))
        widened = nc.call_for(op, *arguments(*(a.astype(np.float32) for a in operands)),
                              **options).run(schedule)
        fused = call.run(schedule)
        assert fused.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(fused.view(np.uint16),
                                      half.from_float32(widened, dtype).view(np.uint16))


@pytest.mark.parametrize("x_shape, w_shape, stride", TILED_LAYERS)
@pytest.mark.parametrize("dtype_name", HALVES)
def test_tiled_backward_filter_widens_half_types_in_its_own_copies(rng, dtype_name, x_shape,
                                                                   w_shape, stride):
    """Tiled backward-filter takes x and dy as a half type's bits: widened as its kernel
    packs them (packed panels; pixel tiles outer where that pays, as on the 1×1 layer
    here in bfloat16), else into copies first (x in its padded copy). Bit for bit the
    float32 kernel on the widened operands, rounded once."""
    if dtype_name == "float16" and not half.hardware_float16():
        pytest.skip("float16 is converted in the kernels only where the CPU has instructions")
    dtype = HALVES[dtype_name]
    x = random(rng, x_shape).astype(dtype)
    out_shape = nc.conv2d(x, random(rng, w_shape).astype(dtype), stride, "SAME").shape
    dy = (random(rng, out_shape) * 1e4).astype(dtype)
    x[0, 3, 4, 5], dy[0, 2, 2, 9] = np.nan, -np.inf
    call = nc.call_for("conv2d_backprop_filter", x, w_shape, dy, strides=stride, padding="SAME")
    assert call.choice().schedule.algorithm == "tiled"
    widened_call = nc.call_for("conv2d_backprop_filter", x.astype(np.float32), w_shape,
                               dy.astype(np.float32), strides=stride, padding="SAME")
    from numbaconv.cpu.tiled import TiledSchedule

    for order in ("pixel_tiles_outer", "packed_panels", "channel_tiles_outer"):
        schedule = families.CPU.fit(TiledSchedule(loop_order=order, register_tile=(4, 16)),
                                    call.primitive, call.geometry, 4)
        assert families.CPU.half_storage(call.primitive, call.geometry, schedule,
                                         dtype_name) == ("input", "output")
        if order == "pixel_tiles_outer":  # both of its ways are taken
            tasks = tiled._filter_tasks(call.geometry, schedule, 4)
            # bfloat16 bits packed on the 1×1 layer where each x value feeds enough vectors
            # (64 output channels: 8 vectors of AVX2's 8 lanes, 4 of AVX-512's 16).
            reuse = w_shape[3] // min(16, this_machine().lanes(4))
            assert tiled.backward_filter_packs_half_bits(
                call.geometry, schedule, tasks, 4, dtype_name) == (
                w_shape[:2] == (1, 1) and dtype_name == "bfloat16"
                and reuse >= tiled.MIN_PACKED_X_REUSE)
        expected = half.from_float32(widened_call.run(schedule), dtype)
        np.testing.assert_array_equal(call.run(schedule).view(np.uint16),
                                      expected.view(np.uint16))


@pytest.mark.parametrize("dtype_name", HALVES)
@pytest.mark.parametrize("panels_pay", [True, False])
def test_half_types_run_one_by_one_backward_filter_on_packed_panels_where_calibration_says(
        rng, monkeypatch, dtype_name, panels_pay):
    """Where float32's choice for a 1×1 backward-filter is pixel tiles outer and the
    machine's calibration found the panels faster, a half type runs packed panels of the
    same tile (which widen x and dy as they pack them) from 32 output channels, and
    float32's choice below that or where calibration found the rows faster. Either way,
    the float32 result on the widened operands, rounded once."""
    if dtype_name == "float16" and not half.hardware_float16():
        pytest.skip("float16 is converted in the kernels only where the CPU has instructions")
    monkeypatch.setattr(api, "calibrated_half_panels",
                        lambda calibration, storage: panels_pay)
    dtype = HALVES[dtype_name]
    for out_channels in (tiled.HALF_PANELS_MIN_OUT_CHANNELS, 16):
        x = random(rng, (2, 7, 9, 48)).astype(dtype)
        dy = random(rng, (2, 7, 9, out_channels)).astype(dtype)
        w_shape = (1, 1, 48, out_channels)
        float32_call = nc.call_for("conv2d_backprop_filter", x.astype(np.float32), w_shape,
                                   dy.astype(np.float32), strides=1, padding="VALID")
        chosen = float32_call.choice().schedule
        assert chosen.loop_order == "pixel_tiles_outer"
        panels = families.CPU.fit(dataclasses.replace(chosen, loop_order="packed_panels"),
                                  float32_call.primitive, float32_call.geometry, 4)
        takes_panels = (panels_pay and out_channels >= tiled.HALF_PANELS_MIN_OUT_CHANNELS
                        and families.CPU.illegal_reason(float32_call.primitive,
                                                        float32_call.geometry, panels, 4) is None)
        call = nc.call_for("conv2d_backprop_filter", x, w_shape, dy, strides=1,
                           padding="VALID")
        assert call.choice().schedule == (panels if takes_panels else chosen)
        expected = half.from_float32(float32_call.run(call.choice().schedule), dtype)
        np.testing.assert_array_equal(call.run().view(np.uint16), expected.view(np.uint16))


@pytest.mark.parametrize("dtype_name", HALVES)
def test_the_widening_padded_copy_is_numpys_pad_of_the_values(rng, dtype_name):
    if dtype_name == "float16" and not half.hardware_float16():
        pytest.skip("float16 is converted in the kernels only where the CPU has instructions")
    dtype = HALVES[dtype_name]
    x = random(rng, (2, 5, 7, 3)).astype(dtype)
    x[1, 4, 6, 2], x[0, 0, 0, 0] = np.nan, -np.inf
    padded = half.padded_float32(x.view(np.uint16), dtype_name, (1, 2, 3, 0))
    expected = np.pad(x.astype(np.float32), ((0, 0), (1, 2), (3, 0), (0, 0)))
    np.testing.assert_array_equal(padded.view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("dtype_name", HALVES)
def test_vector_conversions_in_registers_match_the_array_conversions(rng, dtype_name):
    """The kernels' in-register widening (every half value) and rounding (random bits,
    NaN, Inf, ties, subnormals, overflow) give :mod:`numbaconv.cpu.half`'s bits exactly."""
    from numba import njit, uint64

    from numbaconv.cpu.simd import operations, storage_operations

    if dtype_name == "float16" and not half.hardware_float16():
        pytest.skip("float16 is converted in registers only where the CPU has instructions")
    load_bits, store_bits = storage_operations(16, dtype_name)
    load, store, _, _ = operations(16)

    @njit
    def widen(bits, out):
        for i in range(0, bits.shape[0], 16):
            store(out, uint64(i), load_bits(bits, uint64(i)))

    @njit
    def narrow(values, bits):
        for i in range(0, values.shape[0], 16):
            store_bits(bits, uint64(i), load(values, uint64(i)))

    dtype = HALVES[dtype_name]
    every = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    widened = np.empty(every.shape, np.float32)
    widen(every, widened)
    np.testing.assert_array_equal(widened.view(np.uint32),
                                  half.to_float32(every.view(dtype)).view(np.uint32))
    values = np.concatenate([
        np.array([np.nan, np.inf, -np.inf, 65520, 3.4e38, 1e-8, -0.0, 1.00048828125],
                 np.float32),
        rng.integers(0, 2**32, 2**16 - 8, dtype=np.uint64).astype(np.uint32).view(np.float32)])
    rounded = np.empty(values.shape, np.uint16)
    narrow(values, rounded)
    np.testing.assert_array_equal(rounded, half.from_float32(values, dtype).view(np.uint16))


@pytest.mark.parametrize("dtype_name", HALVES)
def test_one_value_widened_or_broadcast_in_a_kernel_matches_the_array_conversion(dtype_name):
    """Every half value, widened alone (``storage_value``) and into every lane of a vector
    (``storage_broadcast``)."""
    from numba import njit, uint64

    from numbaconv.cpu.simd import operations, storage_broadcast, storage_value

    if dtype_name == "float16" and not half.hardware_float16():
        pytest.skip("float16 is converted in the kernels only where the CPU has instructions")
    value, broadcast_bits = storage_value(dtype_name), storage_broadcast(8, dtype_name)
    store = operations(8)[1]

    @njit
    def widen(bits, out, spread):
        for i in range(bits.shape[0]):
            out[i] = value(bits[i])
            store(spread, uint64(8 * i), broadcast_bits(bits, uint64(i)))

    every = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    widened, spread = np.empty(every.shape, np.float32), np.empty(8 * every.size, np.float32)
    widen(every, widened, spread)
    expected = half.to_float32(every.view(HALVES[dtype_name])).view(np.uint32)
    np.testing.assert_array_equal(widened.view(np.uint32), expected)
    np.testing.assert_array_equal(spread.view(np.uint32).reshape(-1, 8),
                                  np.repeat(expected[:, None], 8, axis=1))
