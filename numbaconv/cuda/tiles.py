"""The implicit-GEMM tile kernel every CUDA primitive shares.

A primitive is four device functions over its GEMM (see :mod:`numbaconv.cuda.schedule`):
``load_a(a, geometry, row, k, group)`` and ``load_b(b, geometry, k, column)`` read one
element of the two operands (zero outside the input, which is how padding and stride holes are
handled: no padded copies); ``locate(geometry, split, row)`` turns a result row into a
tuple of three indices and ``store(out, place, column, value)`` writes one result there. :func:`tile_kernel` wraps them in the classic SIMT GEMM:

- each block owns a BM×BN output tile; per step of ``block_k`` reduction elements its
  threads stage an A tile (block_k×BM) and a B tile (block_k×BN) in shared memory;
- each thread keeps TM×TN accumulators in a ``cuda.local.array`` of constant shape
  (registers), strided over the tile by the thread grid so that neighbouring threads touch
  neighbouring columns (coalesced stores, conflict-free shared reads);
- ``blockIdx.z`` is the split of the reduction (split-K); each split covers
  ``chunk`` elements.

Tile sizes, the dtype and the load order are closure constants, so every schedule is its
own specialised kernel, compiled once per tile whatever the split-K factor or the shape.
``geometry`` is one tuple of ints (:func:`geometry_tuple`).
"""

from __future__ import annotations

import functools
from dataclasses import fields

import numpy as np
from numba import cuda

from ..geometry import ConvGeometry
from .schedule import SHARED_PAD

#: The ints of the geometry tuple the kernels receive: every field of the geometry (so a
#: new field reaches the kernels), then the output size.
GEOMETRY_FIELDS = tuple(item.name for item in fields(ConvGeometry)) + ("out_height", "out_width")
_POSITION = {name: index for index, name in enumerate(GEOMETRY_FIELDS)}

# Positions the kernels read (module-level ints are compile-time constants).
BATCH = _POSITION["batch"]
IN_HEIGHT = _POSITION["in_height"]
IN_WIDTH = _POSITION["in_width"]
IN_CHANNELS = _POSITION["in_channels"]
OUT_CHANNELS = _POSITION["out_channels"]
GROUPS = _POSITION["groups"]
FILTER_HEIGHT = _POSITION["filter_height"]
FILTER_WIDTH = _POSITION["filter_width"]
OUT_HEIGHT = _POSITION["out_height"]
OUT_WIDTH = _POSITION["out_width"]
STRIDE_H = _POSITION["stride_h"]
STRIDE_W = _POSITION["stride_w"]
DILATION_H = _POSITION["dilation_h"]
DILATION_W = _POSITION["dilation_w"]
PAD_TOP = _POSITION["pad_top"]
PAD_LEFT = _POSITION["pad_left"]


def geometry_tuple(g: ConvGeometry) -> tuple:
    return tuple(int(getattr(g, name)) for name in GEOMETRY_FIELDS)


def numba_dtype(dtype: str):
    import numba

    return {"float32": numba.float32, "float64": numba.float64}[dtype]


@cuda.jit(device=True)
def unflatten(index, middle, inner):
    """(outer, middle, inner) indices of a flat index over [outer, middle, inner]."""
    rest = index // inner
    return rest // middle, rest % middle, index % inner


@functools.lru_cache(maxsize=None)
def input_tap(channels_last: bool, dtype: str):
    """``tap(x, geometry, n, oh, ow, r, s, c)``: the input element filter tap (r, s) of
    output pixel (n, oh, ow) reads, channel c; zero in the padding."""
    read, _ = activation_access(channels_last)
    zero = np.dtype(dtype).type(0)

    @cuda.jit(device=True)
    def tap(x, geometry, n, oh, ow, r, s, c):
        height = geometry[IN_HEIGHT]
        width = geometry[IN_WIDTH]
        h = oh * geometry[STRIDE_H] - geometry[PAD_TOP] + r * geometry[DILATION_H]
        w = ow * geometry[STRIDE_W] - geometry[PAD_LEFT] + s * geometry[DILATION_W]
        if 0 <= h < height and 0 <= w < width:
            return read(x, n, h, w, c)
        return zero

    return tap


@functools.lru_cache(maxsize=None)
def activation_access(channels_last: bool):
    """``(read, write)`` of an activation tensor by (n, h, w, c) in its own layout."""
    if channels_last:
        @cuda.jit(device=True)
        def read(array, n, h, w, c):
            return array[n, h, w, c]

        @cuda.jit(device=True)
        def write(array, n, h, w, c, value):
            array[n, h, w, c] = value
    else:
        @cuda.jit(device=True)
        def read(array, n, h, w, c):
            return array[n, c, h, w]

        @cuda.jit(device=True)
        def write(array, n, h, w, c, value):
            array[n, c, h, w] = value
    return read, write


@functools.lru_cache(maxsize=None)
def tile_kernel(load_a, load_b, locate, store, block_tile, thread_tile, block_k, dtype: str,
                a_reduction_fastest: bool, b_reduction_fastest: bool, *, python: bool = False):
    """The tile kernel over three device functions. ``*_reduction_fastest``: whether
    neighbouring threads load neighbouring reduction elements of that operand (set when
    the reduction index is the contiguous one in memory, so loads coalesce).

    ``kernel[grid, threads](a, b, out, geometry, rows, columns, depth, chunk)``, ``columns``
    and ``depth`` those of one group: ``blockIdx.y`` runs over every group's column blocks,
    a block's A rows are its group's (``load_a`` is told the group), its columns and stores
    are numbered across the groups. With ``python=True`` the undecorated function is
    returned (for ``cuda.compile_ptx``)."""
    block_m, block_n = block_tile
    thread_m, thread_n = thread_tile
    thread_rows = block_m // thread_m
    thread_cols = block_n // thread_n
    threads = thread_rows * thread_cols
    a_elements = block_k * block_m
    b_elements = block_k * block_n
    # Shapes must be plain constants for the compiler (an expression is a typing error on
    # the real target, though the simulator accepts it). One padding element per row.
    a_shape = (block_k, block_m + SHARED_PAD)
    b_shape = (block_k, block_n + SHARED_PAD)
    element = numba_dtype(dtype)
    zero = np.dtype(dtype).type(0)

    def kernel(a, b, out, geometry, rows, columns, depth, chunk):
        a_tile = cuda.shared.array(a_shape, element)
        b_tile = cuda.shared.array(b_shape, element)
        acc = cuda.local.array((thread_m, thread_n), element)
        a_frag = cuda.local.array(thread_m, element)
        b_frag = cuda.local.array(thread_n, element)
        tid = cuda.threadIdx.x
        thread_row = tid // thread_cols
        thread_col = tid % thread_cols
        row_base = cuda.blockIdx.x * block_m
        column_tiles = (columns + block_n - 1) // block_n
        group = cuda.blockIdx.y // column_tiles
        col_base = (cuda.blockIdx.y % column_tiles) * block_n  # within the group
        group_first = group * columns
        split = cuda.blockIdx.z
        k_begin = split * chunk
        k_end = min(depth, k_begin + chunk)
        for i in range(thread_m):
            for j in range(thread_n):
                acc[i, j] = zero
        for k_step in range(k_begin, k_end, block_k):
            for e in range(tid, a_elements, threads):
                if a_reduction_fastest:
                    kk = e % block_k
                    mm = e // block_k
                else:
                    mm = e % block_m
                    kk = e // block_m
                value = zero
                if k_step + kk < k_end and row_base + mm < rows:
                    value = load_a(a, geometry, row_base + mm, k_step + kk, group)
                a_tile[kk, mm] = value
            for e in range(tid, b_elements, threads):
                if b_reduction_fastest:
                    kk = e % block_k
                    nn = e // block_k
                else:
                    nn = e % block_n
                    kk = e // block_n
                value = zero
                if k_step + kk < k_end and col_base + nn < columns:
                    value = load_b(b, geometry, k_step + kk, group_first + col_base + nn)
                b_tile[kk, nn] = value
            cuda.syncthreads()
            for kk in range(block_k):
                for i in range(thread_m):
                    a_frag[i] = a_tile[kk, thread_row + i * thread_rows]
                for j in range(thread_n):
                    b_frag[j] = b_tile[kk, thread_col + j * thread_cols]
                for i in range(thread_m):
                    for j in range(thread_n):
                        acc[i, j] += a_frag[i] * b_frag[j]
            cuda.syncthreads()
        for i in range(thread_m):
            row = row_base + thread_row + i * thread_rows
            if row < rows:
                # Decode the row once, not per element: the smaller loop body is what lets
                # the compiler unroll it and keep ``acc`` in registers (else ptxas gives it a
                # local-memory stack).
                place = locate(geometry, split, row)
                for j in range(thread_n):
                    column = col_base + thread_col + j * thread_cols
                    if column < columns:
                        store(out, place, group_first + column, acc[i, j])

    return kernel if python else cuda.jit(kernel)


@functools.lru_cache(maxsize=None)
def split_sum_kernel(*, python: bool = False):
    """``out[i] = Σ_s partial[s, i]`` in split order: the deterministic second pass of a
    split reduction. ``kernel[blocks, threads](partial, out)``, both C-contiguous."""

    def kernel(partial, out):
        i = cuda.grid(1)
        if i < out.shape[0]:
            total = partial[0, i]
            for s in range(1, partial.shape[0]):
                total += partial[s, i]
            out[i] = total

    return kernel if python else cuda.jit(kernel)
