"""The depthwise family: grouped convolutions with one input channel per group
(``depthwise_conv2d``, MobileNet's layers), as elementwise multiply-adds along the channel
axis (:mod:`.kernels`). Memory-bound: what counts is reading each row once.

Knobs (:class:`DepthwiseSchedule`):

- ``loop_order``: ``flat_rows`` (channel multiplier 1 and, but for backward-filter, unit
  horizontal stride, :mod:`.rows`): each filter tap is one multiply-add over a whole
  flattened row; forward and
  backward-data also ``row_taps``, each tap sweeps an output row pixel by pixel, or
  ``pixel_taps``, each pixel sums its taps in one accumulator (:mod:`.kernels`).
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
from .rows import backward_data_rows, backward_filter_rows, forward_rows

LOOP_ORDERS = ("flat_rows", "row_taps", "pixel_taps")
#: Forward and backward-data flat rows stream three rows per tap (result, operand,
#: weights): beyond this many bytes a row they no longer share L1 and per-pixel
#: accumulators win.
FLAT_ROW_BYTES = 16 * 2**10


@dataclass(frozen=True)
class DepthwiseSchedule(Schedule):
    """The depthwise family's knobs (see the module docstring)."""

    algorithm: ClassVar[str] = "depthwise"
    loop_order: str = "flat_rows"
    channel_block: int = 64
    reduction_splits: int = 1

    def __post_init__(self):
        self._require_one_of("loop_order", LOOP_ORDERS)
        self._require_positive("channel_block", "reduction_splits")


def default(primitive: str, g: ConvGeometry, itemsize: int = 4) -> DepthwiseSchedule:
    """Flat rows where they apply, else one accumulator per pixel (forward, backward-data)
    or per tap row (backward-filter); whole rows of channels per task unless the rows are
    too few to fill the cores."""
    row_bytes = max(g.in_width, g.out_width) * g.out_channels * itemsize
    if primitive == "backward_filter":  # its flat rows accumulate in place: no size limit
        order = "flat_rows" if _flat_rows_apply(g, primitive) else "row_taps"
    else:
        order = ("flat_rows" if _flat_rows_apply(g) and row_bytes <= FLAT_ROW_BYTES
                 else "pixel_taps")
    channels = primitive_named(primitive).channels(g)
    if primitive == "backward_filter":
        rows = g.batch * g.out_height
        block = channel_block_for(channels, 1, multiple=16)
        per_split = _partial_bytes(order, g, itemsize)
        most_splits = max(1, memory.WORKSPACE_BYTES_CAP // 2 // max(per_split, 1))
        blocks = 1 if order == "flat_rows" else -(-channels // block)
        splits = min(most_splits, groups_for(rows, blocks))
        if order == "flat_rows":  # a split's buffer costs about a row: give it two or more
            splits = max(1, min(splits, rows // 2))
        return DepthwiseSchedule(order, channel_block=block, reduction_splits=splits)
    rows = g.batch * (g.out_height if primitive == "forward" else g.in_height)
    return DepthwiseSchedule(order, channel_block=channel_block_for(channels, rows, multiple=16))


def _flat_rows_apply(g: ConvGeometry, primitive: str = "forward") -> bool:
    """Channel multiplier 1, and (but for backward-filter's kernel) unit horizontal stride."""
    return g.out_channels == g.in_channels and (g.stride_w == 1 or primitive == "backward_filter")


def _partial_bytes(order: str, g: ConvGeometry, itemsize: int) -> int:
    """One split's partial filter (flat rows: also one per row position while it sums)."""
    positions = 1 + g.out_width if order == "flat_rows" else 1
    return _filter_bytes(g, itemsize) * positions


def _filter_bytes(g: ConvGeometry, itemsize: int) -> int:
    return math.prod(g.filter_shape) * itemsize


def fit(schedule: DepthwiseSchedule, primitive: str, g: ConvGeometry,
        itemsize: int) -> DepthwiseSchedule:
    return dataclasses.replace(default(primitive, g, itemsize), loop_order=schedule.loop_order)


def candidates(primitive: str, g: ConvGeometry, itemsize: int, section: dict, machine) -> list:
    base = default(primitive, g, itemsize)
    return [fit(dataclasses.replace(base, loop_order=order), primitive, g, itemsize)
            for order in section.get("loop_order", [])]


def illegal_reason(primitive: str, g: ConvGeometry, schedule: DepthwiseSchedule,
                   itemsize: int) -> str | None:
    if not g.is_depthwise:
        return "not depthwise: the filter has more than one input channel per group"
    if schedule.loop_order == "flat_rows" and not _flat_rows_apply(g, primitive):
        return ("flat_rows needs channel multiplier 1 (and, but for backward-filter, "
                "horizontal stride 1)")
    if schedule.loop_order == "pixel_taps" and primitive == "backward_filter":
        return "pixel_taps is not a backward-filter loop order"
    return None


def _splits(schedule: DepthwiseSchedule, g: ConvGeometry) -> int:
    return max(1, min(schedule.reduction_splits, g.batch * g.out_height))


def workspace_bytes(primitive: str, g: ConvGeometry, schedule: DepthwiseSchedule,
                    itemsize: int) -> int:
    flat = schedule.loop_order == "flat_rows"
    if primitive == "backward_filter":
        splits = _splits(schedule, g)
        if flat or splits > 1:
            return splits * _partial_bytes(schedule.loop_order, g, itemsize)
        return 0
    if flat:  # the weights repeated along a row
        width = g.out_width if primitive == "forward" else g.in_width
        return _filter_bytes(g, itemsize) * width
    return 0


def _taps(w: np.ndarray) -> np.ndarray:
    """The [R, S, 1, C·M] filter as [R, S, C·M] (a view)."""
    return w.reshape(w.shape[0], w.shape[1], w.shape[3])


def _geometry_arguments(g: ConvGeometry) -> tuple:
    return (g.stride_h, g.stride_w, g.dilation_h, g.dilation_w, g.pad_top, g.pad_left)


def _repeated(taps: np.ndarray, width: int) -> np.ndarray:
    """[R, S, C] -> [R, S, width·C]: each tap's weights repeated along a row."""
    r, s, c = taps.shape
    return np.ascontiguousarray(np.broadcast_to(taps[:, :, None, :], (r, s, width, c))
                                ).reshape(r, s, width * c)


def _flattened(array: np.ndarray) -> np.ndarray:
    """[N, H, W, C] -> [N, H, W·C] (a view)."""
    n, h, w, c = array.shape
    return array.reshape(n, h, w * c)


def _rows_arguments(g: ConvGeometry) -> tuple:
    return (g.in_channels, g.in_width, g.out_width, g.stride_h, g.dilation_h, g.dilation_w,
            g.pad_top, g.pad_left)


def _forward(x, w, g: ConvGeometry, schedule: DepthwiseSchedule) -> np.ndarray:
    out = np.empty(g.output_shape, dtype=x.dtype)
    if schedule.loop_order == "flat_rows":
        forward_rows(layout.readonly(_flattened(x)), _repeated(_taps(w), g.out_width),
                     _flattened(out), *_rows_arguments(g))
        return out
    forward_depthwise(layout.readonly(x), layout.readonly(_taps(w)), out,
                      *_geometry_arguments(g), schedule.channel_block,
                      schedule.loop_order == "row_taps")
    return out


def _backward_data(dy, w, g: ConvGeometry, schedule: DepthwiseSchedule) -> np.ndarray:
    dx = np.empty(g.input_shape, dtype=dy.dtype)
    if schedule.loop_order == "flat_rows":
        backward_data_rows(layout.readonly(_flattened(dy)), _repeated(_taps(w), g.in_width),
                           _flattened(dx), *_rows_arguments(g))
        return dx
    backward_data_depthwise(layout.readonly(dy), layout.readonly(_taps(w)), dx,
                            *_geometry_arguments(g), schedule.channel_block,
                            schedule.loop_order == "row_taps")
    return dx


def _backward_filter(x, dy, g: ConvGeometry, schedule: DepthwiseSchedule) -> np.ndarray:
    if schedule.loop_order == "flat_rows":
        found = np.empty((_splits(schedule, g), g.filter_height, g.filter_width,
                          g.out_channels), x.dtype)
        backward_filter_rows(layout.readonly(_flattened(x)), layout.readonly(_flattened(dy)),
                             found, g.in_channels, g.in_width, g.out_width, g.stride_h,
                             g.stride_w, g.dilation_h, g.dilation_w, g.pad_top, g.pad_left)
        return partials.reduced(found).reshape(g.filter_shape)
    found = np.empty((_splits(schedule, g), g.filter_height, g.filter_width, g.out_channels),
                     x.dtype)
    backward_filter_depthwise(layout.readonly(x), layout.readonly(dy), found,
                              *_geometry_arguments(g), schedule.channel_block)
    return partials.reduced(found).reshape(g.filter_shape)


#: Each run takes C-contiguous NHWC / HWIO operands, in the primitive table's order.
FAMILY = Family("depthwise", DepthwiseSchedule, candidates, illegal_reason, workspace_bytes,
                fit, run_per_primitive(_forward, _backward_data, _backward_filter))
