"""The depthwise family's ``flat_rows`` kernels: channel multiplier 1, unit horizontal
stride. A pixel row's channels then lie contiguous along the row, so each filter tap is one
long elementwise multiply-add over the flattened row (``OW·C`` elements, vectorised with no
per-pixel loop overhead) against the tap's weights repeated along the row (``w_rows``,
``[R, S, width·C]``). Arrays are given with their rows flattened (``[N, H, W·C]``). Each
element is summed over (r, s) in that order, as in :mod:`.kernels`; backward-filter sums
per row position first, then over the positions. Worth it while the three rows a tap
streams stay in L1 (:data:`numbaconv.cpu.depthwise.FLAT_ROW_BYTES`).
"""

import numpy as np
from numba import prange

from ..jit import helper, parallel_kernel, reader_of, valid_range


@helper
def multiply_add_rows(acc, a, b):
    """acc[i] += a[i] · b[i] (three views of one length)."""
    for i in range(acc.shape[0]):
        acc[i] += a[i] * b[i]


@parallel_kernel
def forward_rows(x, w_rows, out, channels, in_width, out_width, stride_h, dilation_h,
                 dilation_w, pad_top, pad_left):
    """x [N, H, W·C], w_rows [R, S, OW·C] -> out [N, OH, OW·C]; one task per output row."""
    batch, in_height = x.shape[0], x.shape[1]
    filter_height, filter_width = w_rows.shape[0], w_rows.shape[1]
    out_height = out.shape[1]
    for task in prange(batch * out_height):
        n = task // out_height
        oh = task % out_height
        out_row = out[n, oh]
        out_row[:] = 0
        for r in range(filter_height):
            ih = oh * stride_h + r * dilation_h - pad_top
            if ih < 0 or ih >= in_height:
                continue
            x_row = x[n, ih]
            for s in range(filter_width):
                offset = s * dilation_w - pad_left  # iw = ow + offset
                ow0, ow1 = valid_range(offset, 1, in_width, out_width)
                if ow1 > ow0:
                    multiply_add_rows(out_row[ow0 * channels:ow1 * channels],
                                      x_row[(ow0 + offset) * channels:(ow1 + offset) * channels],
                                      w_rows[r, s, ow0 * channels:ow1 * channels])


@parallel_kernel
def backward_data_rows(dy, w_rows, dx, channels, in_width, out_width, stride_h, dilation_h,
                       dilation_w, pad_top, pad_left):
    """dy [N, OH, OW·C], w_rows [R, S, W·C] -> dx [N, H, W·C], gather form; one task per
    input row."""
    batch, out_height = dy.shape[0], dy.shape[1]
    filter_height, filter_width = w_rows.shape[0], w_rows.shape[1]
    in_height = dx.shape[1]
    for task in prange(batch * in_height):
        n = task // in_height
        ih = task % in_height
        dx_row = dx[n, ih]
        dx_row[:] = 0
        for r in range(filter_height):
            oh = reader_of(ih, pad_top, r, dilation_h, stride_h, out_height)
            if oh < 0:
                continue
            dy_row = dy[n, oh]
            for s in range(filter_width):
                offset = s * dilation_w - pad_left  # iw = ow + offset
                ow0, ow1 = valid_range(offset, 1, in_width, out_width)
                if ow1 > ow0:
                    first, last = (ow0 + offset) * channels, (ow1 + offset) * channels
                    multiply_add_rows(dx_row[first:last], dy_row[ow0 * channels:ow1 * channels],
                                      w_rows[r, s, first:last])


@parallel_kernel
def backward_filter_rows(x, dy, partials, channels, in_width, out_width, stride_h, stride_w,
                         dilation_h, dilation_w, pad_top, pad_left):
    """x [N, H, W·C], dy [N, OH, OW·C] -> partials [splits, R, S, C]: each split sums its
    share of the N·OH rows per row position (a task-local [R, S, OW·C]), then over the
    positions in order. Any horizontal stride (the forward and backward-data kernels here
    need 1)."""
    batch, in_height = x.shape[0], x.shape[1]
    out_height = dy.shape[1]
    splits, filter_height, filter_width = partials.shape[0], partials.shape[1], partials.shape[2]
    rows = batch * out_height
    for split in prange(splits):
        by_position = np.zeros((filter_height, filter_width, out_width * channels), dy.dtype)
        for row in range(split * rows // splits, (split + 1) * rows // splits):
            n = row // out_height
            oh = row % out_height
            dy_row = dy[n, oh]
            for r in range(filter_height):
                ih = oh * stride_h + r * dilation_h - pad_top
                if ih < 0 or ih >= in_height:
                    continue
                x_row = x[n, ih]
                for s in range(filter_width):
                    offset = s * dilation_w - pad_left
                    ow0, ow1 = valid_range(offset, stride_w, in_width, out_width)
                    if ow1 <= ow0:
                        continue
                    if stride_w == 1:
                        multiply_add_rows(
                            by_position[r, s, ow0 * channels:ow1 * channels],
                            x_row[(ow0 + offset) * channels:(ow1 + offset) * channels],
                            dy_row[ow0 * channels:ow1 * channels])
                    else:  # x's pixels stride_w apart: one pixel at a time
                        positions = by_position[r, s]
                        for ow in range(ow0, ow1):
                            # Unsigned offsets: no negative-index wrap-around in the loop.
                            at = np.uint64(ow * channels)
                            source = np.uint64((ow * stride_w + offset) * channels)
                            for c in range(channels):
                                j = np.uint64(c)
                                positions[at + j] += x_row[source + j] * dy_row[at + j]
        for r in range(filter_height):
            for s in range(filter_width):
                dw = partials[split, r, s]
                dw[:] = by_position[r, s, :channels]
                for ow in range(1, out_width):
                    position = by_position[r, s, ow * channels:(ow + 1) * channels]
                    for c in range(channels):
                        dw[c] += position[c]
