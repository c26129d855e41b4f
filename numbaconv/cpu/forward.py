"""Forward convolution (``conv2d``) on the CPU.

``out[n, oh, ow, k] = Σ_{r,s,c} x[n, oh·sh + r·dh − pt, ow·sw + s·dw − pl, c] · w[r, s, c, k]``
"""

from dataclasses import dataclass

import numpy as np
from numba import prange

from ..geometry import ConvGeometry
from ..schedule import TARGET_TASKS, Schedule
from . import gemm, layout, tiled
from ._jit import axpy, axpy4, parallel_kernel, valid_range


@parallel_kernel
def forward_direct(x, w, out, stride_h, stride_w, dilation_h, dilation_w, pad_top,
                   pad_left, channel_block, tap_outer):
    """x [N, H, W, C], w [R, S, C, K] -> out [N, OH, OW, K] (all C-contiguous).

    One task per (n, oh, block of ``channel_block`` output channels); every element it
    owns is summed over (r, s, c) in that order, whatever the loop order.
    """
    batch, in_height, in_width, in_channels = x.shape
    filter_height, filter_width, _, out_channels = w.shape
    out_height, out_width = out.shape[1], out.shape[2]
    blocks = (out_channels + channel_block - 1) // channel_block
    for task in prange(batch * out_height * blocks):
        row = task // blocks
        k0 = (task % blocks) * channel_block
        k1 = min(k0 + channel_block, out_channels)
        n = row // out_height
        oh = row % out_height
        if tap_outer:
            out[n, oh, :, k0:k1] = 0
            for r in range(filter_height):
                ih = oh * stride_h + r * dilation_h - pad_top
                if ih < 0 or ih >= in_height:
                    continue
                for s in range(filter_width):
                    offset = s * dilation_w - pad_left
                    ow0, ow1 = valid_range(offset, stride_w, in_width, out_width)
                    c = 0
                    while c + 4 <= in_channels:
                        for ow in range(ow0, ow1):
                            x_row = x[n, ih, ow * stride_w + offset]
                            axpy4(out[n, oh, ow, k0:k1], x_row[c], w[r, s, c, k0:k1],
                                  x_row[c + 1], w[r, s, c + 1, k0:k1],
                                  x_row[c + 2], w[r, s, c + 2, k0:k1],
                                  x_row[c + 3], w[r, s, c + 3, k0:k1])
                        c += 4
                    for c in range(c, in_channels):
                        for ow in range(ow0, ow1):
                            axpy(out[n, oh, ow, k0:k1], x[n, ih, ow * stride_w + offset, c],
                                 w[r, s, c, k0:k1])
        else:
            # Row views starting at 0 (no offset index LLVM cannot prove non-negative) and
            # a reused accumulator let LLVM vectorise the k loop.
            acc = np.empty(k1 - k0, dtype=out.dtype)
            for ow in range(out_width):
                acc[:] = 0
                for r in range(filter_height):
                    ih = oh * stride_h + r * dilation_h - pad_top
                    if ih < 0 or ih >= in_height:
                        continue
                    for s in range(filter_width):
                        iw = ow * stride_w + s * dilation_w - pad_left
                        if iw < 0 or iw >= in_width:
                            continue
                        x_row = x[n, ih, iw]
                        c = 0
                        while c + 4 <= in_channels:
                            axpy4(acc, x_row[c], w[r, s, c, k0:k1], x_row[c + 1],
                                  w[r, s, c + 1, k0:k1], x_row[c + 2], w[r, s, c + 2, k0:k1],
                                  x_row[c + 3], w[r, s, c + 3, k0:k1])
                            c += 4
                        for c in range(c, in_channels):
                            axpy(acc, x_row[c], w[r, s, c, k0:k1])
                out[n, oh, ow, k0:k1] = acc

def run(x: np.ndarray, w: np.ndarray, g: ConvGeometry, schedule: Schedule) -> np.ndarray:
    """x [N, H, W, C], w [R, S, C, K] (C-contiguous, same dtype) -> [N, OH, OW, K]."""
    if schedule.algorithm == "tiled":
        xp = layout.padded(x, g.pad_top, g.pad_bottom, g.pad_left, g.pad_right)
        out = np.empty(g.output_shape, dtype=x.dtype)
        filter_ = layout.kernel_filter(w, schedule.register_tile[1],
                                       schedule.loop_order == "packed_panels")
        phase = Phase(filter_,
                      (g.out_height, g.out_width), (g.stride_h, g.stride_w),
                      (g.dilation_h, g.dilation_w))
        run_tiled(xp, out, [phase], schedule)
        return out
    if schedule.algorithm == "gemm":
        return gemm.forward(x, w, g, gemm.matmul_of(schedule))
    out = np.empty(g.output_shape, dtype=x.dtype)
    if out.size:
        forward_direct(layout.readonly(x), layout.readonly(w), out, g.stride_h, g.stride_w,
                       g.dilation_h, g.dilation_w, g.pad_top, g.pad_left, schedule.channel_block,
                       schedule.loop_order == "tap_channel_pixel")
    return out


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


def run_tiled(xp: np.ndarray, out: np.ndarray, phases: list, schedule: Schedule):
    """xp [N, Hp, Wp, C] (padded) -> ``out`` [N, H, W, K] (C-contiguous), every phase in one
    kernel launch, written in place."""
    batch, padded_height, padded_width, in_channels = xp.shape
    _, height, width, out_channels = out.shape
    rows, cols = schedule.register_tile
    shared = phases[0].filter
    table, first_tile = [], 0
    for phase in phases:
        f = phase.filter
        assert (f.data is shared.data and f.tile == cols and f.in_channels == in_channels
                and f.out_channels == out_channels)
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
        table.append([fields[name] for name in tiled.PHASE_FIELDS])
        first_tile += -(-(batch * phase.size[0] * phase.size[1]) // rows)
    k_groups = max(1, out_channels // schedule.channel_block)
    pixel_groups = max(1, min(first_tile, -(-TARGET_TASKS // k_groups)))
    arguments = (layout.readonly_flat(xp), shared.data, out.reshape(-1),
                 layout.readonly(np.array(table, dtype=np.int64)), batch, padded_height,
                 padded_width, in_channels, out_channels, shared.tile_stride,
                 shared.channel_stride)
    if schedule.loop_order == "packed_panels":
        tiled.forward_panels_kernel(rows, cols, xp.dtype.name)(
            *arguments, shared.lane_stride, first_tile, pixel_groups, k_groups)
    else:
        assert shared.lane_stride == 1
        tiled.forward_kernel(rows, cols, xp.dtype.name)(
            *arguments, first_tile, pixel_groups, k_groups,
            schedule.loop_order == "pixel_tiles_outer")
