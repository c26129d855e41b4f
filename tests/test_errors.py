"""Bad input raises ValueError or TypeError before any kernel runs, naming the argument."""

import numpy as np
import pytest

import numbaconv as nc

X = np.ones((1, 5, 5, 2), np.float32)
W = np.ones((3, 3, 2, 4), np.float32)
DY = np.ones((1, 5, 5, 4), np.float32)      # SAME, stride 1

CASES = {
    # rank
    "input_rank": (lambda: nc.conv2d(X[0], W, 1, "SAME"), ValueError,
                   r"input must have rank 4 or more .*\(5, 5, 2\)"),
    "depthwise_filter_rank": (lambda: nc.depthwise_conv2d(X, W[0], [1, 1, 1, 1], "SAME"),
                              ValueError, r"filter must be 4-D \[filter_height, filter_width, "
                                          r"in_channels, channel_multiplier\]"),
    "depthwise_input_channels": (lambda: nc.depthwise_conv2d(np.ones((1, 5, 5, 3), np.float32),
                                                             W, [1, 1, 1, 1], "SAME"),
                                 ValueError, r"input has 3 channels but filter \(3, 3, 2, 4\) "
                                             r"expects 2"),
    "depthwise_out_backprop_channels": (
        lambda: nc.depthwise_conv2d_backprop_input((1, 5, 5, 2), W, DY, 1, "SAME"), ValueError,
        r"out_backprop has 4 channels \(in_channels · channel_multiplier\) but filter "
        r"\(3, 3, 2, 4\) expects 8"),
    "depthwise_filter_sizes_channels": (
        lambda: nc.depthwise_conv2d_backprop_filter(X, (3, 3, 3, 1), DY, 1, "SAME"), ValueError,
        r"input has 2 channels but filter_sizes \(3, 3, 3, 1\) expects 3"),
    "filters_rank": (lambda: nc.conv2d(X, W[0], 1, "SAME"), ValueError, r"filters must be 4-D"),
    "out_backprop_rank": (lambda: nc.conv2d_backprop_input((1, 5, 5, 2), W, DY[0], 1, "SAME"),
                          ValueError, r"out_backprop must be 4-D"),
    "transpose_input_rank": (lambda: nc.conv2d_transpose(DY[0], W, (1, 5, 5, 2), 1), ValueError,
                             r"input must be 4-D"),
    # channels
    "input_channels": (lambda: nc.conv2d(np.ones((1, 5, 5, 3), np.float32), W, 1, "SAME"),
                       ValueError, r"input has 3 channels but filters \(3, 3, 2, 4\) expects 2 or a "
                                   r"multiple of it"),
    "groups_not_dividing_output": (lambda: nc.conv2d(np.ones((1, 5, 5, 6), np.float32), W, 1,
                                                     "SAME"),
                                   ValueError, r"filters \(3, 3, 2, 4\) has 4 output channels, "
                                               r"not a multiple of the 3 groups"),
    "groups_filter_sizes": (lambda: nc.conv2d_backprop_filter(
        np.ones((1, 5, 5, 4), np.float32), (3, 3, 2, 3), np.ones((1, 5, 5, 3), np.float32), 1,
        "SAME"), ValueError, r"filter_sizes \(3, 3, 2, 3\) has 3 output channels"),
    "nchw_channels": (lambda: nc.conv2d(np.ones((1, 5, 5, 2), np.float32), W, 1, "SAME",
                                        data_format="NCHW"), ValueError, r"input has 5 channels"),
    "input_sizes_channels": (lambda: nc.conv2d_backprop_input((1, 5, 5, 3), W, DY, 1, "SAME"),
                             ValueError, r"input_sizes has 3 channels"),
    "out_backprop_channels": (lambda: nc.conv2d_backprop_input((1, 5, 5, 2), W, DY[..., :3], 1,
                                                               "SAME"),
                              ValueError, r"out_backprop has 3 channels"),
    "filter_sizes_channels": (lambda: nc.conv2d_backprop_filter(X, (3, 3, 3, 4), DY, 1, "SAME"),
                              ValueError, r"input has 2 channels but filter_sizes"),
    "output_shape_channels": (lambda: nc.conv2d_transpose(DY, W, (1, 5, 5, 3), 1, "SAME"),
                              ValueError, r"output_shape has 3 channels"),
    # geometry inconsistent with the tensors
    "out_backprop_shape": (lambda: nc.conv2d_backprop_input((1, 5, 5, 2), W, DY, 1, "VALID"),
                           ValueError, r"out_backprop has shape \(1, 5, 5, 4\) but the geometry "
                                       r"gives \(1, 3, 3, 4\)"),
    "out_backprop_shape_filter": (lambda: nc.conv2d_backprop_filter(X, (3, 3, 2, 4), DY, 2,
                                                                    "SAME"),
                                  ValueError, r"out_backprop has shape \(1, 5, 5, 4\) but the "
                                              r"geometry gives \(1, 3, 3, 4\)"),
    "input_sizes_inconsistent": (lambda: nc.conv2d_backprop_input((1, 9, 9, 2), W, DY, 1, "SAME"),
                                 ValueError, r"out_backprop has shape .* for input_sizes"),
    "output_shape_inconsistent": (lambda: nc.conv2d_transpose(DY, W, (1, 11, 11, 2), 2, "SAME"),
                                  ValueError, r"input has shape \(1, 5, 5, 4\) but the geometry "
                                              r"gives \(1, 6, 6, 4\) for output_shape"),
    "input_sizes_length": (lambda: nc.conv2d_backprop_input((1, 5, 5), W, DY, 1, "SAME"),
                           ValueError, r"input_sizes must have 4 or 2 entries"),
    "filter_sizes_length": (lambda: nc.conv2d_backprop_filter(X, (3, 3, 2), DY, 1, "SAME"),
                            ValueError, r"filter_sizes must have 4 entries"),
    "filter_sizes_float": (lambda: nc.conv2d_backprop_filter(X, (3.0, 3, 2, 4), DY, 1, "SAME"),
                           TypeError, r"filter_sizes must hold ints"),
    "input_sizes_negative": (lambda: nc.conv2d_backprop_input((1, -5, 5, 2), W, DY, 1, "SAME"),
                             ValueError, r"input_sizes must be non-negative"),
    "v2_filters_tensor_rank": (lambda: nc.conv2d_backprop_filter_v2(X, W[0], DY, 1, "SAME"),
                               ValueError, r"filters must be 4-D"),
    # strides and dilations
    "stride_zero": (lambda: nc.conv2d(X, W, 0, "SAME"), ValueError, r"strides must be >= 1"),
    "stride_negative_list": (lambda: nc.conv2d(X, W, [1, -1], "SAME"), ValueError, r"strides must be >= 1"),
    "stride_batch": (lambda: nc.conv2d(X, W, [2, 1, 1, 1], "SAME"), ValueError,
                     r"strides must be 1 on the batch and channel"),
    "stride_channel_nchw": (lambda: nc.conv2d(X.transpose(0, 3, 1, 2), W, [1, 2, 1, 1], "SAME",
                                              data_format="NCHW"),
                            ValueError, r"strides must be 1 on the batch and channel"),
    "stride_length_3": (lambda: nc.conv2d(X, W, [1, 1, 1], "SAME"), ValueError,
                        r"strides must be an int or a list of 1, 2 or 4 ints"),
    "stride_float": (lambda: nc.conv2d(X, W, 1.5, "SAME"), TypeError, r"strides"),
    "stride_string": (lambda: nc.conv2d(X, W, "1", "SAME"), TypeError, r"strides"),
    "stride_missing": (lambda: nc.conv2d(X, W, padding="SAME"), TypeError, r"strides"),
    "dilation_zero": (lambda: nc.conv2d(X, W, 1, "SAME", dilations=0), ValueError,
                      r"dilations must be >= 1"),
    "dilation_batch": (lambda: nc.conv2d_backprop_filter(X, W.shape, DY, 1, "SAME",
                                                         dilations=[2, 1, 1, 1]),
                       ValueError, r"dilations must be 1 on the batch and channel"),
    # padding and data_format
    "padding_unknown": (lambda: nc.conv2d(X, W, 1, "FULL"), ValueError, r"padding must be"),
    "padding_lowercase": (lambda: nc.conv2d(X, W, 1, "same"), ValueError, r"did you mean 'SAME'"),
    "padding_missing": (lambda: nc.conv2d(X, W, 1), TypeError, r"padding"),
    "padding_type": (lambda: nc.conv2d(X, W, 1, 3), TypeError, r"padding"),
    "explicit_wrong_shape": (lambda: nc.conv2d(X, W, 1, [[1, 1], [1, 1]]), ValueError,
                             r"explicit padding must be 4 \[before, after\] pairs"),
    "explicit_negative": (lambda: nc.conv2d(X, W, 1, [[0, 0], [-1, 1], [1, 1], [0, 0]]),
                          ValueError, r"explicit padding must be >= 0"),
    "explicit_on_batch": (lambda: nc.conv2d(X, W, 1, [[1, 0], [1, 1], [1, 1], [0, 0]]),
                          ValueError, r"padding must be \[0, 0\] on the batch and channel"),
    "explicit_on_channel_nchw": (lambda: nc.conv2d(X.transpose(0, 3, 1, 2), W, 1,
                                                   [[0, 0], [0, 0], [1, 1], [1, 1]][::-1],
                                                   data_format="NCHW"),
                                 ValueError, r"padding must be \[0, 0\] on the batch and channel"),
    "data_format_unknown": (lambda: nc.conv2d(X, W, 1, "SAME", data_format="NWHC"), ValueError,
                            r"data_format must be one of"),
    "data_format_type": (lambda: nc.conv2d(X, W, 1, "SAME", data_format=None), TypeError,
                         r"data_format must be a string"),
    # empty output
    "kernel_larger_than_valid_input": (lambda: nc.conv2d(X, np.ones((6, 3, 2, 4), np.float32), 1,
                                                         "VALID"),
                                       ValueError, r"output would be empty: input has spatial"),
    "dilated_kernel_larger_than_valid_input": (
        lambda: nc.conv2d(X, W, 1, "VALID", dilations=3), ValueError, r"output would be empty"),
    "backprop_filter_empty_output": (
        lambda: nc.conv2d_backprop_filter(X, (6, 6, 2, 4), DY, 1, "VALID"), ValueError,
        r"output would be empty"),
    # dtypes and types
    "integer_input": (lambda: nc.conv2d_backprop_filter(X.astype(np.int32), W.shape,
                                                        DY.astype(np.int32), 1, "SAME"), TypeError,
                      r"input must be one of float32, float64, float16, bfloat16 for "
                      r"conv2d_backprop_filter, got int32"),
    "int64_filters": (lambda: nc.conv2d(X, W.astype(np.int64), 1, "SAME"), TypeError,
                      r"filters must be one of float32, float64, float16, bfloat16, int32 for "
                      r"conv2d, got int64"),
    "integer_depthwise": (lambda: nc.depthwise_conv2d(X.astype(np.int32), W.astype(np.int32),
                                                      1, "SAME"), TypeError,
                          r"input must be one of float32, float64, float16, bfloat16 for "
                          r"depthwise_conv2d, got int32"),
    "mixed_half_dtypes": (lambda: nc.conv2d(X.astype(np.float16), W, 1, "SAME"), TypeError,
                          r"dtypes must match, got input float16, filters float32"),
    "mixed_dtypes": (lambda: nc.conv2d(X, W.astype(np.float64), 1, "SAME"), TypeError,
                     r"dtypes must match, got input float32, filters float64"),
    "mixed_dtypes_backprop": (lambda: nc.conv2d_backprop_input((1, 5, 5, 2), W, DY.astype(np.float64),
                                                               1, "SAME"),
                              TypeError, r"filters float32, out_backprop float64"),
    "mixed_dtypes_v2_tensor": (lambda: nc.conv2d_backprop_input_v2(X.astype(np.float64), W, DY, 1,
                                                                   "SAME"),
                               TypeError, r"input float64"),
    "complex_input": (lambda: nc.conv2d(X.astype(np.complex64), W, 1, "SAME"), TypeError,
                      r"input must be one of float32, .* got complex64"),
    "list_input": (lambda: nc.conv2d(X.tolist(), W, 1, "SAME"), TypeError,
                   r"input must be a NumPy array.*got list"),
    "none_filters": (lambda: nc.conv2d(X, None, 1, "SAME"), TypeError, r"filters"),
    "string_out_backprop": (lambda: nc.conv2d_backprop_filter(X, W.shape, "dy", 1, "SAME"),
                            TypeError, r"out_backprop must be a NumPy array"),
    "both_filters_and_filter": (lambda: nc.conv2d(X, W, 1, "SAME", filter=W), TypeError,
                                r"both filters= and its alias filter="),
    "both_input_and_value": (lambda: nc.conv2d_transpose(DY, W, (1, 5, 5, 2), 1, value=DY),
                             TypeError, r"both input= and its alias value="),
    "bias_rank": (lambda: nc.bias_add_grad(np.ones(4, np.float32)), ValueError,
                  r"out_backprop must have at least 2 dimensions"),
    "bias_rank_nchw": (lambda: nc.bias_add_grad(np.ones((2, 4), np.float32), "NCHW"), ValueError,
                       r"out_backprop must have at least 3 dimensions"),
    "bias_dtype": (lambda: nc.bias_add_grad(np.ones((2, 4), np.int64)), TypeError,
                   r"out_backprop must be one of float32, float64, float16, bfloat16 for "
                   r"bias_add_grad, got int64"),
    "device_unknown": (lambda: nc.conv2d(X, W, 1, "SAME", device="tpu"), ValueError, r"device"),
}


@pytest.mark.parametrize("call, error, message", CASES.values(), ids=CASES.keys())
def test_bad_input_raises_naming_the_argument(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_errors_leave_no_kernel_trace(monkeypatch):
    """Validation happens before dispatch: a bad call never reaches a kernel."""
    from numbaconv.cpu import families

    def fail(*args, **kwargs):
        raise AssertionError("kernel ran")

    monkeypatch.setattr(families, "run", fail)
    monkeypatch.setattr(families, "prepare", fail)
    with pytest.raises(ValueError):
        nc.conv2d(X, W, 1, "VALID", dilations=3)
