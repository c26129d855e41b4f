"""The GEMM family: each primitive as one NumPy (BLAS) matmul.

With ``cols[m, r, s, c] = x[n, oh·sh + r·dh − pt, ow·sw + s·dw − pl, c]`` (zero outside the
input), ``m = (n, oh, ow)``:

- forward:          ``out[M, K] = cols[M, RSC] @ w[RSC, K]``
- backward-filter:  ``dw[RSC, K] = cols[M, RSC]ᵀ @ dy[M, K]``
- backward-data:    ``dcols[M, RSC] = dy[M, K] @ w[RSC, K]ᵀ``, then each input pixel
  gathers the ``dcols`` entries that came from it (col2im, no atomics).

A 1×1 filter without padding needs no ``cols``: it is the input itself (a strided view when
the stride is > 1). Workspace: ``N·OH·OW·R·S·C`` elements for ``cols``/``dcols``
(:func:`numbaconv.schedule.workspace_bytes`).
"""

import numpy as np
from numba import prange

from ..geometry import ConvGeometry
from ..schedule import Schedule, channel_block_for, is_one_by_one
from ._jit import parallel_kernel, reader_of, valid_range
from .layout import pack_filter, readonly


@parallel_kernel
def im2col(x, cols, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left):
    """x [N, H, W, C] -> cols [N, OH, OW, R, S, C], zeros where a tap falls outside x
    (explicit channel loops: a slice copy per pixel cost more than the copy when C is 3)."""
    batch, in_height, in_width, in_channels = x.shape
    out_height, out_width = cols.shape[1], cols.shape[2]
    filter_height, filter_width = cols.shape[3], cols.shape[4]
    for row in prange(batch * out_height):
        n = row // out_height
        oh = row % out_height
        for ow in range(out_width):
            for r in range(filter_height):
                ih = oh * stride_h + r * dilation_h - pad_top
                for s in range(filter_width):
                    iw = ow * stride_w + s * dilation_w - pad_left
                    if ih < 0 or ih >= in_height or iw < 0 or iw >= in_width:
                        for c in range(in_channels):
                            cols[n, oh, ow, r, s, c] = 0
                    else:
                        for c in range(in_channels):
                            cols[n, oh, ow, r, s, c] = x[n, ih, iw, c]


@parallel_kernel
def col2im(dcols, dx, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left):
    """dcols [N, OH, OW, R, S, C] -> dx [N, H, W, C]: each input pixel sums the entries of
    the (output pixel, tap) pairs that read it, taps in (r, s) order.

    Per input row, tap by tap, the output columns that reach the row form one range
    (:func:`valid_range`): no per-pixel search, and explicit channel loops (a slice add per
    pixel cost more than the addition itself when C is 3)."""
    batch, in_height, in_width, in_channels = dx.shape
    out_height, out_width = dcols.shape[1], dcols.shape[2]
    filter_height, filter_width = dcols.shape[3], dcols.shape[4]
    for row in prange(batch * in_height):
        n = row // in_height
        ih = row % in_height
        dx[n, ih] = 0
        for r in range(filter_height):
            oh = reader_of(ih, pad_top, r, dilation_h, stride_h, out_height)
            if oh < 0:
                continue
            for s in range(filter_width):
                offset = s * dilation_w - pad_left
                first, stop = valid_range(offset, stride_w, in_width, out_width)
                for ow in range(first, stop):
                    iw = ow * stride_w + offset
                    for c in range(in_channels):
                        dx[n, ih, iw, c] += dcols[n, oh, ow, r, s, c]


def _pixels(x: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """The [M, C] matrix of input pixels a 1×1 unpadded filter reads."""
    view = x[:, ::g.stride_h, ::g.stride_w][:, :g.out_height, :g.out_width]
    return np.ascontiguousarray(view).reshape(-1, g.in_channels)


def _cols(x: np.ndarray, g: ConvGeometry) -> np.ndarray:
    """The [M, R·S·C] im2col matrix."""
    if is_one_by_one(g):
        return _pixels(x, g)
    cols = np.empty((g.batch, g.out_height, g.out_width, g.filter_height, g.filter_width,
                     g.in_channels), x.dtype)
    im2col(readonly(x), cols, g.stride_h, g.stride_w, g.dilation_h, g.dilation_w, g.pad_top,
           g.pad_left)
    return cols.reshape(cols.shape[0] * g.out_height * g.out_width, -1)


def matmul_of(schedule: Schedule):
    """The matmul a gemm schedule runs: NumPy's BLAS (``im2col``) or the register-tiled
    kernel (``im2col_tiled``, :func:`tiled_matmul`)."""
    return np.matmul if schedule.loop_order == "im2col" else tiled_matmul


def forward(x: np.ndarray, w: np.ndarray, g: ConvGeometry, matmul=np.matmul) -> np.ndarray:
    """x [N, H, W, C], w [R, S, C, K] -> [N, OH, OW, K] (``matmul``, here and below: see
    :func:`matmul_of`)."""
    out = matmul(_cols(x, g), w.reshape(-1, g.out_channels))
    return np.ascontiguousarray(out).reshape(g.output_shape)


def backward_filter(x: np.ndarray, dy: np.ndarray, g: ConvGeometry,
                    matmul=np.matmul) -> np.ndarray:
    """x [N, H, W, C], dy [N, OH, OW, K] -> [R, S, C, K]."""
    dw = matmul(_cols(x, g).T, dy.reshape(-1, g.out_channels))
    return np.ascontiguousarray(dw.reshape(g.filter_shape))


def backward_data(dy: np.ndarray, w: np.ndarray, g: ConvGeometry,
                  matmul=np.matmul) -> np.ndarray:
    """dy [N, OH, OW, K], w [R, S, C, K] -> [N, H, W, C]."""
    dcols = np.ascontiguousarray(
        matmul(dy.reshape(-1, g.out_channels), w.reshape(-1, g.out_channels).T))
    if is_one_by_one(g):
        if (g.out_height, g.out_width) == (g.in_height, g.in_width):  # stride 1: every pixel
            return dcols.reshape(g.input_shape)
        dx = np.zeros(g.input_shape, dy.dtype)
        dx[:, ::g.stride_h, ::g.stride_w][:, :g.out_height, :g.out_width] = dcols.reshape(
            g.batch, g.out_height, g.out_width, g.in_channels)
        return dx
    dx = np.empty(g.input_shape, dy.dtype)
    col2im(dcols.reshape(g.batch, g.out_height, g.out_width, g.filter_height, g.filter_width,
                         g.in_channels),
           dx, g.stride_h, g.stride_w, g.dilation_h, g.dilation_w, g.pad_top, g.pad_left)
    return dx


def tiled_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a [M, L] @ b [L, N] on the register-tiled forward kernel, as a 1×1 convolution of an
    [1, M, 1, L] image, on Numba's threads. Why not BLAS: OpenBLAS's worker threads spin
    for about 0.1 s after a matmul and keep Numba's threads off the cores; one BLAS call in
    a pass through ResNet-50's layers slowed the layers after it by 70 ms in all.
    N is padded with zero columns to whole register tiles."""
    from .forward import Phase, run_tiled  # forward uses this module

    rows, length = a.shape
    columns = b.shape[1]
    tile = (5, 16 * 4 // a.dtype.itemsize)
    padded = -(-columns // tile[1]) * tile[1]
    filter_ = np.zeros((1, 1, length, padded), a.dtype)
    filter_[0, 0, :, :columns] = b
    out = np.empty((1, rows, 1, padded), a.dtype)
    schedule = Schedule(algorithm="tiled", loop_order="pixel_tiles_outer", register_tile=tile,
                        channel_block=channel_block_for(padded, rows, multiple=tile[1]))
    run_tiled(np.ascontiguousarray(a).reshape(1, rows, 1, length), out,
              [Phase(pack_filter(filter_, tile[1]), (rows, 1))], schedule)
    return out.reshape(rows, padded)[:, :columns]
