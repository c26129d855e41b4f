"""The direct family's backward-data kernel (``conv2d_backprop_input``), gather form.

``dx[n, ih, iw, g·Cg + c] = Σ_{r,s,k} dy[n, oh, ow, k] · w[r, s, c, k]`` over the output
channels ``k`` of group ``g`` and the (r, s) for which
``oh = (ih + pt − r·dh) / sh`` and ``ow = (iw + pl − s·dw) / sw`` are whole numbers inside
the output. Each input pixel gathers what it fed, so there are no atomics and no
zero-stuffed copy of ``dy``.
"""

import numpy as np
from numba import prange

from ..jit import axpy, axpy4, parallel_kernel, reader_of, valid_range


@parallel_kernel
def backward_data_direct(dy, wt, dx, stride_h, stride_w, dilation_h, dilation_w, pad_top,
                         pad_left, channel_block, tap_outer, groups):
    """dy [N, OH, OW, K], wt [R, S, K, Cg] (the filter with its channel axes swapped, so
    that ``c`` is contiguous) -> dx [N, H, W, groups·Cg] (all C-contiguous).

    One task per (n, ih, block of ``channel_block`` input channels of one group); every
    element is summed over (r, s, k) in that order, whatever the loop order.
    """
    batch, out_height, out_width = dy.shape[0], dy.shape[1], dy.shape[2]
    filter_height, filter_width, all_out_channels, in_channels = wt.shape
    in_height, in_width = dx.shape[1], dx.shape[2]
    out_channels = all_out_channels // groups  # each group's
    group_blocks = (in_channels + channel_block - 1) // channel_block
    blocks = groups * group_blocks
    for task in prange(batch * in_height * blocks):
        row = task // blocks
        group = task % blocks // group_blocks
        c0 = (task % group_blocks) * channel_block  # within the group's channels
        c1 = min(c0 + channel_block, in_channels)
        k_first = group * out_channels
        dx_first = group * in_channels + c0  # dx's channels [dx_first, dx_last)
        dx_last = group * in_channels + c1
        n = row // in_height
        ih = row % in_height
        if tap_outer:
            dx[n, ih, :, dx_first:dx_last] = 0
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
                            dy_row = dy[n, oh, ow, k_first:]
                            axpy4(dx[n, ih, ow * stride_w + offset, dx_first:dx_last],
                                  dy_row[k], wt[r, s, k_first + k, c0:c1],
                                  dy_row[k + 1], wt[r, s, k_first + k + 1, c0:c1],
                                  dy_row[k + 2], wt[r, s, k_first + k + 2, c0:c1],
                                  dy_row[k + 3], wt[r, s, k_first + k + 3, c0:c1])
                        k += 4
                    for k in range(k, out_channels):
                        for ow in range(ow0, ow1):
                            axpy(dx[n, ih, ow * stride_w + offset, dx_first:dx_last],
                                 dy[n, oh, ow, k_first + k], wt[r, s, k_first + k, c0:c1])
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
                        dy_row = dy[n, oh, ow, k_first:]
                        k = 0
                        while k + 4 <= out_channels:
                            axpy4(acc, dy_row[k], wt[r, s, k_first + k, c0:c1],
                                  dy_row[k + 1], wt[r, s, k_first + k + 1, c0:c1],
                                  dy_row[k + 2], wt[r, s, k_first + k + 2, c0:c1],
                                  dy_row[k + 3], wt[r, s, k_first + k + 3, c0:c1])
                            k += 4
                        for k in range(k, out_channels):
                            axpy(acc, dy_row[k], wt[r, s, k_first + k, c0:c1])
                dx[n, ih, iw, dx_first:dx_last] = acc
