"""The gemm family: im2col (or, for a 1×1 filter without padding, the input itself) and
one matmul per call.

With ``cols[m, r, s, c] = x[n, oh·sh + r·dh − pt, ow·sw + s·dw − pl, c]`` (zero outside the
input), ``m = (n, oh, ow)``:

- forward:          ``out[M, K] = cols[M, RSC] @ w[RSC, K]``
- backward-filter:  ``dw[RSC, K] = cols[M, RSC]ᵀ @ dy[M, K]``
- backward-data:    ``dcols[M, RSC] = dy[M, K] @ w[RSC, K]ᵀ``, then each input pixel
  gathers the ``dcols`` entries that came from it (col2im, no atomics).

Knob (:class:`GemmSchedule`): ``matmul``, the kernel that multiplies: ``tiled``, the tiled
family's forward kernel as a 1×1 convolution (on Numba's threads), or ``blas``, NumPy's
matmul (whose worker threads keep spinning after it and slow the Numba kernels that
follow: see the README's *BLAS and Numba's threads*). The task split is the matmul's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numba import prange

from ..family import Family, run_per_primitive
from ..geometry import ConvGeometry
from ..schedule import Schedule
from . import tiled
from .jit import parallel_kernel, reader_of, valid_range
from .layout import readonly

MATMULS = ("tiled", "blas")
#: The register tile of the tiled matmul: 5 rows × one 64-byte vector of columns.
MATMUL_TILE_ROWS = 5
MATMUL_TILE_BYTES = 64


@dataclass(frozen=True)
class GemmSchedule(Schedule):
    """The gemm family's knob (see the module docstring)."""

    algorithm: ClassVar[str] = "gemm"
    matmul: str = "tiled"

    def __post_init__(self):
        self._require_one_of("matmul", MATMULS)

    @classmethod
    def migrate(cls, data: dict) -> dict:
        """Before 2026-12 the matmul was a loop order: ``im2col`` (BLAS), ``im2col_tiled``."""
        if "loop_order" in data and "matmul" not in data:
            data = dict(data, matmul={"im2col": "blas", "im2col_tiled": "tiled"}.get(
                data["loop_order"], data["loop_order"]))
        return data


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
    if g.is_one_by_one:
        return _pixels(x, g)
    cols = np.empty((g.batch, g.out_height, g.out_width, g.filter_height, g.filter_width,
                     g.in_channels), x.dtype)
    im2col(readonly(x), cols, g.stride_h, g.stride_w, g.dilation_h, g.dilation_w, g.pad_top,
           g.pad_left)
    return cols.reshape(cols.shape[0] * g.out_height * g.out_width, -1)


def tiled_matmul_tile(itemsize: int) -> tuple[int, int]:
    """The register tile :func:`tiled_matmul` runs."""
    return MATMUL_TILE_ROWS, MATMUL_TILE_BYTES // itemsize


def _padded_columns(columns: int, itemsize: int) -> int:
    tile_columns = tiled_matmul_tile(itemsize)[1]
    return -(-columns // tile_columns) * tile_columns


def tiled_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a [M, L] @ b [L, N] on the tiled family's forward kernel, as a 1×1 convolution of an
    [1, M, 1, L] image, on Numba's threads. N is padded with zero columns to whole register
    tiles; the result is a view of the padded product."""
    rows, length = a.shape
    columns = b.shape[1]
    tile = tiled_matmul_tile(a.dtype.itemsize)
    padded = _padded_columns(columns, a.dtype.itemsize)
    filter_ = np.zeros((1, 1, length, padded), a.dtype)
    filter_[0, 0, :, :columns] = b
    g = ConvGeometry(batch=1, in_height=rows, in_width=1, in_channels=length,
                     out_channels=padded, filter_height=1, filter_width=1)
    schedule = tiled.FAMILY.fit(tiled.TiledSchedule(loop_order="pixel_tiles_outer",
                                                    register_tile=tile), "forward", g,
                                a.dtype.itemsize)
    out = tiled.FAMILY.run("forward", (np.ascontiguousarray(a).reshape(1, rows, 1, length),
                                       filter_), g, schedule)
    return out.reshape(rows, padded)[:, :columns]


def _matmul(schedule: GemmSchedule):
    return np.matmul if schedule.matmul == "blas" else tiled_matmul


def _forward(x, w, g: ConvGeometry, schedule: GemmSchedule) -> np.ndarray:
    out = _matmul(schedule)(_cols(x, g), w.reshape(-1, g.out_channels))
    return np.ascontiguousarray(out).reshape(g.output_shape)


def _backward_filter(x, dy, g: ConvGeometry, schedule: GemmSchedule) -> np.ndarray:
    dw = _matmul(schedule)(_cols(x, g).T, dy.reshape(-1, g.out_channels))
    return np.ascontiguousarray(dw.reshape(g.filter_shape))


def _backward_data(dy, w, g: ConvGeometry, schedule: GemmSchedule) -> np.ndarray:
    dcols = np.ascontiguousarray(
        _matmul(schedule)(dy.reshape(-1, g.out_channels), w.reshape(-1, g.out_channels).T))
    if g.is_one_by_one:
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




# --- what the runs above allocate -----------------------------------------------------

def _cols_elements(g: ConvGeometry) -> int:
    """:func:`_cols`: the im2col matrix, or for a 1×1 filter a copy of the pixels it reads
    when they are strided (none at stride 1)."""
    pixels = g.batch * g.out_height * g.out_width
    if g.is_one_by_one:
        return pixels * g.in_channels if (g.stride_h, g.stride_w) != (1, 1) else 0
    return pixels * g.filter_height * g.filter_width * g.in_channels


def _product_elements(rows: int, length: int, columns: int, schedule: GemmSchedule,
                      itemsize: int, a_contiguous: bool, product_is_result: bool) -> int:
    """What one matmul allocates beyond its operands and the result: for ``tiled``, the
    zero-padded and the packed copy of b, a contiguous copy of a, the padded product and
    its cut to ``columns``; the product itself unless it is the result."""
    if schedule.matmul == "blas":
        return 0 if product_is_result else rows * columns
    padded = _padded_columns(columns, itemsize)
    elements = 2 * length * padded + (0 if a_contiguous else rows * length)
    if padded != columns:
        elements += rows * padded
    return elements + (0 if product_is_result else rows * columns)


def workspace_bytes(primitive: str, g: ConvGeometry, schedule: GemmSchedule,
                    itemsize: int) -> int:
    pixels = g.batch * g.out_height * g.out_width
    taps = g.filter_height * g.filter_width * g.in_channels
    if primitive == "forward":
        product = _product_elements(pixels, taps, g.out_channels, schedule, itemsize, True, True)
    elif primitive == "backward_filter":
        product = _product_elements(taps, pixels, g.out_channels, schedule, itemsize, False, True)
    else:
        whole = g.is_one_by_one and (g.out_height, g.out_width) == (g.in_height, g.in_width)
        product = _product_elements(pixels, g.out_channels, taps, schedule, itemsize, True, whole)
    cols = _cols_elements(g) if primitive != "backward_data" else 0
    return (cols + product) * itemsize


def illegal_reason(primitive: str, g: ConvGeometry, schedule: GemmSchedule,
                   itemsize: int) -> str | None:
    if g.groups > 1:
        return "grouped convolution: one matmul spans every channel"
    return None


def fit(schedule: GemmSchedule, primitive: str, g: ConvGeometry, itemsize: int) -> GemmSchedule:
    return schedule


def candidates(primitive: str, g: ConvGeometry, itemsize: int, section: dict, machine) -> list:
    return [GemmSchedule(matmul=matmul) for matmul in section.get("matmul", [])]


#: Each run takes C-contiguous NHWC / HWIO operands, in the primitive table's order.
FAMILY = Family("gemm", GemmSchedule, candidates, illegal_reason, workspace_bytes, fit,
                run_per_primitive(_forward, _backward_data, _backward_filter))
