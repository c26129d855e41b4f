"""Backward-filter (``conv2d_backprop_filter``) on CUDA: rows are filter taps and input
channels (r, s, c), columns output channels k, the reduction runs over the N·OH·OW output
pixels, cut into ``split_k`` chunks. Each chunk writes its own partial filter
(``partials[split]``) and a second kernel adds them in order (``two_pass``, the default:
deterministic), or each adds into a zeroed result with atomics (``atomic``)."""

from __future__ import annotations

import functools

from numba import cuda

from .tiles import (FILTER_WIDTH, GROUPS, IN_CHANNELS, OUT_HEIGHT, OUT_WIDTH,
                    activation_access, input_tap, tile_kernel, unflatten)


@functools.lru_cache(maxsize=None)
def operand_functions(channels_last: bool, dtype: str, atomic: bool):
    read, _ = activation_access(channels_last)
    tap = input_tap(channels_last, dtype)

    @cuda.jit(device=True)
    def load_input(x, geometry, row, k, group):
        group_channels = geometry[IN_CHANNELS] // geometry[GROUPS]
        r, s, c = unflatten(row, geometry[FILTER_WIDTH], group_channels)
        n, oh, ow = unflatten(k, geometry[OUT_HEIGHT], geometry[OUT_WIDTH])
        return tap(x, geometry, n, oh, ow, r, s, group * group_channels + c)

    @cuda.jit(device=True)
    def load_gradient(dy, geometry, k, column):
        n, oh, ow = unflatten(k, geometry[OUT_HEIGHT], geometry[OUT_WIDTH])
        return read(dy, n, oh, ow, column)

    @cuda.jit(device=True)
    def locate_tap(geometry, split, row):
        return split, row, 0

    if atomic:
        @cuda.jit(device=True)
        def store_partial(partials, place, column, value):
            cuda.atomic.add(partials, (0, place[1], column), value)
    else:
        @cuda.jit(device=True)
        def store_partial(partials, place, column, value):
            partials[place[0], place[1], column] = value

    return load_input, load_gradient, locate_tap, store_partial


def kernel(schedule, dtype: str, channels_last: bool, python: bool = False):
    atomic = schedule.reduction == "atomic" and schedule.split_k > 1
    # x is contiguous along c (a row index), dy along k (a column): both load row-/column-
    # fastest, not reduction-fastest.
    return tile_kernel(*operand_functions(channels_last, dtype, atomic), schedule.block_tile,
                       schedule.thread_tile, schedule.block_k, dtype, a_reduction_fastest=False,
                       b_reduction_fastest=False, python=python)
