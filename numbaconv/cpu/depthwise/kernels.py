"""The depthwise family's kernels: one input channel per group, so every tap is an
elementwise multiply-add along the contiguous channel axis (vectorised over channels,
no reduction over channels at all).

With ``M`` the channel multiplier and the filter viewed as ``w[r, s, k]`` (``k = c·M + m``,
TensorFlow's ``[R, S, C, M]`` flattened):

- forward: ``out[n, oh, ow, k] = Σ_{r,s} x[n, ih, iw, k // M] · w[r, s, k]``;
- backward-data: ``dx[n, ih, iw, c] = Σ_{r,s,m} dy[n, oh, ow, c·M + m] · w[r, s, c·M + m]``;
- backward-filter: ``dw[r, s, k] = Σ_{n,oh,ow} x[n, ih, iw, k // M] · dy[n, oh, ow, k]``,

with ``ih = oh·sh + r·dh − pt`` and ``iw = ow·sw + s·dw − pl`` inside the input.
"""

import numpy as np
from numba import prange

from ..half import copy_rounded, element_value, sums_for
from ..jit import helper, parallel_kernel, reader_of, valid_range


@helper
def multiply_add(acc, x_row, w_row, first, multiplier, brain):
    """acc[j] += x_row[(first + j) // multiplier] · w_row[j]; ``x_row`` is one pixel's
    input channels, ``w_row`` the taps of channels ``first ...`` (either a half type's
    bits, widened: :func:`.half.element_value`)."""
    if multiplier == 1:
        # A view starting at 0: an offset index LLVM cannot prove non-negative keeps
        # Numba's negative-index wraparound in the loop, and the loop scalar.
        x_part = x_row[first:first + acc.shape[0]]
        for j in range(acc.shape[0]):
            acc[j] += element_value(x_part[j], brain) * element_value(w_row[j], brain)
    else:
        for j in range(acc.shape[0]):
            acc[j] += (element_value(x_row[(first + j) // multiplier], brain)
                       * element_value(w_row[j], brain))


@helper
def gather_multiply_add(acc, dy_row, w_row, first, multiplier, brain):
    """acc[j] += Σ_m dy_row[(first + j)·M + m] · w_row[(first + j)·M + m] (M = multiplier;
    either row a half type's bits, widened)."""
    if multiplier == 1:
        dy_part = dy_row[first:first + acc.shape[0]]
        w_part = w_row[first:first + acc.shape[0]]
        for j in range(acc.shape[0]):
            acc[j] += element_value(dy_part[j], brain) * element_value(w_part[j], brain)
    else:
        for j in range(acc.shape[0]):
            k = (first + j) * multiplier
            total = acc[j]
            for m in range(multiplier):
                total += (element_value(dy_row[k + m], brain)
                          * element_value(w_row[k + m], brain))
            acc[j] = total


@parallel_kernel
def forward_depthwise(x, w, out, stride_h, stride_w, dilation_h, dilation_w, pad_top,
                      pad_left, channel_block, row_taps, brain):
    """x [N, H, W, C], w [R, S, C·M] -> out [N, OH, OW, C·M] (all C-contiguous).

    One task per (n, oh, block of output channels). ``row_taps``: each tap sweeps the
    whole output row (the row stays in cache, the tap's weights in registers); else each
    output pixel sums its taps in one accumulator. Either way every element is summed over
    (r, s) in that order. Per pixel (not ``row_taps``), all three may be a half type's
    bits (uint16; bfloat16's if ``brain``, else float16's): each value widened as it is
    read, summed in float32, each sum rounded once as it is stored.
    """
    batch, in_height, in_width, in_channels = x.shape
    filter_height, filter_width, out_channels = w.shape
    out_height, out_width = out.shape[1], out.shape[2]
    multiplier = out_channels // in_channels
    blocks = (out_channels + channel_block - 1) // channel_block
    for task in prange(batch * out_height * blocks):
        row = task // blocks
        k0 = (task % blocks) * channel_block
        k1 = min(k0 + channel_block, out_channels)
        n = row // out_height
        oh = row % out_height
        if row_taps:
            out[n, oh, :, k0:k1] = 0
            for r in range(filter_height):
                ih = oh * stride_h + r * dilation_h - pad_top
                if ih < 0 or ih >= in_height:
                    continue
                for s in range(filter_width):
                    offset = s * dilation_w - pad_left
                    ow0, ow1 = valid_range(offset, stride_w, in_width, out_width)
                    w_row = w[r, s, k0:k1]
                    for ow in range(ow0, ow1):
                        multiply_add(out[n, oh, ow, k0:k1], x[n, ih, ow * stride_w + offset],
                                     w_row, k0, multiplier, False)
        else:
            acc = sums_for(w, k1 - k0)
            for ow in range(out_width):
                acc[:] = 0
                for r in range(filter_height):
                    ih = oh * stride_h + r * dilation_h - pad_top
                    if ih < 0 or ih >= in_height:
                        continue
                    for s in range(filter_width):
                        iw = ow * stride_w + s * dilation_w - pad_left
                        if 0 <= iw < in_width:
                            multiply_add(acc, x[n, ih, iw], w[r, s, k0:k1], k0, multiplier,
                                         brain)
                copy_rounded(out[n, oh, ow, k0:k1], acc, brain)


@parallel_kernel
def backward_data_depthwise(dy, w, dx, stride_h, stride_w, dilation_h, dilation_w, pad_top,
                            pad_left, channel_block, row_taps, brain):
    """dy [N, OH, OW, C·M], w [R, S, C·M] -> dx [N, H, W, C] (all C-contiguous), gather
    form: each input pixel sums what it fed, no atomics.

    One task per (n, ih, block of input channels); every element is summed over (r, s)
    (and m within a tap) in that order, whatever ``row_taps`` says. Per pixel (not
    ``row_taps``), all three may be a half type's bits, as in :func:`forward_depthwise`.
    """
    batch, out_height, out_width, out_channels = dy.shape
    filter_height, filter_width = w.shape[0], w.shape[1]
    in_height, in_width, in_channels = dx.shape[1], dx.shape[2], dx.shape[3]
    multiplier = out_channels // in_channels
    blocks = (in_channels + channel_block - 1) // channel_block
    for task in prange(batch * in_height * blocks):
        row = task // blocks
        c0 = (task % blocks) * channel_block
        c1 = min(c0 + channel_block, in_channels)
        n = row // in_height
        ih = row % in_height
        if row_taps:
            dx[n, ih, :, c0:c1] = 0
            for r in range(filter_height):
                oh = reader_of(ih, pad_top, r, dilation_h, stride_h, out_height)
                if oh < 0:
                    continue
                for s in range(filter_width):
                    # iw = ow·sw + offset runs over the outputs this tap reaches.
                    offset = s * dilation_w - pad_left
                    ow0, ow1 = valid_range(offset, stride_w, in_width, out_width)
                    for ow in range(ow0, ow1):
                        gather_multiply_add(dx[n, ih, ow * stride_w + offset, c0:c1],
                                            dy[n, oh, ow], w[r, s], c0, multiplier, False)
        else:
            acc = sums_for(w, c1 - c0)
            for iw in range(in_width):
                acc[:] = 0
                for r in range(filter_height):
                    oh = reader_of(ih, pad_top, r, dilation_h, stride_h, out_height)
                    if oh < 0:
                        continue
                    for s in range(filter_width):
                        ow = reader_of(iw, pad_left, s, dilation_w, stride_w, out_width)
                        if ow >= 0:
                            gather_multiply_add(acc, dy[n, oh, ow], w[r, s], c0, multiplier,
                                                brain)
                copy_rounded(dx[n, ih, iw, c0:c1], acc, brain)


@parallel_kernel
def backward_filter_depthwise(x, dy, partials, stride_h, stride_w, dilation_h, dilation_w,
                              pad_top, pad_left, channel_block):
    """x [N, H, W, C], dy [N, OH, OW, C·M] -> partials [splits, R, S, C·M] (C-contiguous).

    One task per (split of the N·OH rows, block of channels); each sums its rows into its
    own partial filter, element by element over (row, ow) in that order.
    """
    batch, in_height, in_width = x.shape[0], x.shape[1], x.shape[2]
    out_height, out_width, out_channels = dy.shape[1], dy.shape[2], dy.shape[3]
    splits, filter_height, filter_width = partials.shape[0], partials.shape[1], partials.shape[2]
    multiplier = out_channels // x.shape[3]
    rows = batch * out_height
    blocks = (out_channels + channel_block - 1) // channel_block
    for task in prange(splits * blocks):
        split = task // blocks
        k0 = (task % blocks) * channel_block
        k1 = min(k0 + channel_block, out_channels)
        dw = partials[split]
        dw[:, :, k0:k1] = 0
        for row in range(split * rows // splits, (split + 1) * rows // splits):
            n = row // out_height
            oh = row % out_height
            for r in range(filter_height):
                ih = oh * stride_h + r * dilation_h - pad_top
                if ih < 0 or ih >= in_height:
                    continue
                for s in range(filter_width):
                    offset = s * dilation_w - pad_left
                    ow0, ow1 = valid_range(offset, stride_w, in_width, out_width)
                    dw_row = dw[r, s, k0:k1]
                    for ow in range(ow0, ow1):
                        multiply_add(dw_row, x[n, ih, ow * stride_w + offset],
                                     dy[n, oh, ow, k0:k1], k0, multiplier, False)
