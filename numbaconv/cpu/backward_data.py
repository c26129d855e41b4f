"""Backward-data (``conv2d_backprop_input``, ``conv2d_transpose``) on the CPU, gather form.

``dx[n, ih, iw, c] = Σ_{r,s,k} dy[n, oh, ow, k] · w[r, s, c, k]`` over the (r, s) for which
``oh = (ih + pt − r·dh) / sh`` and ``ow = (iw + pl − s·dw) / sw`` are whole numbers inside
the output. Each input pixel gathers what it fed, so there are no atomics and no
zero-stuffed copy of ``dy``.
"""

from typing import NamedTuple

import numpy as np
from numba import prange

from ..geometry import ConvGeometry
from ..schedule import Schedule
from . import forward, gemm, layout
from ._jit import axpy, axpy4, parallel_kernel, reader_of, valid_range


@parallel_kernel
def backward_data_direct(dy, wt, dx, stride_h, stride_w, dilation_h, dilation_w, pad_top,
                         pad_left, channel_block, tap_outer):
    """dy [N, OH, OW, K], wt [R, S, K, C] (the filter with its channel axes swapped, so
    that ``c`` is contiguous) -> dx [N, H, W, C] (all C-contiguous).

    One task per (n, ih, block of ``channel_block`` input channels); every element is
    summed over (r, s, k) in that order, whatever the loop order.
    """
    batch, out_height, out_width, out_channels = dy.shape
    filter_height, filter_width = wt.shape[0], wt.shape[1]
    in_height, in_width, in_channels = dx.shape[1], dx.shape[2], dx.shape[3]
    blocks = (in_channels + channel_block - 1) // channel_block
    for task in prange(batch * in_height * blocks):
        row = task // blocks
        c0 = (task % blocks) * channel_block
        c1 = min(c0 + channel_block, in_channels)
        n = row // in_height
        ih = row % in_height
        if tap_outer:
            dx[n, ih, :, c0:c1] = 0
            for r in range(filter_height):
                oh = reader_of(ih, pad_top, r, dilation_h, stride_h, out_height)
                if oh < 0:
                    continue
                for s in range(filter_width):
                    # iw = ow·sw + offset runs over the outputs this tap reaches.
                    offset = s * dilation_w - pad_left
                    ow0, ow1 = valid_range(offset, stride_w, in_width, out_width)
                    k = 0
                    while k + 4 <= out_channels:
                        for ow in range(ow0, ow1):
                            dy_row = dy[n, oh, ow]
                            axpy4(dx[n, ih, ow * stride_w + offset, c0:c1],
                                  dy_row[k], wt[r, s, k, c0:c1],
                                  dy_row[k + 1], wt[r, s, k + 1, c0:c1],
                                  dy_row[k + 2], wt[r, s, k + 2, c0:c1],
                                  dy_row[k + 3], wt[r, s, k + 3, c0:c1])
                        k += 4
                    for k in range(k, out_channels):
                        for ow in range(ow0, ow1):
                            axpy(dx[n, ih, ow * stride_w + offset, c0:c1], dy[n, oh, ow, k],
                                 wt[r, s, k, c0:c1])
        else:
            acc = np.empty(c1 - c0, dtype=dx.dtype)
            for iw in range(in_width):
                acc[:] = 0
                for r in range(filter_height):
                    oh = reader_of(ih, pad_top, r, dilation_h, stride_h, out_height)
                    if oh < 0:
                        continue
                    for s in range(filter_width):
                        ow = reader_of(iw, pad_left, s, dilation_w, stride_w, out_width)
                        if ow < 0:
                            continue
                        dy_row = dy[n, oh, ow]
                        k = 0
                        while k + 4 <= out_channels:
                            axpy4(acc, dy_row[k], wt[r, s, k, c0:c1], dy_row[k + 1],
                                  wt[r, s, k + 1, c0:c1], dy_row[k + 2], wt[r, s, k + 2, c0:c1],
                                  dy_row[k + 3], wt[r, s, k + 3, c0:c1])
                            k += 4
                        for k in range(k, out_channels):
                            axpy(acc, dy_row[k], wt[r, s, k, c0:c1])
                dx[n, ih, iw, c0:c1] = acc

def run(dy: np.ndarray, w: np.ndarray, g: ConvGeometry, schedule: Schedule) -> np.ndarray:
    """dy [N, OH, OW, K], w [R, S, C, K] (C-contiguous, same dtype) -> [N, H, W, C]."""
    if schedule.algorithm == "tiled":
        return run_tiled(dy, w, g, schedule)
    if schedule.algorithm == "gemm":
        return gemm.backward_data(dy, w, g, gemm.matmul_of(schedule))
    dx = np.empty(g.input_shape, dtype=dy.dtype)
    if dx.size:
        wt = layout.swap_channels(w)
        backward_data_direct(layout.readonly(dy), layout.readonly(wt), dx, g.stride_h,
                             g.stride_w, g.dilation_h, g.dilation_w, g.pad_top, g.pad_left,
                             schedule.channel_block, schedule.loop_order == "tap_channel_pixel")
    return dx


def _phase(phase: int, pad: int, dilation: int, stride: int, taps: int):
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


def run_tiled(dy: np.ndarray, w: np.ndarray, g: ConvGeometry, schedule: Schedule) -> np.ndarray:
    """Backward-data as stride-1 forward convolutions, one per stride phase: the input
    positions ``(ph + sh·i, pw + sw·j)`` are a stride-1 correlation of ``dy`` (shifted and
    padded) with the taps that reach them, rotated and channel-swapped — no zero-stuffed
    ``dy``, no wasted multiplies. At stride 1 there is one phase: the full rotated filter.

    One padded copy of ``dy``, one pack of the filter and one kernel launch serve every
    phase: a phase reads its window of the padded ``dy`` from an offset, its taps through
    filter strides, and writes its pixels of dx in place."""
    dx = np.empty(g.input_shape, dy.dtype)
    windows = []
    for ph in range(min(g.stride_h, g.in_height)):
        rows, q_top, dilation_h = _phase(ph, g.pad_top, g.dilation_h, g.stride_h, g.filter_height)
        height = -(-(g.in_height - ph) // g.stride_h)
        for pw in range(min(g.stride_w, g.in_width)):
            cols, q_left, dilation_w = _phase(pw, g.pad_left, g.dilation_w, g.stride_w,
                                              g.filter_width)
            width = -(-(g.in_width - pw) // g.stride_w)
            if not rows or not cols:
                dx[:, ph::g.stride_h, pw::g.stride_w] = 0
                continue
            # The phase reads dy[q_top + i + a·dilation_h] for i < height, a < len(rows)
            # (zero outside dy); likewise along the width.
            bottom = height - 1 + q_top + (len(rows) - 1) * dilation_h - (g.out_height - 1)
            right = width - 1 + q_left + (len(cols) - 1) * dilation_w - (g.out_width - 1)
            windows.append(_Window((ph, pw), (height, width), rows, cols, (q_top, q_left),
                                   (bottom, right), (dilation_h, dilation_w)))
    if not windows:
        return dx
    top = max(0, *(-window.start[0] for window in windows))
    left = max(0, *(-window.start[1] for window in windows))
    bottom = max(0, *(window.overhang[0] for window in windows))
    right = max(0, *(window.overhang[1] for window in windows))
    dyp = layout.padded(dy, top, bottom, left, right)
    packed = layout.kernel_filter(w, schedule.register_tile[1],
                                  schedule.loop_order == "packed_panels", swap=True)
    forward.run_tiled(dyp, dx, [
        forward.Phase(packed.taps(window.rows, window.cols), window.size,
                      dilation=window.dilation, origin=window.origin,
                      step=(g.stride_h, g.stride_w),
                      x_offset=((window.start[0] + top) * dyp.shape[2] + window.start[1] + left)
                      * dyp.shape[3])
        for window in windows], schedule)
    return dx


class _Window(NamedTuple):
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
