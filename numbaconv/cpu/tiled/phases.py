"""Launching the tiled forward kernel: a table of phases, each a convolution into a strided
part of the output, run in one launch; and backward-data as such phases.

Forward is one phase. Backward-data at stride (sh, sw) is one stride-1 convolution per
stride phase of dx: the input positions ``(ph + sh·i, pw + sw·j)`` are a correlation of
``dy`` (shifted and padded) with the taps that reach them, rotated and channel-swapped —
no zero-stuffed ``dy``, no wasted multiplies. One padded copy of ``dy``, one filter and one
launch serve every phase: a phase reads its window of the padded ``dy`` from an offset,
its taps through filter strides, and writes its pixels of dx in place
(:func:`stride_phases`, :func:`backward_data_phases`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from ...geometry import ConvGeometry
from ...machine import this_machine
from .. import layout
from ..tasks import groups_for
from .templates import PHASE_FIELDS, forward_kernel, forward_panels_kernel


@dataclass(frozen=True)
class Phase:
    """One convolution the tiled kernel runs into part of its output: the output pixels
    (n, origin + (i, j)·step) for (i, j) < ``size`` of a C-contiguous [N, H, W, K] array,
    from the padded input starting ``x_offset`` elements in, read with ``stride`` and
    ``dilation``, and the taps of ``filter``."""

    filter: layout.TiledFilter
    size: tuple
    stride: tuple = (1, 1)
    dilation: tuple = (1, 1)
    x_offset: int = 0
    origin: tuple = (0, 0)
    step: tuple = (1, 1)


def launcher(padded_shape: tuple, out_shape: tuple, phases: list, schedule, dtype: str,
             groups: int = 1, storage: str | None = None, input_bits: bool = False) -> Callable:
    """Every phase in one launch of the forward kernel, bound to everything but its arrays:
    call the result with (xp, w, out), flat (xp padded NHWC [N, Hp, Wp, C], read; w the
    filter's values as the phases' :class:`layout.TiledFilter` reads them, out [N, H, W, K]
    C-contiguous, written in place); ``schedule`` a tiled schedule; ``groups``: output
    channel k of group g reads input channels [g·C/groups, (g + 1)·C/groups); ``storage``:
    out is that half type's bits, and w too on packed panels, and xp too if ``input_bits``."""
    batch, padded_height, padded_width, x_channels = padded_shape
    _, height, width, out_channels = out_shape
    rows, cols = schedule.register_tile
    shared = phases[0].filter
    table, first_tile = [], 0
    for phase in phases:
        f = phase.filter  # taps of one filter: only its tap offsets and strides differ
        assert (_tiles_of(f) == _tiles_of(shared) and f.tile == cols
                and f.in_channels * groups == x_channels and f.out_channels == out_channels)
        fields = dict(
            first_tile=first_tile, out_height=phase.size[0], out_width=phase.size[1],
            stride_h=phase.stride[0], stride_w=phase.stride[1], dilation_h=phase.dilation[0],
            dilation_w=phase.dilation[1], filter_height=f.height, filter_width=f.width,
            w_offset=f.offset, w_row_stride=f.row_stride, w_col_stride=f.col_stride,
            x_offset=phase.x_offset,
            out_offset=(phase.origin[0] * width + phase.origin[1]) * out_channels,
            out_image_stride=height * width * out_channels,
            out_row_stride=phase.step[0] * width * out_channels,
            out_col_stride=phase.step[1] * out_channels)
        table.append([fields[name] for name in PHASE_FIELDS])
        first_tile += -(-(batch * phase.size[0] * phase.size[1]) // rows)
    return table_launcher(padded_shape, shared, table, first_tile, schedule, dtype,
                          k_groups=max(1, out_channels // schedule.channel_block),
                          groups=groups, pixels_major=pixels_major(padded_shape, phases),
                          storage=storage, input_bits=input_bits)


def pixels_major(padded_shape: tuple, phases: list) -> bool:
    """Whether the threads split the pixels (else the channel tiles) of a launch over
    ``phases``: where xp (``padded_shape``) is the larger operand, so that each thread
    reads a part of it, not all of it."""
    f = phases[0].filter
    taps = sum(phase.filter.height * phase.filter.width for phase in phases)
    return math.prod(padded_shape) >= taps * f.in_channels * f.out_channels


def _tiles_of(f: layout.TiledFilter) -> tuple:
    return (f.in_channels, f.out_channels, f.tile, f.tile_stride, f.channel_stride,
            f.lane_stride)


def table_launcher(x_grid: tuple, shared: layout.TiledFilter, table, total_tiles: int,
                   schedule, dtype: str, k_groups: int, groups: int = 1,
                   pixels_major: bool = False, storage: str | None = None,
                   input_bits: bool = False) -> Callable:
    """The forward kernel (``schedule``'s tile and loop order) over ``table`` (a row of
    :data:`PHASE_FIELDS` per phase, ``total_tiles`` pixel tiles in all), bound to everything
    but its arrays (called as :func:`launcher`'s result): ``x_grid`` = (batch, padded
    height, padded width, pixel stride) of xp, the filter read as ``shared`` by every phase
    (its tap offsets and strides the table's), tasks over ``k_groups`` channel groups.
    ``pixels_major`` (packed panels; the other loop orders always are): each thread's run
    of tasks covers a part of the pixels, not of the channel tiles, so that it reads its
    own part of xp (the part it wrote, when xp was just made in the same split), not all
    of it (:func:`pixels_major`)."""
    batch, padded_height, padded_width, x_channels = x_grid
    rows, cols = schedule.register_tile
    out_channels = shared.out_channels
    vector_bits = this_machine().vector_bits
    arguments = dict(
        phases=layout.readonly(np.asarray(table, dtype=np.int64)), batch=batch,
        padded_height=padded_height, padded_width=padded_width, x_channels=x_channels,
        in_channels=shared.in_channels, out_channels=out_channels,
        group_out_channels=out_channels // groups, w_tile_stride=shared.tile_stride,
        w_channel_stride=shared.channel_stride)
    tasks = dict(total_tiles=total_tiles, pixel_groups=groups_for(total_tiles, k_groups),
                 k_groups=k_groups)
    if schedule.loop_order == "packed_panels":
        return forward_panels_kernel(rows, cols, dtype, vector_bits, storage, input_bits).bind(
            **arguments, w_lane_stride=shared.lane_stride, **tasks, pixels_major=pixels_major)
    assert shared.lane_stride == 1
    return forward_kernel(rows, cols, dtype, vector_bits, storage, input_bits).bind(
        **arguments, **tasks, pixels_outer=schedule.loop_order == "pixel_tiles_outer")


class StridePhase(NamedTuple):
    """One stride phase of dx: its pixels (origin + step·(i, j) for (i, j) < size), the
    filter taps that reach them, and the window of dy they read: from (q_top, q_left) =
    ``start``, past dy's end by ``overhang`` rows and columns (zeros)."""

    origin: tuple
    size: tuple
    rows: list
    cols: list
    start: tuple
    overhang: tuple
    dilation: tuple


def _taps_of_phase(phase: int, pad: int, dilation: int, stride: int, taps: int):
    """Along one axis, the input positions ``phase + stride·i`` are read by the taps whose
    output position ``(phase + pad − tap·dilation) / stride`` is whole: ``oh = i + q``.
    Returns those taps sorted by increasing ``q``, the smallest ``q``, and the spacing of
    ``q`` (the dilation of the stride-1 convolution that computes this phase)."""
    taps_here = [t for t in range(taps) if (phase + pad - t * dilation) % stride == 0][::-1]
    if not taps_here:
        return [], 0, 1
    offsets = [(phase + pad - t * dilation) // stride for t in taps_here]
    spacing = offsets[1] - offsets[0] if len(offsets) > 1 else 1
    return taps_here, offsets[0], spacing


def stride_phases(g: ConvGeometry) -> tuple[list[StridePhase], list[tuple]]:
    """The stride phases of dx some tap reaches, and the parts of an NHWC dx that none
    reaches (all zero), as index tuples."""
    reached, unreached = [], []
    for ph in range(min(g.stride_h, g.in_height)):
        rows, q_top, dilation_h = _taps_of_phase(ph, g.pad_top, g.dilation_h, g.stride_h,
                                                 g.filter_height)
        height = -(-(g.in_height - ph) // g.stride_h)
        for pw in range(min(g.stride_w, g.in_width)):
            cols, q_left, dilation_w = _taps_of_phase(pw, g.pad_left, g.dilation_w, g.stride_w,
                                                      g.filter_width)
            width = -(-(g.in_width - pw) // g.stride_w)
            if not rows or not cols:
                unreached.append((slice(None), slice(ph, None, g.stride_h),
                                  slice(pw, None, g.stride_w)))
                continue
            # The phase reads dy[q_top + i + a·dilation_h] for i < height, a < len(rows)
            # (zero outside dy); likewise along the width.
            bottom = height - 1 + q_top + (len(rows) - 1) * dilation_h - (g.out_height - 1)
            right = width - 1 + q_left + (len(cols) - 1) * dilation_w - (g.out_width - 1)
            reached.append(StridePhase((ph, pw), (height, width), rows, cols, (q_top, q_left),
                                       (bottom, right), (dilation_h, dilation_w)))
    return reached, unreached


def dy_padding(phases: list[StridePhase]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding of dy that every phase's window fits in (at
    least one phase)."""
    return (max(0, *(-phase.start[0] for phase in phases)),
            max(0, *(phase.overhang[0] for phase in phases)),
            max(0, *(-phase.start[1] for phase in phases)),
            max(0, *(phase.overhang[1] for phase in phases)))


def backward_data_phases(phases: list[StridePhase], packed: layout.TiledFilter,
                         g: ConvGeometry, padding: tuple, padded_dy_shape: tuple) -> list[Phase]:
    """The kernel's phases of backward-data's stride phases, over dy padded by ``padding``
    (:func:`dy_padding`; shape ``padded_dy_shape``) and the rotated, channel-swapped filter."""
    top, _, left, _ = padding
    _, _, padded_width, channels = padded_dy_shape
    return [Phase(packed.taps(phase.rows, phase.cols), phase.size, dilation=phase.dilation,
                  origin=phase.origin, step=(g.stride_h, g.stride_w),
                  x_offset=((phase.start[0] + top) * padded_width + phase.start[1] + left)
                  * channels)
            for phase in phases]
