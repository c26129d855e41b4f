"""The direct family's backward-filter kernel (``conv2d_backprop_filter``).

``dw[r, s, c, k] = Σ_{n,oh,ow} x[n, oh·sh + r·dh − pt, ow·sw + s·dw − pl, g·Cg + c] · dy[n, oh, ow, k]``
with ``g`` the group of ``k`` (``Cg`` = the filter's input channels).

Tasks own disjoint (input-channel block × output-channel block) tiles of the filter. When
those are too few to keep the cores busy, the reduction over the N·OH rows is also split
into chunks, each summed into its own partial filter, and the partials are added in a
fixed order afterwards (:mod:`numbaconv.cpu.partials`): race-free and deterministic.
"""

from numba import prange

from ..jit import axpy, axpy4, parallel_kernel, valid_range


@parallel_kernel
def backward_filter_direct(x, dy, partials, stride_h, stride_w, dilation_h, dilation_w,
                           pad_top, pad_left, channel_block, in_channel_block, tap_outer,
                           groups):
    """x [N, H, W, groups·Cg], dy [N, OH, OW, K] -> partials [splits, R, S, Cg, K]
    (C-contiguous).

    One task per (split, group, block of its input channels, block of its output
    channels); every element is summed over its chunk's (row, ow) in that order, whatever
    the loop order.
    """
    batch, in_height, in_width = x.shape[0], x.shape[1], x.shape[2]
    out_height, out_width, out_channels = dy.shape[1], dy.shape[2], dy.shape[3]
    splits, filter_height, filter_width, in_channels = partials.shape[:4]
    group_channels = out_channels // groups
    rows = batch * out_height
    k_blocks = (group_channels + channel_block - 1) // channel_block
    c_blocks = (in_channels + in_channel_block - 1) // in_channel_block
    for task in prange(splits * groups * c_blocks * k_blocks):
        split = task // (groups * c_blocks * k_blocks)
        group = task // (c_blocks * k_blocks) % groups
        c0 = (task // k_blocks % c_blocks) * in_channel_block  # within the group's channels
        c1 = min(c0 + in_channel_block, in_channels)
        k0 = group * group_channels + (task % k_blocks) * channel_block
        k1 = min(k0 + channel_block, (group + 1) * group_channels)
        c_first = group * in_channels  # the group's slice of the input channels
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
                                xc = c_first + c
                                axpy4(dw_row, x[n, ih, iw, xc], dy[n, oh, ow, k0:k1],
                                      x[n, ih, iw + stride_w, xc], dy[n, oh, ow + 1, k0:k1],
                                      x[n, ih, iw + 2 * stride_w, xc], dy[n, oh, ow + 2, k0:k1],
                                      x[n, ih, iw + 3 * stride_w, xc], dy[n, oh, ow + 3, k0:k1])
                                ow += 4
                            for ow in range(ow, ow1):
                                axpy(dw_row, x[n, ih, ow * stride_w + offset, c_first + c],
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
                            x_row = x[n, ih, ow * stride_w + offset, c_first:]
                            dy_row = dy[n, oh, ow, k0:k1]
                            for c in range(c0, c1):
                                axpy(dw[r, s, c, k0:k1], x_row[c], dy_row)
