"""The depthwise family: grouped convolutions with one input channel per group
(``depthwise_conv2d``, MobileNet's layers), as elementwise multiply-adds along the channel
axis (:mod:`.kernels`). Memory-bound: what counts is reading each row once.

Knobs (:class:`DepthwiseSchedule`):

- ``loop_order`` (forward, backward-data): ``row_taps``, each filter tap sweeps a whole
  output row, or ``pixel_taps``, each pixel sums its taps in one accumulator.
- ``channel_block``: the contiguous channels one task writes (a task split, derived).
- ``reduction_splits`` (backward-filter): the N·OH rows cut into this many chunks, each
  summed into its own partial filter, then added in a fixed order (derived).
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
from .kernels import backward_data_depthwise, backward_filter_depthwise, forward_depthwise

LOOP_ORDERS = ("row_taps", "pixel_taps")


@dataclass(frozen=True)
class DepthwiseSchedule(Schedule):
    """The depthwise family's knobs (see the module docstring)."""

    algorithm: ClassVar[str] = "depthwise"
    loop_order: str = "row_taps"
    channel_block: int = 64
    reduction_splits: int = 1

    def __post_init__(self):
        self._require_one_of("loop_order", LOOP_ORDERS)
        self._require_positive("channel_block", "reduction_splits")


def default(primitive: str, g: ConvGeometry, itemsize: int = 4) -> DepthwiseSchedule:
    """Whole rows of channels per task unless the rows are too few to fill the cores."""
    channels = primitive_named(primitive).channels(g)
    if primitive == "backward_filter":
        rows = g.batch * g.out_height
        block = channel_block_for(channels, 1, multiple=16)
        most_splits = max(1, memory.WORKSPACE_BYTES_CAP // 2 // max(_filter_bytes(g, itemsize), 1))
        splits = min(most_splits, groups_for(rows, -(-channels // block)))
        return DepthwiseSchedule(channel_block=block, reduction_splits=splits)
    rows = g.batch * (g.out_height if primitive == "forward" else g.in_height)
    return DepthwiseSchedule(channel_block=channel_block_for(channels, rows, multiple=16))


def _filter_bytes(g: ConvGeometry, itemsize: int) -> int:
    return math.prod(g.filter_shape) * itemsize


def fit(schedule: DepthwiseSchedule, primitive: str, g: ConvGeometry,
        itemsize: int) -> DepthwiseSchedule:
    return dataclasses.replace(default(primitive, g, itemsize), loop_order=schedule.loop_order)


def candidates(primitive: str, g: ConvGeometry, itemsize: int, section: dict, machine) -> list:
    base = default(primitive, g, itemsize)
    orders = section.get("loop_order", []) if primitive != "backward_filter" else LOOP_ORDERS[:1]
    return [dataclasses.replace(base, loop_order=order) for order in orders]


def illegal_reason(primitive: str, g: ConvGeometry, schedule: DepthwiseSchedule,
                   itemsize: int) -> str | None:
    if not g.is_depthwise:
        return "not depthwise: the filter has more than one input channel per group"
    return None


def _splits(schedule: DepthwiseSchedule, g: ConvGeometry) -> int:
    return max(1, min(schedule.reduction_splits, g.batch * g.out_height))


def workspace_bytes(primitive: str, g: ConvGeometry, schedule: DepthwiseSchedule,
                    itemsize: int) -> int:
    if primitive == "backward_filter" and _splits(schedule, g) > 1:
        return _splits(schedule, g) * _filter_bytes(g, itemsize)  # the partial filters
    return 0


def _taps(w: np.ndarray) -> np.ndarray:
    """The [R, S, 1, C·M] filter as [R, S, C·M] (a view)."""
    return w.reshape(w.shape[0], w.shape[1], w.shape[3])


def _geometry_arguments(g: ConvGeometry) -> tuple:
    return (g.stride_h, g.stride_w, g.dilation_h, g.dilation_w, g.pad_top, g.pad_left)


def _forward(x, w, g: ConvGeometry, schedule: DepthwiseSchedule) -> np.ndarray:
    out = np.empty(g.output_shape, dtype=x.dtype)
    forward_depthwise(layout.readonly(x), layout.readonly(_taps(w)), out,
                      *_geometry_arguments(g), schedule.channel_block,
                      schedule.loop_order == "row_taps")
    return out


def _backward_data(dy, w, g: ConvGeometry, schedule: DepthwiseSchedule) -> np.ndarray:
    dx = np.empty(g.input_shape, dtype=dy.dtype)
    backward_data_depthwise(layout.readonly(dy), layout.readonly(_taps(w)), dx,
                            *_geometry_arguments(g), schedule.channel_block,
                            schedule.loop_order == "row_taps")
    return dx


def _backward_filter(x, dy, g: ConvGeometry, schedule: DepthwiseSchedule) -> np.ndarray:
    found = np.empty((_splits(schedule, g), g.filter_height, g.filter_width, g.out_channels),
                     x.dtype)
    backward_filter_depthwise(layout.readonly(x), layout.readonly(dy), found,
                              *_geometry_arguments(g), schedule.channel_block)
    return partials.reduced(found).reshape(g.filter_shape)


#: Each run takes C-contiguous NHWC / HWIO operands, in the primitive table's order.
FAMILY = Family("depthwise", DepthwiseSchedule, candidates, illegal_reason, workspace_bytes,
                fit, run_per_primitive(_forward, _backward_data, _backward_filter))
