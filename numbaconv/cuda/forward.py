"""Forward (``conv2d``) on CUDA: rows are output pixels (n, oh, ow), columns output
channels k, the reduction runs over filter taps and input channels (r, s, c), c fastest
(contiguous in NHWC, so neighbouring threads load neighbouring channels); grouped, c runs
over the group's input channels."""

from __future__ import annotations

import functools

from numba import cuda

from .tiles import (FILTER_WIDTH, GROUPS, IN_CHANNELS, OUT_HEIGHT, OUT_WIDTH,
                    activation_access, input_tap, tile_kernel, unflatten)


@functools.lru_cache(maxsize=None)
def operand_functions(channels_last: bool, dtype: str):
    _, write = activation_access(channels_last)
    tap = input_tap(channels_last, dtype)

    @cuda.jit(device=True)
    def load_input(x, geometry, row, k, group):
        group_channels = geometry[IN_CHANNELS] // geometry[GROUPS]
        n, oh, ow = unflatten(row, geometry[OUT_HEIGHT], geometry[OUT_WIDTH])
        r, s, c = unflatten(k, geometry[FILTER_WIDTH], group_channels)
        return tap(x, geometry, n, oh, ow, r, s, group * group_channels + c)

    @cuda.jit(device=True)
    def load_filter(filters, geometry, k, column):
        r, s, c = unflatten(k, geometry[FILTER_WIDTH], geometry[IN_CHANNELS] // geometry[GROUPS])
        return filters[r, s, c, column]

    @cuda.jit(device=True)
    def locate_pixel(geometry, split, row):
        return unflatten(row, geometry[OUT_HEIGHT], geometry[OUT_WIDTH])

    @cuda.jit(device=True)
    def store_output(y, place, column, value):
        write(y, place[0], place[1], place[2], column, value)

    return load_input, load_filter, locate_pixel, store_output


def kernel(schedule, dtype: str, channels_last: bool, python: bool = False):
    return tile_kernel(*operand_functions(channels_last, dtype), schedule.block_tile,
                       schedule.thread_tile, schedule.block_k, dtype, a_reduction_fastest=True,
                       b_reduction_fastest=False, python=python)
