"""Every public op against the float64 reference, over every option TensorFlow has."""

import numpy as np
import pytest
from conftest import assert_matches, random

import numbaconv as nc
import reference as ref

FORMATS = ["NHWC", "NCHW"]
PADDINGS = ["SAME", "VALID", "EXPLICIT"]
STRIDES = [1, 2, 3]
DILATIONS = [1, 2, 3]
DTYPES = [np.float32, np.float64]
OPS = ["conv2d", "conv2d_backprop_input", "conv2d_backprop_input_v2", "conv2d_transpose",
       "conv2d_backprop_filter", "conv2d_backprop_filter_v2"]
EXPLICIT = ((1, 2), (0, 3))  # (top, bottom), (left, right)


def to_format(array, data_format):
    """NHWC -> data_format, as a C-contiguous array."""
    return np.ascontiguousarray(array.transpose(0, 3, 1, 2)) if data_format == "NCHW" else array


def shape_in(shape, data_format):
    n, h, w, c = shape
    return (n, c, h, w) if data_format == "NCHW" else (n, h, w, c)


def padding_arg(padding, data_format):
    if padding != "EXPLICIT":
        return padding
    (t, b), (l, r) = EXPLICIT
    return ([[0, 0], [t, b], [l, r], [0, 0]] if data_format == "NHWC"
            else [[0, 0], [0, 0], [t, b], [l, r]])


class Problem:
    """Random x, w, dy for one geometry, with the reference results (NHWC / HWIO)."""

    def __init__(self, rng, input_shape, filter_shape, strides, dilations, padding, dtype):
        self.dtype = dtype
        self.x = random(rng, input_shape, dtype)
        self.w = random(rng, filter_shape, dtype)
        pads = ref.pads_for(EXPLICIT if padding == "EXPLICIT" else padding, input_shape[1:3],
                            filter_shape[:2], strides, dilations)
        self.args = (strides, dilations, pads)
        oh, ow = ref.output_hw(input_shape[1:3], filter_shape[:2], strides, dilations, pads)
        self.dy = random(rng, (input_shape[0], oh, ow, self.output_channels(filter_shape)),
                         dtype)

    @staticmethod
    def output_channels(filter_shape) -> int:
        return filter_shape[3]

    def expected(self, primitive):
        if primitive == "forward":
            return ref.conv2d(self.x, self.w, *self.args)
        if primitive == "backward_data":
            return ref.conv2d_backprop_input(self.x.shape, self.w, self.dy, *self.args)
        return ref.conv2d_backprop_filter(self.x, self.w.shape, self.dy, *self.args)


def call_op(op, p, strides, padding, data_format, dilations, **extra):
    """Run ``op`` on problem ``p`` the way a TensorFlow user would write it (``extra``:
    more keywords, e.g. ``device``)."""
    x, dy = to_format(p.x, data_format), to_format(p.dy, data_format)
    options = dict(strides=strides, padding=padding, data_format=data_format,
                   dilations=dilations, **extra)
    x_shape = shape_in(p.x.shape, data_format)
    if op == "conv2d":
        return "forward", nc.conv2d(x, p.w, **options)
    if op == "conv2d_backprop_input":
        return "backward_data", nc.conv2d_backprop_input(x_shape, p.w, dy, **options)
    if op == "conv2d_backprop_input_v2":
        return "backward_data", nc.conv2d_backprop_input_v2(x, p.w, dy, **options)
    if op == "conv2d_transpose":
        return "backward_data", nc.conv2d_transpose(dy, p.w, x_shape, **options)
    if op == "conv2d_backprop_filter":
        return "backward_filter", nc.conv2d_backprop_filter(x, p.w.shape, dy, **options)
    return "backward_filter", nc.conv2d_backprop_filter_v2(x, p.w, dy, **options)


def expected_in_format(p, primitive, data_format):
    expected = p.expected(primitive)
    return expected if primitive == "backward_filter" else to_format(expected, data_format)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("dilation", DILATIONS, ids=lambda d: f"dil{d}")
@pytest.mark.parametrize("stride", STRIDES, ids=lambda s: f"stride{s}")
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("op", OPS)
def test_op_matches_reference(rng, op, data_format, padding, stride, dilation, dtype):
    p = Problem(rng, (2, 9, 8, 3), (3, 2, 3, 4), (stride, stride), (dilation, dilation),
                padding, dtype)
    primitive, actual = call_op(op, p, stride, padding_arg(padding, data_format), data_format,
                                dilation)
    assert_matches(actual, expected_in_format(p, primitive, data_format), dtype)


# Shapes that exercise edges: (input NHWC, filter HWIO, strides, dilations, padding).
EDGE_CASES = {
    "kernel_larger_than_input_same": ((2, 3, 2, 3), (5, 4, 3, 2), (1, 1), (1, 1), "SAME"),
    "dilated_kernel_larger_than_input_same": ((1, 4, 4, 2), (3, 3, 2, 2), (2, 1), (3, 3), "SAME"),
    "stride_larger_than_kernel": ((1, 11, 10, 2), (2, 2, 2, 3), (4, 3), (1, 1), "VALID"),
    "stride_larger_than_kernel_same": ((2, 10, 11, 2), (1, 2, 2, 3), (5, 4), (1, 1), "SAME"),
    "stride_and_dilation": ((1, 13, 12, 3), (3, 3, 3, 2), (2, 3), (2, 2), "SAME"),
    "asymmetric_strides_dilations": ((2, 9, 12, 2), (2, 3, 2, 5), (1, 3), (3, 1), "VALID"),
    "odd_sizes": ((3, 7, 5, 5), (3, 3, 5, 7), (2, 2), (1, 1), "SAME"),
    "one_by_one": ((2, 5, 6, 9), (1, 1, 9, 11), (1, 1), (1, 1), "VALID"),
    "one_by_one_strided": ((2, 7, 6, 9), (1, 1, 9, 4), (2, 2), (1, 1), "SAME"),
    "batch_1_channel_1": ((1, 6, 7, 1), (3, 3, 1, 1), (1, 1), (1, 1), "SAME"),
    "one_output_channel": ((2, 6, 5, 4), (2, 2, 4, 1), (1, 2), (1, 1), "VALID"),
    "filter_equals_input": ((2, 4, 5, 3), (4, 5, 3, 2), (1, 1), (1, 1), "VALID"),
    "wide_channels": ((1, 4, 4, 70), (3, 3, 70, 67), (1, 1), (1, 1), "SAME"),
    "tall_thin": ((1, 17, 1, 2), (3, 1, 2, 3), (2, 1), (1, 1), "SAME"),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("data_format", FORMATS)
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("case", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_edge_shapes(rng, case, op, data_format, dtype):
    input_shape, filter_shape, strides, dilations, padding = case
    p = Problem(rng, input_shape, filter_shape, strides, dilations, padding, dtype)
    primitive, actual = call_op(op, p, list(strides), padding, data_format, list(dilations))
    assert_matches(actual, expected_in_format(p, primitive, data_format), dtype)


@pytest.mark.parametrize("op", OPS)
def test_float32_accuracy_at_realistic_reduction_length(rng, op):
    """3×3×512 reductions (forward and backward-data) and N·OH·OW = 2·14·14 (backward-filter)."""
    p = Problem(rng, (2, 14, 14, 512), (3, 3, 512, 16), (1, 1), (1, 1), "SAME", np.float32)
    p.dy = random(rng, (2, 14, 14, 512), np.float32)
    p.w = random(rng, (3, 3, 512, 512), np.float32)
    primitive, actual = call_op(op, p, 1, "SAME", "NHWC", 1)
    assert_matches(actual, p.expected(primitive), np.float32)


@pytest.mark.parametrize("strides, padding", [(1, "SAME"), (2, "VALID"), ([1, 1, 1, 1], "SAME"),
                                              ([1, 2, 3, 1], "SAME")])
def test_strides_forms_are_equivalent(rng, strides, padding):
    """An int, a list of 1, 2 or 4 all mean the same strides."""
    x = random(rng, (1, 8, 9, 2))
    w = random(rng, (3, 3, 2, 2))
    forms = [strides] if isinstance(strides, list) else [strides, [strides], [strides, strides],
                                                          [1, strides, strides, 1]]
    results = [nc.conv2d(x, w, s, padding) for s in forms]
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


def test_zero_batch_gives_empty_results():
    x = np.ones((0, 5, 5, 3))
    w = np.ones((3, 3, 3, 4))
    dy = np.ones((0, 5, 5, 4))
    assert nc.conv2d(x, w, 1, "SAME").shape == (0, 5, 5, 4)
    assert nc.conv2d_backprop_input((0, 5, 5, 3), w, dy, 1, "SAME").shape == (0, 5, 5, 3)
    assert nc.conv2d_transpose(dy, w, (0, 5, 5, 3), 1, "SAME").shape == (0, 5, 5, 3)
    dw = nc.conv2d_backprop_filter(x, (3, 3, 3, 4), dy, 1, "SAME")
    np.testing.assert_array_equal(dw, np.zeros((3, 3, 3, 4)))


def test_two_entry_input_sizes_take_batch_and_channels_from_the_tensors(rng):
    p = Problem(rng, (2, 7, 6, 3), (3, 3, 3, 4), (2, 2), (1, 1), "SAME", np.float64)
    actual = nc.conv2d_backprop_input([7, 6], p.w, p.dy, 2, "SAME")
    assert_matches(actual, p.expected("backward_data"), np.float64)


def test_nan_and_inf_propagate():
    x = np.ones((1, 5, 5, 2))
    x[0, 2, 2, 0] = np.nan
    x[0, 0, 0, 1] = np.inf
    w = np.ones((3, 3, 2, 1))
    out = nc.conv2d(x, w, 1, "VALID")[0, :, :, 0]
    assert np.isnan(out).all()  # every window of a 5×5 VALID 3×3 covers the centre
    out = nc.conv2d(x, w, 1, "SAME")[0, :, :, 0]
    assert np.isnan(out[1:4, 1:4]).all()
    assert np.isposinf(out[0, 0])
    assert np.isfinite(out[4, 4])
