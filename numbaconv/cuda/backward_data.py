"""Backward-data (``conv2d_backprop_input``, ``conv2d_transpose``) on CUDA, in gather
form: rows are input pixels (n, h, w), columns input channels c, the reduction runs over
filter taps and output channels (r, s, k), k fastest. A tap whose output position falls
between strides (or outside dy) reads zero: no zero-stuffed copy of dy is made. Grouped,
input channel c reduces over its group's output channels."""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from .tiles import (DILATION_H, DILATION_W, FILTER_WIDTH, GROUPS, IN_CHANNELS, IN_HEIGHT,
                    IN_WIDTH, OUT_CHANNELS, OUT_HEIGHT, OUT_WIDTH, PAD_LEFT, PAD_TOP, STRIDE_H,
                    STRIDE_W, activation_access, tile_kernel, unflatten)


@functools.lru_cache(maxsize=None)
def operand_functions(channels_last: bool, dtype: str):
    read, write = activation_access(channels_last)
    zero = np.dtype(dtype).type(0)

    @cuda.jit(device=True)
    def load_gradient(dy, geometry, row, k, group):
        group_channels = geometry[OUT_CHANNELS] // geometry[GROUPS]
        n, h, w = unflatten(row, geometry[IN_HEIGHT], geometry[IN_WIDTH])
        r, s, kk = unflatten(k, geometry[FILTER_WIDTH], group_channels)
        # The output pixel (oh, ow) whose tap (r, s) lands on (h, w), if any.
        oh_scaled = h + geometry[PAD_TOP] - r * geometry[DILATION_H]
        ow_scaled = w + geometry[PAD_LEFT] - s * geometry[DILATION_W]
        if oh_scaled < 0 or ow_scaled < 0:
            return zero
        if oh_scaled % geometry[STRIDE_H] != 0 or ow_scaled % geometry[STRIDE_W] != 0:
            return zero
        oh = oh_scaled // geometry[STRIDE_H]
        ow = ow_scaled // geometry[STRIDE_W]
        if oh < geometry[OUT_HEIGHT] and ow < geometry[OUT_WIDTH]:
            return read(dy, n, oh, ow, group * group_channels + kk)
        return zero

    @cuda.jit(device=True)
    def load_filter(filters, geometry, k, column):
        group_channels = geometry[OUT_CHANNELS] // geometry[GROUPS]
        group_inputs = geometry[IN_CHANNELS] // geometry[GROUPS]
        r, s, kk = unflatten(k, geometry[FILTER_WIDTH], group_channels)
        group = column // group_inputs
        return filters[r, s, column - group * group_inputs, group * group_channels + kk]

    @cuda.jit(device=True)
    def locate_pixel(geometry, split, row):
        return unflatten(row, geometry[IN_HEIGHT], geometry[IN_WIDTH])

    @cuda.jit(device=True)
    def store_input_gradient(dx, place, column, value):
        write(dx, place[0], place[1], place[2], column, value)

    return load_gradient, load_filter, locate_pixel, store_input_gradient


def kernel(schedule, dtype: str, channels_last: bool, python: bool = False):
    return tile_kernel(*operand_functions(channels_last, dtype), schedule.block_tile,
                       schedule.thread_tile, schedule.block_k, dtype, a_reduction_fastest=True,
                       b_reduction_fastest=True, python=python)
