"""The direct family: loop nests vectorised over contiguous channels, no workspace beyond
(for backward-data) one copy of the filter; legal for every geometry.

Knobs (:class:`DirectSchedule`):

- ``loop_order``: with *pixel* = an output pixel (forward, backward-data) or a reduction
  pixel (backward-filter), *tap* = a filter position (r, s) and *channel* = the reduction
  channel, ``pixel_tap_channel`` streams the filter for each pixel (good when the filter
  slice is small), ``tap_channel_pixel`` keeps one filter row hot while it sweeps the
  pixels of a row (good when it is large).
- ``channel_block``: the contiguous channels one task writes (the innermost, vectorised
  loop runs over them).
- ``in_channel_block`` (backward-filter): the input channels one task owns.
- ``reduction_splits`` (backward-filter): the N·OH rows of the reduction cut into this many
  chunks, each summed into its own partial filter, then added in a fixed order; fixed by
  the shape, never by the thread count.

Tasks: (rows × channel blocks) for forward and backward-data, (splits × input-channel
blocks × channel blocks) for backward-filter.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ... import memory
from ...family import Family, run_per_primitive
from ...geometry import ConvGeometry
from ...primitives import primitive as primitive_named
from ...schedule import Schedule
from .. import layout, partials
from ..tasks import channel_block_for, groups_for
from .backward_data import backward_data_direct
from .backward_filter import backward_filter_direct
from .forward import forward_direct

LOOP_ORDERS = ("pixel_tap_channel", "tap_channel_pixel")
#: A filter slice streamed once per pixel beyond this falls out of L2: tap-outer order.
STREAMED_FILTER_BYTES = 128 * 2**10
#: Backward-filter's output-channel block: wide rows amortise the inner loop's set-up.
FILTER_ROW_CHANNELS = 256


@dataclass(frozen=True)
class DirectSchedule(Schedule):
    """The direct family's knobs (see the module docstring)."""

    algorithm: ClassVar[str] = "direct"
    TASK_SPLIT: ClassVar[tuple] = ("channel_block", "in_channel_block", "reduction_splits")
    loop_order: str = "pixel_tap_channel"
    channel_block: int = 64
    in_channel_block: int = 64
    reduction_splits: int = 1

    def __post_init__(self):
        self._require_one_of("loop_order", LOOP_ORDERS)
        self._require_positive("channel_block", "in_channel_block", "reduction_splits")


def default(primitive: str, g: ConvGeometry, itemsize: int = 4) -> DirectSchedule:
    """A schedule for any geometry, its task split and loop order from the shape (blocks
    are cut within a group's channels)."""
    channels = primitive_named(primitive).group_channels(g)
    in_channels = g.in_channels_per_group
    if primitive == "backward_filter":
        rows = g.batch * g.out_height
        most_splits = max(1, memory.WORKSPACE_BYTES_CAP // 2 // max(_filter_bytes(g, itemsize), 1))
        # Input-channel blocks supply the tasks; reduction splits (extra memory, an extra
        # pass) only make up what is still missing.
        k_block = min(FILTER_ROW_CHANNELS, max(channels, 1))
        k_blocks = g.groups * -(-channels // k_block)
        c_block = channel_block_for(in_channels, k_blocks)
        blocks = k_blocks * -(-in_channels // c_block)
        return DirectSchedule(loop_order="tap_channel_pixel", channel_block=k_block,
                              in_channel_block=c_block,
                              reduction_splits=min(most_splits, groups_for(rows, blocks)))
    rows = g.batch * (g.out_height if primitive == "forward" else g.in_height)
    filter_slice = g.filter_height * g.filter_width * in_channels * min(channels, 64) * itemsize
    order = "tap_channel_pixel" if filter_slice > STREAMED_FILTER_BYTES else "pixel_tap_channel"
    return DirectSchedule(loop_order=order,
                          channel_block=channel_block_for(channels, rows * g.groups))


def _filter_bytes(g: ConvGeometry, itemsize: int) -> int:
    return math.prod(g.filter_shape) * itemsize


def fit(schedule: DirectSchedule, primitive: str, g: ConvGeometry, itemsize: int) -> DirectSchedule:
    return dataclasses.replace(default(primitive, g, itemsize), loop_order=schedule.loop_order)


def candidates(primitive: str, g: ConvGeometry, itemsize: int, section: dict, machine) -> list:
    base = default(primitive, g, itemsize)
    return [dataclasses.replace(base, loop_order=order) for order in section.get("loop_order", [])]


def illegal_reason(primitive: str, g: ConvGeometry, schedule: DirectSchedule,
                   itemsize: int) -> str | None:
    return None


def _splits(schedule: DirectSchedule, g: ConvGeometry) -> int:
    return min(schedule.reduction_splits, g.batch * g.out_height)


def workspace_bytes(primitive: str, g: ConvGeometry, schedule: DirectSchedule,
                    itemsize: int) -> int:
    if primitive == "backward_data":
        return _filter_bytes(g, itemsize)  # the channel-swapped filter
    if primitive == "backward_filter" and _splits(schedule, g) > 1:
        return _splits(schedule, g) * _filter_bytes(g, itemsize)  # the partial filters
    return 0


def _forward(x, w, g: ConvGeometry, schedule: DirectSchedule) -> np.ndarray:
    out = np.empty(g.output_shape, dtype=x.dtype)
    forward_direct(layout.readonly(x), layout.readonly(w), out, g.stride_h, g.stride_w,
                   g.dilation_h, g.dilation_w, g.pad_top, g.pad_left, schedule.channel_block,
                   schedule.loop_order == "tap_channel_pixel", g.groups)
    return out


def _backward_data(dy, w, g: ConvGeometry, schedule: DirectSchedule) -> np.ndarray:
    dx = np.empty(g.input_shape, dtype=dy.dtype)
    backward_data_direct(layout.readonly(dy), layout.readonly(layout.swap_channels(w)), dx,
                         g.stride_h, g.stride_w, g.dilation_h, g.dilation_w, g.pad_top,
                         g.pad_left, schedule.channel_block,
                         schedule.loop_order == "tap_channel_pixel", g.groups)
    return dx


def _backward_filter(x, dy, g: ConvGeometry, schedule: DirectSchedule) -> np.ndarray:
    found = np.empty((_splits(schedule, g),) + g.filter_shape, x.dtype)
    backward_filter_direct(layout.readonly(x), layout.readonly(dy), found, g.stride_h,
                           g.stride_w, g.dilation_h, g.dilation_w, g.pad_top, g.pad_left,
                           schedule.channel_block, schedule.in_channel_block,
                           schedule.loop_order == "tap_channel_pixel", g.groups)
    return partials.reduced(found)




#: Each run takes C-contiguous NHWC / HWIO operands, in the primitive table's order.
FAMILY = Family("direct", DirectSchedule, candidates, illegal_reason, workspace_bytes, fit,
                run_per_primitive(_forward, _backward_data, _backward_filter))
