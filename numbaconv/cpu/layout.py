"""Data movement the kernels need: zero-padded copies and filter rearrangements."""

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numba import prange

from . import half
from .jit import parallel_kernel


#: Up to this size a padded copy is made by NumPy: a parallel launch costs more than the
#: copy itself.
SMALL_COPY_BYTES = 256 * 2**10
#: The same for a filter's rearrangement, whose strided reads NumPy makes slowly.
SMALL_TRANSPOSE_BYTES = 32 * 2**10
#: A grouped filter's swap walks the groups innermost from this many groups (a loop long
#: enough to pay for its strided steps) when one tap's [C, K] block outgrows L1 (32-48
#: KiB on x86 cores); otherwise it moves each group's block whole.
MANY_GROUPS = 8
L1_BYTES = 32 * 2**10


@parallel_kernel
def pad_rows_kernel(x, xp, pad_top, pad_left):
    """xp [N, Hp, Wp, C] <- x [N, H, W, C] placed at (pad_top, pad_left), zeros around.
    Loops, not an array assignment: the latter's shape check compiles Numba's error
    formatting, seconds of every cold start."""
    batch, in_height, in_width, channels = x.shape
    padded_height, padded_width = xp.shape[1], xp.shape[2]
    for row in prange(batch * padded_height):
        n = row // padded_height
        ih = row % padded_height - pad_top
        out_row = xp[n, row % padded_height]
        if ih < 0 or ih >= in_height:
            out_row[:] = 0
            continue
        in_row = x[n, ih]
        for iw in range(padded_width):
            source = iw - pad_left
            if source < 0 or source >= in_width:
                out_row[iw] = 0
            else:
                for c in range(channels):
                    out_row[iw, c] = in_row[source, c]


def pad(x: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """A fresh zero-padded copy of NHWC ``x`` (negative pads crop)."""
    return padder(x.shape, x.dtype, top, bottom, left, right, copy=True)(x)


def padder(shape: tuple, dtype, top: int, bottom: int, left: int, right: int,
           copy: bool = False, by_numpy: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """The zero-padding (negative pads crop) of NHWC arrays of ``shape`` and ``dtype``,
    its arithmetic done once: what a prepared run calls. For reading only: an array with
    nothing added or cut comes back as it is when C-contiguous (no copy for unpadded
    layers), unless ``copy`` (:func:`pad`). Copies are made by NumPy when small, or
    whatever their size when ``by_numpy`` (nothing to compile)."""
    if (top, bottom, left, right) == (0, 0, 0, 0) and not copy:
        return np.ascontiguousarray
    batch, height, width, channels = shape
    crop = (slice(None), slice(max(-top, 0), height - max(-bottom, 0)),
            slice(max(-left, 0), width - max(-right, 0)))
    cropped_height = len(range(height)[crop[1]])
    cropped_width = len(range(width)[crop[2]])
    top, bottom, left, right = (max(v, 0) for v in (top, bottom, left, right))
    padded_shape = (batch, cropped_height + top + bottom, cropped_width + left + right,
                    channels)
    if by_numpy or math.prod(padded_shape) * np.dtype(dtype).itemsize <= SMALL_COPY_BYTES:
        inside = (slice(None), slice(top, top + cropped_height),
                  slice(left, left + cropped_width))

        def small(x):
            xp = np.zeros(padded_shape, dtype)
            xp[inside] = x[crop]
            return xp

        return small

    def large(x):
        xp = np.empty(padded_shape, dtype)
        pad_rows_kernel(np.ascontiguousarray(x[crop]), xp, top, left)
        return xp

    return large


@parallel_kernel
def swap_channels_kernel(w, wt):
    """wt[r, s, k, c] = w[r, s, c, k]. Each task fills 16 whole rows of ``wt`` (a
    contiguous, L1-sized block) from 64-byte pieces of every row of ``w`` (faster than
    square tiles or NumPy's strided copy)."""
    filter_height, filter_width, in_channels, out_channels = w.shape
    tile = 16
    k_tiles = (out_channels + tile - 1) // tile
    for task in prange(filter_height * filter_width * k_tiles):
        tap = task // k_tiles
        r = tap // filter_width
        s = tap % filter_width
        k0 = (task % k_tiles) * tile
        k1 = min(k0 + tile, out_channels)
        for c in range(in_channels):
            row = w[r, s, c]
            for k in range(k0, k1):
                wt[r, s, k, c] = row[k]


@parallel_kernel
def swap_group_channels_kernel(w, wt, many_groups):
    """Grouped (K = G·Kg): wt[r, s, kk, g·C + c] = w[r, s, c, g·Kg + kk], the channel roles
    exchanged within each group. With many groups, one task writes one row of ``wt`` and
    its innermost loop walks the groups, so consecutive accesses stay within one page of
    each array (walking a group's channels instead steps a page per access when rows are
    4 KB, and the page walks dominate); with few groups that loop is too short, and one
    task per (tap, group) moves a C × Kg block."""
    filter_height, filter_width, in_channels, out_channels = w.shape
    group_out = wt.shape[2]
    groups = out_channels // group_out
    if many_groups:
        for task in prange(filter_height * filter_width * group_out):
            r = task // (filter_width * group_out)
            s = task // group_out % filter_width
            kk = task % group_out
            source, row = w[r, s], wt[r, s, kk]
            for c in range(in_channels):
                source_row = source[c]
                for group in range(groups):
                    row[group * in_channels + c] = source_row[group * group_out + kk]
    else:
        for task in prange(filter_height * filter_width * groups):
            r = task // (filter_width * groups)
            s = task // groups % filter_width
            first = task % groups * group_out
            target = task % groups * in_channels
            source, destination = w[r, s], wt[r, s]  # integer indexing: no slice to build
            for kk in range(group_out):  # rows of ``wt`` written whole, one after another
                row = destination[kk]
                for c in range(in_channels):
                    row[target + c] = source[c, first + kk]


def swap_channels(w: np.ndarray, groups: int = 1, by_numpy: bool = False) -> np.ndarray:
    """[R, S, C, G·Kg] -> [R, S, Kg, G·C], fresh: the filter of backward-data, whose input
    channel g·C + c reduces over group g's Kg channels (one group: [R, S, K, C]). By a
    parallel kernel, or by NumPy's (slower) strided copy when ``by_numpy``."""
    height, width, in_channels, out_channels = w.shape
    if by_numpy:  # [R, S, C, G, Kg] -> [R, S, Kg, G, C]
        blocks = w.reshape(height, width, in_channels, groups, out_channels // groups)
        return np.ascontiguousarray(blocks.transpose(0, 1, 4, 3, 2)).reshape(
            height, width, out_channels // groups, groups * in_channels)
    wt = np.empty((height, width, out_channels // groups, groups * in_channels), w.dtype)
    if wt.size:
        if groups == 1:
            swap_channels_kernel(readonly(w), wt)
        else:
            many_groups = groups >= MANY_GROUPS and w[0, 0].nbytes > L1_BYTES
            swap_group_channels_kernel(readonly(w), wt, many_groups)
    return wt


@parallel_kernel
def pack_filter_kernel(w, packed, swap, brain):
    """packed[kt, r, s, c, j] = f[r, s, c, kt·KB + j] with f = w, or w with its channel
    axes swapped when ``swap``; w may hold a half type's bits, widened as they are copied
    (:func:`half.copy_widened`, ``brain``: bfloat16's). Both branches read ``w`` row by row,
    contiguously, and the branch is outside the loops (inside them it keeps LLVM from
    vectorising the copy)."""
    k_tiles, filter_height, filter_width, in_channels, tile = packed.shape
    if swap:  # one contiguous [C, KB] block of ``packed`` per task, L1-sized
        for task in prange(k_tiles * filter_height * filter_width):
            kt = task // (filter_height * filter_width)
            r = task // filter_width % filter_height
            s = task % filter_width
            block = packed[kt, r, s]
            # Half bits widened row by row first: one at a time down a column, float16's
            # conversion ran 1.5-3x slower.
            rows = half.widened_rows(w[r, s, kt * tile:(kt + 1) * tile], brain)
            for j in range(tile):
                row = rows[j]
                for c in range(in_channels):
                    block[c, j] = row[c]
    else:  # one row w[r, s, c, :] per task, cut into its K/KB tiles
        for task in prange(filter_height * filter_width * in_channels):
            r = task // (filter_width * in_channels)
            s = task // in_channels % filter_width
            c = task % in_channels
            row = w[r, s, c]
            for kt in range(k_tiles):
                half.copy_widened(packed[kt, r, s, c], row[kt * tile:(kt + 1) * tile], brain)


@dataclass(frozen=True)
class TiledFilter:
    """How the register-tiled forward kernel reads a filter (its values come separately, a
    flat array ``data``): the value of tap (r, s), input channel c and output
    channel kt·tile + j is ``data[offset + kt·tile_stride + r·row_stride + s·col_stride +
    c·channel_stride + j·lane_stride]`` (tap strides may be negative). Only
    ``packed_panels`` kernels read lanes that are not contiguous."""

    height: int
    width: int
    in_channels: int
    out_channels: int
    tile: int
    offset: int
    tile_stride: int
    row_stride: int
    col_stride: int
    channel_stride: int
    lane_stride: int = 1

    def taps(self, rows: list, cols: list) -> "TiledFilter":
        """The sub-filter of taps ``rows`` × ``cols`` (each an arithmetic progression,
        in the order the sub-filter visits them), without a copy."""
        row_step = rows[1] - rows[0] if len(rows) > 1 else 0
        col_step = cols[1] - cols[0] if len(cols) > 1 else 0
        assert rows == [rows[0] + i * row_step for i in range(len(rows))]
        assert cols == [cols[0] + i * col_step for i in range(len(cols))]
        return dataclasses.replace(
            self, height=len(rows), width=len(cols),
            offset=self.offset + rows[0] * self.row_stride + cols[0] * self.col_stride,
            row_stride=row_step * self.row_stride, col_stride=col_step * self.col_stride)


def _swapped(shape: tuple, swap: bool) -> tuple:
    """(height, width, in_channels, out_channels) as the kernel sees the filter."""
    height, width, in_channels, out_channels = shape
    return (height, width, out_channels, in_channels) if swap else shape


def packed_filter(shape: tuple, tile: int, swap: bool = False) -> TiledFilter:
    """How the kernel reads :func:`pack_filter`'s copy of a filter of ``shape``."""
    height, width, in_channels, out_channels = _swapped(shape, swap)
    return TiledFilter(height, width, in_channels, out_channels, tile, offset=0,
                       tile_stride=height * width * in_channels * tile,
                       row_stride=width * in_channels * tile, col_stride=in_channels * tile,
                       channel_stride=tile)


def strided_filter(shape: tuple, tile: int, swap: bool = False) -> TiledFilter:
    """How a kernel that packs its own panels reads a C-contiguous [R, S, C, K] filter as
    it is: each tile's values ``K`` apart, or with ``swap`` (C and K exchanged,
    backward-data) its lanes ``K`` apart and its channels contiguous."""
    height, width, in_channels, out_channels = shape
    row_stride, col_stride = width * in_channels * out_channels, in_channels * out_channels
    if swap:
        return TiledFilter(height, width, out_channels, in_channels, tile, offset=0,
                           tile_stride=tile * out_channels, row_stride=row_stride,
                           col_stride=col_stride, channel_stride=1, lane_stride=out_channels)
    return TiledFilter(height, width, in_channels, out_channels, tile, offset=0,
                       tile_stride=tile, row_stride=row_stride, col_stride=col_stride,
                       channel_stride=out_channels)


def pack_filter(w: np.ndarray, tile: int, swap: bool = False, by_numpy: bool = False,
                storage: str | None = None) -> np.ndarray:
    """[R, S, C, K] -> [K/tile, R, S, C, tile], flat (:func:`packed_filter`):
    each register tile's filter values contiguous, instead of ``K`` elements apart (for
    K = 512 that is a new page every 2 input channels). ``swap`` packs the filter with C
    and K swapped (backward-data). ``storage``: w holds that half type's bits (uint16), and
    the copy is float32, widened as it is packed (one pass, not two). Small filters are
    rearranged by NumPy (a parallel launch costs more than their copy), and any filter when
    ``by_numpy``."""
    height, width, in_channels, out_channels = _swapped(w.shape, swap)
    small = by_numpy or w.size * (4 if storage else w.itemsize) <= SMALL_TRANSPOSE_BYTES
    if storage is not None and small:
        w, storage = half.widened(w, storage), None
    if small:
        if swap:  # [R, S, K/tile, tile, C] -> [K/tile, R, S, C, tile]
            blocks = w.reshape(height, width, out_channels // tile, tile, in_channels)
            packed = blocks.transpose(2, 0, 1, 4, 3)
        else:
            blocks = w.reshape(height, width, in_channels, out_channels // tile, tile)
            packed = blocks.transpose(3, 0, 1, 2, 4)
        return np.ascontiguousarray(packed).reshape(-1)
    dtype = np.float32 if storage is not None else w.dtype
    packed = np.empty((out_channels // tile, height, width, in_channels, tile), dtype)
    if packed.size:
        pack_filter_kernel(readonly(w), packed, swap, storage == "bfloat16")
    return packed.reshape(-1)


def kernel_filter(shape: tuple, tile: int, packed_by_kernel: bool,
                  swap: bool = False) -> TiledFilter:
    """How a tiled kernel reads a filter of ``shape``: as it is when the kernel packs its
    own panels (``packed_panels``), else :func:`pack_filter`'s copy."""
    return (strided_filter if packed_by_kernel else packed_filter)(shape, tile, swap)


def readonly(array: np.ndarray) -> np.ndarray:
    """A read-only view: every kernel input has this one type, whatever the caller's
    flags, so each kernel is compiled once per dtype (not twice)."""
    view = array.view()
    view.flags.writeable = False
    return view
