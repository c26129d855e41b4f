"""Backward-filter (``conv2d_backprop_filter``) on the CPU.

``dw[r, s, c, k] = Σ_{n,oh,ow} x[n, oh·sh + r·dh − pt, ow·sw + s·dw − pl, c] · dy[n, oh, ow, k]``

Tasks own disjoint (input-channel block × output-channel block) tiles of the filter. When
those are too few to keep the cores busy, the reduction over the N·OH rows is also split
into ``reduction_splits`` chunks, each summed into its own partial filter, and the
partials are added in a fixed order afterwards: race-free and deterministic.
"""

import numpy as np
from numba import prange

from ..geometry import ConvGeometry
from ..schedule import TARGET_TASKS, Schedule
from . import gemm, layout, tiled
from ._jit import axpy, axpy4, parallel_kernel, valid_range


@parallel_kernel
def backward_filter_direct(x, dy, partials, stride_h, stride_w, dilation_h, dilation_w,
                           pad_top, pad_left, channel_block, in_channel_block, tap_outer):
    """x [N, H, W, C], dy [N, OH, OW, K] -> partials [splits, R, S, C, K] (C-contiguous).

    One task per (split, block of input channels, block of output channels); every
    element is summed over its chunk's (row, ow) in that order, whatever the loop order.
    """
    batch, in_height, in_width, in_channels = x.shape
    out_height, out_width, out_channels = dy.shape[1], dy.shape[2], dy.shape[3]
    splits, filter_height, filter_width = partials.shape[0], partials.shape[1], partials.shape[2]
    rows = batch * out_height
    k_blocks = (out_channels + channel_block - 1) // channel_block
    c_blocks = (in_channels + in_channel_block - 1) // in_channel_block
    for task in prange(splits * c_blocks * k_blocks):
        split = task // (c_blocks * k_blocks)
        c0 = (task // k_blocks % c_blocks) * in_channel_block
        c1 = min(c0 + in_channel_block, in_channels)
        k0 = (task % k_blocks) * channel_block
        k1 = min(k0 + channel_block, out_channels)
        row0 = split * rows // splits
        row1 = (split + 1) * rows // splits
        dw = partials[split]
        dw[:, :, c0:c1, k0:k1] = 0
        if tap_outer:
            for r in range(filter_height):
                for s in range(filter_width):
                    offset = s * dilation_w - pad_left
                    ow0, ow1 = valid_range(offset, stride_w, in_width, out_width)
                    for c in range(c0, c1):
                        dw_row = dw[r, s, c, k0:k1]
                        for row in range(row0, row1):
                            n = row // out_height
                            oh = row % out_height
                            ih = oh * stride_h + r * dilation_h - pad_top
                            if ih < 0 or ih >= in_height:
                                continue
                            ow = ow0
                            while ow + 4 <= ow1:
                                iw = ow * stride_w + offset
                                axpy4(dw_row, x[n, ih, iw, c], dy[n, oh, ow, k0:k1],
                                      x[n, ih, iw + stride_w, c], dy[n, oh, ow + 1, k0:k1],
                                      x[n, ih, iw + 2 * stride_w, c], dy[n, oh, ow + 2, k0:k1],
                                      x[n, ih, iw + 3 * stride_w, c], dy[n, oh, ow + 3, k0:k1])
                                ow += 4
                            for ow in range(ow, ow1):
                                axpy(dw_row, x[n, ih, ow * stride_w + offset, c],
                                     dy[n, oh, ow, k0:k1])
        else:
            for row in range(row0, row1):
                n = row // out_height
                oh = row % out_height
                for r in range(filter_height):
                    ih = oh * stride_h + r * dilation_h - pad_top
                    if ih < 0 or ih >= in_height:
                        continue
                    for s in range(filter_width):
                        offset = s * dilation_w - pad_left
                        ow0, ow1 = valid_range(offset, stride_w, in_width, out_width)
                        for ow in range(ow0, ow1):
                            x_row = x[n, ih, ow * stride_w + offset]
                            dy_row = dy[n, oh, ow, k0:k1]
                            for c in range(c0, c1):
                                axpy(dw[r, s, c, k0:k1], x_row[c], dy_row)


@parallel_kernel
def sum_partials(partials, out):
    """partials [splits, M] -> out [M], each element summed over splits in order."""
    splits, size = partials.shape
    chunk = 4096
    for task in prange((size + chunk - 1) // chunk):
        i0 = task * chunk
        i1 = min(i0 + chunk, size)
        out[i0:i1] = partials[0, i0:i1]
        for split in range(1, splits):
            part = partials[split, i0:i1]
            dst = out[i0:i1]
            for i in range(i1 - i0):
                dst[i] += part[i]


def run(x: np.ndarray, dy: np.ndarray, g: ConvGeometry, schedule: Schedule) -> np.ndarray:
    """x [N, H, W, C], dy [N, OH, OW, K] (C-contiguous, same dtype) -> [R, S, C, K]."""
    rows = g.batch * g.out_height
    if rows == 0:
        return np.zeros(g.filter_shape, dtype=x.dtype)
    if schedule.algorithm == "gemm":
        return gemm.backward_filter(x, dy, g, gemm.matmul_of(schedule))
    splits = min(schedule.reduction_splits, rows)
    pixels_outer = schedule.algorithm == "tiled" and schedule.loop_order == "pixel_tiles_outer"
    partials = (np.zeros if pixels_outer else np.empty)((splits,) + g.filter_shape, x.dtype)
    if schedule.algorithm == "tiled":
        xp = layout.padded(x, g.pad_top, g.pad_bottom, g.pad_left, g.pad_right)
        tile_in, tile_out = schedule.register_tile
        taps, c_tiles = g.filter_height * g.filter_width, g.in_channels // tile_in
        c_groups = min(c_tiles, max(1, -(-TARGET_TASKS // (splits * taps))))
        kernel = tiled.backward_filter_kernel(tile_in, tile_out, x.dtype.name)
        kernel(layout.readonly_flat(xp), layout.readonly_flat(dy), partials.reshape(-1),
               g.batch, xp.shape[1], xp.shape[2], g.in_channels, g.filter_height,
               g.filter_width, g.out_channels, g.out_height, g.out_width, g.stride_h,
               g.stride_w, g.dilation_h, g.dilation_w, splits, c_groups, pixels_outer)
    elif partials.size:
        backward_filter_direct(layout.readonly(x), layout.readonly(dy), partials, g.stride_h,
                               g.stride_w, g.dilation_h, g.dilation_w, g.pad_top, g.pad_left,
                               schedule.channel_block, schedule.in_channel_block,
                               schedule.loop_order == "tap_channel_pixel")
    if splits == 1:
        return partials[0]
    out = np.empty(g.filter_shape, dtype=x.dtype)
    sum_partials(partials.reshape(splits, -1), out.reshape(-1))
    return out
