"""Data movement the kernels need: zero-padded copies and filter rearrangements."""

import numpy as np
from numba import prange

from ._jit import parallel_kernel


@parallel_kernel
def _pad_rows(x, xp, pad_top, pad_left):
    """xp [N, Hp, Wp, C] <- x [N, H, W, C] placed at (pad_top, pad_left), zeros around."""
    batch, in_height, in_width, _ = x.shape
    padded_height = xp.shape[1]
    for row in prange(batch * padded_height):
        n = row // padded_height
        ih = row % padded_height - pad_top
        if ih < 0 or ih >= in_height:
            xp[n, row % padded_height] = 0
        else:
            out_row = xp[n, row % padded_height]
            out_row[:pad_left] = 0
            out_row[pad_left:pad_left + in_width] = x[n, ih]
            out_row[pad_left + in_width:] = 0


def pad(x: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """A fresh zero-padded copy of NHWC ``x`` (negative pads crop)."""
    crop = np.ascontiguousarray(x[:, max(-top, 0): x.shape[1] - max(-bottom, 0),
                                  max(-left, 0): x.shape[2] - max(-right, 0)])
    top, bottom, left, right = (max(v, 0) for v in (top, bottom, left, right))
    xp = np.empty((crop.shape[0], crop.shape[1] + top + bottom, crop.shape[2] + left + right,
                   crop.shape[3]), crop.dtype)
    if xp.size:
        _pad_rows(crop, xp, top, left)
    return xp


@parallel_kernel
def _swap_channels(w, wt):
    """wt[r, s, k, c] = w[r, s, c, k], in 32×32 tiles (NumPy's strided copy of a large
    filter costs as much as the convolution of a 7×7 layer)."""
    filter_height, filter_width, in_channels, out_channels = w.shape
    tile = 32
    c_tiles = (in_channels + tile - 1) // tile
    for task in prange(filter_height * filter_width * c_tiles):
        tap = task // c_tiles
        r = tap // filter_width
        s = tap % filter_width
        c0 = (task % c_tiles) * tile
        c1 = min(c0 + tile, in_channels)
        for k0 in range(0, out_channels, tile):
            k1 = min(k0 + tile, out_channels)
            for k in range(k0, k1):
                for c in range(c0, c1):
                    wt[r, s, k, c] = w[r, s, c, k]


def swap_channels(w: np.ndarray) -> np.ndarray:
    """[R, S, C, K] -> [R, S, K, C], fresh."""
    wt = np.empty((w.shape[0], w.shape[1], w.shape[3], w.shape[2]), w.dtype)
    if wt.size:
        _swap_channels(readonly(w), wt)
    return wt


@parallel_kernel
def _pack_filter(w, packed, swap):
    """packed[kt, r, s, c, j] = f[r, s, c, kt·KB + j] with f = w, or w with its channel
    axes swapped when ``swap``. Both branches read ``w`` row by row, contiguously, and the
    branch is outside the loops (inside them it kept LLVM from vectorising the copy: the
    pack then cost 3.5 plain copies, more than a 7×7 layer's convolution)."""
    k_tiles, filter_height, filter_width, in_channels, tile = packed.shape
    if swap:  # one contiguous [C, KB] block of ``packed`` per task, L1-sized
        for task in prange(k_tiles * filter_height * filter_width):
            kt = task // (filter_height * filter_width)
            r = task // filter_width % filter_height
            s = task % filter_width
            block = packed[kt, r, s]
            for j in range(tile):
                row = w[r, s, kt * tile + j]
                for c in range(in_channels):
                    block[c, j] = row[c]
    else:  # one row w[r, s, c, :] per task, cut into its K/KB tiles
        for task in prange(filter_height * filter_width * in_channels):
            r = task // (filter_width * in_channels)
            s = task // in_channels % filter_width
            c = task % in_channels
            row = w[r, s, c]
            for kt in range(k_tiles):
                packed[kt, r, s, c, :] = row[kt * tile:(kt + 1) * tile]


def pack_filter(w: np.ndarray, tile: int, swap: bool = False) -> np.ndarray:
    """[R, S, C, K] -> [K/tile, R, S, C, tile]: each register tile's filter values
    contiguous, instead of ``K`` elements apart (for K = 512 that is a new page every 2
    input channels). ``swap`` packs the filter with C and K swapped (backward-data)."""
    height, width, in_channels, out_channels = w.shape
    if swap:
        in_channels, out_channels = out_channels, in_channels
    packed = np.empty((out_channels // tile, height, width, in_channels, tile), w.dtype)
    if packed.size:
        _pack_filter(readonly(w), packed, swap)
    return packed


def readonly(array: np.ndarray) -> np.ndarray:
    """A read-only view: every kernel input has this one type, whatever the caller's
    flags, so each kernel is compiled once per dtype (not twice)."""
    view = array.view()
    view.flags.writeable = False
    return view


def readonly_flat(array: np.ndarray) -> np.ndarray:
    """A read-only flat view of a C-contiguous array (see :func:`readonly`)."""
    return readonly(array.reshape(-1))
