"""The direct family's forward kernel (``conv2d``).

``out[n, oh, ow, k] = Σ_{r,s,c} x[n, oh·sh + r·dh − pt, ow·sw + s·dw − pl, g·Cg + c] · w[r, s, c, k]``
with ``g`` the group of ``k`` (``Cg`` = the filter's input channels).
"""

import numpy as np
from numba import prange

from ..jit import axpy, axpy4, parallel_kernel, valid_range


@parallel_kernel
def forward_direct(x, w, out, stride_h, stride_w, dilation_h, dilation_w, pad_top,
                   pad_left, channel_block, tap_outer, groups):
    """x [N, H, W, groups·Cg], w [R, S, Cg, K] -> out [N, OH, OW, K] (all C-contiguous).

    One task per (n, oh, block of ``channel_block`` output channels of one group); every
    element it owns is summed over (r, s, c) in that order, whatever the loop order.
    """
    batch, in_height, in_width = x.shape[0], x.shape[1], x.shape[2]
    filter_height, filter_width, in_channels, out_channels = w.shape
    out_height, out_width = out.shape[1], out.shape[2]
    group_channels = out_channels // groups
    group_blocks = (group_channels + channel_block - 1) // channel_block
    blocks = groups * group_blocks
    for task in prange(batch * out_height * blocks):
        row = task // blocks
        group = task % blocks // group_blocks
        k0 = group * group_channels + (task % group_blocks) * channel_block
        k1 = min(k0 + channel_block, (group + 1) * group_channels)
        c_first = group * in_channels  # the group's slice of the input channels
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
                            x_row = x[n, ih, ow * stride_w + offset, c_first:]
                            axpy4(out[n, oh, ow, k0:k1], x_row[c], w[r, s, c, k0:k1],
                                  x_row[c + 1], w[r, s, c + 1, k0:k1],
                                  x_row[c + 2], w[r, s, c + 2, k0:k1],
                                  x_row[c + 3], w[r, s, c + 3, k0:k1])
                        c += 4
                    for c in range(c, in_channels):
                        for ow in range(ow0, ow1):
                            axpy(out[n, oh, ow, k0:k1],
                                 x[n, ih, ow * stride_w + offset, c_first + c], w[r, s, c, k0:k1])
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
                        x_row = x[n, ih, iw, c_first:]
                        c = 0
                        while c + 4 <= in_channels:
                            axpy4(acc, x_row[c], w[r, s, c, k0:k1], x_row[c + 1],
                                  w[r, s, c + 1, k0:k1], x_row[c + 2], w[r, s, c + 2, k0:k1],
                                  x_row[c + 3], w[r, s, c + 3, k0:k1])
                            c += 4
                        for c in range(c, in_channels):
                            axpy(acc, x_row[c], w[r, s, c, k0:k1])
                out[n, oh, ow, k0:k1] = acc
