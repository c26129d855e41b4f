"""The Winograd family's transforms: generated kernels for the data, dy and output tiles,
loop kernels for the filter and (backward-filter) back to it.

The tile transforms are the 1-D transform of :mod:`.transforms` applied to the columns of a
tile, then to its rows, each over ``lanes`` consecutive channels at a time as one vector
(:mod:`numbaconv.cpu.simd`; the arithmetic is rendered with the matrices' entries as
constants, zeros skipped). Tiles are laid out tile by tile,
``[tiles, α², channels]``, the layout the register-tiled kernel reads as pixels
(:func:`numbaconv.cpu.winograd.products_launcher`).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .. import layout
from ..codegen import (HELPER_DECORATOR, KERNEL_DECORATOR, KernelParameters, Source,
                       load_kernel, preamble, task_loop)
from ..jit import helper, parallel_kernel
from ..vector_width import HINTS
from .transforms import Transform, transform

#: ``xp`` is writable (a private padded copy, never written): the line function then has
#: one specialisation for both passes (read xp / write v, and v in place), one compilation.
DATA_PARAMETERS = KernelParameters(
    ("xp", "out"), ("v", "out"), ("first_tile", "int"), ("tiles", "int"), ("tiles_h", "int"),
    ("tiles_w", "int"), ("padded_height", "int"), ("padded_width", "int"), ("channels", "int"),
    ("tile_stride", "int"), ("point_stride", "int"), ("tasks", "int"))
OUTPUT_PARAMETERS = KernelParameters(
    ("products", "out"), ("out", "out"), ("nonfinite", "out"), ("first_tile", "int"),
    ("tiles", "int"), ("tiles_h", "int"), ("tiles_w", "int"), ("out_height", "int"),
    ("out_width", "int"), ("channels", "int"), ("tile_stride", "int"), ("point_stride", "int"),
    ("tasks", "int"))


def _terms(row: tuple, operands: list[str]) -> list[tuple[bool, float, str]]:
    """``(negative, magnitude, operand)`` of each nonzero entry of ``row``, in order."""
    return [(coefficient < 0, float(abs(coefficient)), operand)
            for coefficient, operand in zip(row, operands) if coefficient != 0]


def _combination(row: tuple, operands: list[str]) -> str:
    """``Σ row[i]·operands[i]`` as source, zero entries skipped, ±1 as a sign."""
    (negative, magnitude, operand), *rest = _terms(row, operands)

    def term(magnitude, operand):
        return operand if magnitude == 1 else f"{magnitude!r} * {operand}"

    return (("-" if negative else "") + term(magnitude, operand)
            + "".join(f" {'-' if negative else '+'} {term(magnitude, operand)}"
                      for negative, magnitude, operand in rest))


def _vector_combination(row: tuple, operands: list[str]) -> str:
    """:func:`_combination` on vectors (:mod:`numbaconv.cpu.simd`), evaluated in the same
    order with the same promotions: the same value in every lane."""
    (negative, magnitude, operand), *rest = _terms(row, operands)
    if magnitude != 1:
        expression = f"scale({-magnitude if negative else magnitude!r}, {operand})"
    else:
        expression = f"negate({operand})" if negative else operand
    for negative, magnitude, operand in rest:
        term = operand if magnitude == 1 else f"scale({magnitude!r}, {operand})"
        expression = f"{'subtract' if negative else 'add'}({expression}, {term})"
    return expression


def _line_function(src: Source, name: str, matrix: tuple, lanes: int, vector_bits: int):
    """``name(a, first, step, b, target, target_step)``: the 1-D transform of ``lanes``
    consecutive channels, ``b[target + i·target_step + j] = Σ_k matrix[i][k] · a[first +
    k·step + j]``, every input loaded before any output is stored (so that ``b`` may be
    ``a``, in place); vectors of ``lanes`` elements, or one scalar. Its own function so
    that the parallel kernels' bodies stay small (Numba's parallel passes take far longer
    over long straight-line bodies)."""
    inputs = len(matrix[0])
    src("", "", HELPER_DECORATOR)
    with src.block(f"def {name}(a, first, step, b, target, target_step):"):
        src(f"{HINTS[vector_bits]}()")
        if lanes == 1:
            src(*(f"x{k} = a[first + uint64({k}) * step]" for k in range(inputs)))
            src(*(f"b[target + uint64({i}) * target_step] = "
                  + _combination(row, [f"x{k}" for k in range(inputs)])
                  for i, row in enumerate(matrix)))
            return
        src(*(f"x{k} = load(a, first + uint64({k}) * step)" for k in range(inputs)))
        src(*(f"store(b, target + uint64({i}) * target_step, "
              + _vector_combination(row, [f"x{k}" for k in range(inputs)]) + ")"
              for i, row in enumerate(matrix)))


def _channel_blocks(src: Source, lanes: int, call):
    """``call(function suffix)`` over the channels ``lanes`` at a time (``cu`` the first),
    then the rest one at a time."""
    src(f"whole = channels - channels % {lanes}")
    with src.block(f"for c0 in range(0, whole, {lanes}):"):
        src("cu = uint64(c0)", call(""))
    if lanes > 1:
        with src.block("for c0 in range(whole, channels):"):
            src("cu = uint64(c0)", call("_1"))


def _tile_origin(src: Source, m: int):
    src("tile = first_tile + t",
        "n = tile // (tiles_h * tiles_w)",
        f"row0 = tile // tiles_w % tiles_h * {m}",
        f"col0 = tile % tiles_w * {m}",
        "slot = uint64(t * tile_stride)")


def _module(src: Source, doc: str, dtype: str, vector_bits: int, matrix: tuple, lanes: int,
            extra=None):
    """The preamble, the line functions (``line``: ``lanes`` lanes, ``line_1``: one) and
    ``extra()``'s helpers, then the kernel's decorator."""
    preamble(src, doc, dtype, vector_bits, decorator=False, lanes=lanes, arithmetic=True)
    _line_function(src, "line", matrix, lanes, vector_bits)
    if lanes > 1:
        _line_function(src, "line_1", matrix, 1, vector_bits)
    if extra is not None:
        extra()
    src("", "", KERNEL_DECORATOR)


#: The tiles the input transforms make, by name: (the 1-D matrix of a transform, what it
#: computes). ``data``: an α×α tile of the input, Bᵀ d B; ``gradient``: an m×m tile of dy,
#: A dy Aᵀ (backward-filter's second operand; A is the output transform's transpose).
INPUT_TRANSFORMS = {
    "data": (lambda t: t.data, "Bᵀ d B"),
    "gradient": (lambda t: tuple(zip(*t.output)), "A dy Aᵀ"),
}


def render_input(m: int, which: str, dtype: str, vector_bits: int, lanes: int) -> str:
    t = transform(m)
    alpha = t.alpha
    matrix, formula = INPUT_TRANSFORMS[which]
    matrix = matrix(t)
    side = len(matrix[0])  # the tile's side in xp: α (data) or m (dy)
    src = Source()
    _module(src, f"Generated by numbaconv.cpu.winograd.render_input({m}, {which!r}, "
                 f"{dtype!r}, {vector_bits}, {lanes}): F({m}, 3) {which} tiles, {formula}.",
            dtype, vector_bits, matrix, lanes)
    with src.block(DATA_PARAMETERS.header()):
        src('"""xp [N, Hp, Wp, C] (padded so that every tile lies inside) -> v [tiles, α²,',
            f"    C], α = {alpha}: the tiles first_tile … first_tile + tiles − 1 of the",
            f"    (n, tile row, tile column) grid, tile (i, j) reading {side}×{side} pixels of xp",
            "    from (i·m, j·m). Columns first (into v), then rows (in place).\"\"\"",
            "row_step = uint64(padded_width * channels)",
            "pixel_step = uint64(channels)",
            "point_step = uint64(point_stride)",
            f"point_row_step = uint64({alpha} * point_stride)")
        with task_loop(src, "tasks", vector_bits, "tiles_task", DATA_PARAMETERS, dtype,
                       {"row_step": "uint", "pixel_step": "uint", "point_step": "uint",
                        "point_row_step": "uint"}):
            with src.block("for t in range(task * tiles // tasks, (task + 1) * tiles // tasks):"):
                _tile_origin(src, m)
                src("corner = uint64(((n * padded_height + row0) * padded_width + col0)"
                    " * channels)")
                with src.block(f"for b in range({side}):"):
                    src("column = corner + uint64(b) * pixel_step",
                        "target = slot + uint64(b) * point_step")
                    _channel_blocks(src, lanes, lambda suffix: (
                        f"line{suffix}(xp, column + cu, row_step, v, target + cu, point_row_step)"))
                with src.block(f"for i in range({alpha}):"):
                    src("row = slot + uint64(i) * point_row_step")
                    _channel_blocks(src, lanes, lambda suffix: (
                        f"line{suffix}(v, row + cu, point_step, v, row + cu, point_step)"))
    return src.text()


def _check_function(src: Source, lanes: int, dtype: str, vector_bits: int):
    """``check(a, first, count)``: Σ (a[i] − a[i]) over ``count`` elements from ``first``,
    0 unless one of them is NaN or ±Inf (a vector of ``lanes`` sums, then one by one)."""
    src("", "", HELPER_DECORATOR)
    with src.block("def check(a, first, count):"):
        src(f"{HINTS[vector_bits]}()")
        src(f"sums = broadcast({dtype}(0))",
            f"whole = count - count % {lanes}")
        with src.block(f"for i in range(0, whole, {lanes}):"):
            src("values = load(a, first + uint64(i))",
                "sums = add(sums, subtract(values, values))")
        src("total = lanes_sum(sums)")
        with src.block("for i in range(whole, count):"):
            src("total += a[first + uint64(i)] - a[first + uint64(i)]")
        src("return total")


def render_output(m: int, dtype: str, vector_bits: int, lanes: int) -> str:
    t = transform(m)
    alpha = t.alpha
    src = Source()
    _module(src, f"Generated by numbaconv.cpu.winograd.render_output({m}, {dtype!r}, "
                 f"{vector_bits}, {lanes}): F({m}, 3) output tiles, Aᵀ M A.", dtype,
            vector_bits, t.output, lanes, extra=lambda: _check_function(src, lanes, dtype,
                                                                         vector_bits))
    with src.block(OUTPUT_PARAMETERS.header()):
        src('"""products [tiles, α², K] (the transformed-domain products of the tiles',
            f"    first_tile …, α = {alpha}) -> out [N, OH, OW, K]: each tile's m×m outputs",
            "    that lie inside. Columns first (in place), then rows: into out, or for a tile",
            "    that sticks out on the right into a row of scratch, then its part inside.",
            "",
            "    nonfinite[task] is 0 unless an output the task stored is NaN or ±Inf: then",
            "    the caller computes the call another way (a non-finite value spreads over",
            "    its whole tile here, where a direct convolution keeps it to the windows that",
            "    hold it).\"\"\"",
            "pixel_step = uint64(channels)",
            "point_step = uint64(point_stride)",
            f"point_row_step = uint64({alpha} * point_stride)")
        with task_loop(src, "tasks", vector_bits, "tiles_task", OUTPUT_PARAMETERS, dtype,
                       {"pixel_step": "uint", "point_step": "uint", "point_row_step": "uint"}):
            src(f"check_sum = {dtype}(0)",
                f"scratch = empty({m} * channels, {dtype})")
            with src.block("for t in range(task * tiles // tasks, (task + 1) * tiles // tasks):"):
                _tile_origin(src, m)
                src(f"columns = min({m}, out_width - col0)")
                with src.block(f"for b in range({alpha}):"):
                    src("column = slot + uint64(b) * point_step")
                    _channel_blocks(src, lanes, lambda suffix: (
                        f"line{suffix}(products, column + cu, point_row_step, products,"
                        " column + cu, point_row_step)"))
                with src.block(f"for i in range(min({m}, out_height - row0)):"):
                    src("row = slot + uint64(i) * point_row_step",
                        "pixel = uint64(((n * out_height + row0 + i) * out_width + col0)"
                        " * channels)")
                    with src.block(f"if columns == {m}:"):
                        _channel_blocks(src, lanes, lambda suffix: (
                            f"line{suffix}(products, row + cu, point_step, out, pixel + cu,"
                            " pixel_step)"))
                    with src.block("else:"):
                        _channel_blocks(src, lanes, lambda suffix: (
                            f"line{suffix}(products, row + cu, point_step, scratch, cu,"
                            " pixel_step)"))
                        with src.block("for c in range(columns * channels):"):
                            src("out[pixel + uint64(c)] = scratch[c]")
                    src("check_sum += check(out, pixel, columns * channels)")
            src("nonfinite[task] = check_sum")
    return src.text()


def input_kernel(m: int, which: str, dtype: str, vector_bits: int, lanes: int):
    """The generated kernel of :func:`render_input`."""
    return load_kernel(f"winograd_{which}_m{m}_{dtype}_v{vector_bits}_l{lanes}",
                       lambda: render_input(m, which, dtype, vector_bits, lanes),
                       DATA_PARAMETERS, dtype)


def output_kernel(m: int, dtype: str, vector_bits: int, lanes: int):
    return load_kernel(f"winograd_output_m{m}_{dtype}_v{vector_bits}_l{lanes}",
                       lambda: render_output(m, dtype, vector_bits, lanes), OUTPUT_PARAMETERS,
                       dtype)


#: u's values a filter-transform task takes at a time: a block of channels of one column
#: tile, whose run of u at each point is contiguous (4 KB of float32), written one after
#: another; a block of more channels took longer where the columns were wide (its float64
#: copy out of L1) and, on small filters, left one task a thread or none.
FILTER_BLOCK_VALUES = 1024


@helper
def filter_block_channels(tile):
    """The channels of a filter-transform task's block for column tiles of ``tile``."""
    return max(1, FILTER_BLOCK_VALUES // tile)


@parallel_kernel
def filter_kernel(w, g, u, rotate):
    """w [3, 3, C, K] -> u [α², K/KB, C, KB]: u[ξ·α + ν, kt, c, j] = Σ_{r,s} g[ξ, r]
    g[ν, s] f[r, s, c, kt·KB + j], summed in float64 (the filter's transform is the only one
    with inexact entries), f = w, or with ``rotate`` w turned by 180° with its channel axes
    swapped (then u is [α², C/KB, K, KB]). One task per column tile kt and block of
    :func:`filter_block_channels` channels, a thread's tasks consecutive blocks of one kt,
    so that u is written page after page (tasks of one channel each wrote a 64-byte piece
    of every page, and backward-data's ran about twice as long: measurements, 2026-12-07,
    nineteenth session). Each block of f is copied to float64 first (for ``rotate``,
    swapping the channel axes of a piece of w in cache, not the whole filter through
    memory), so that the sums run along contiguous blocks."""
    alpha = g.shape[0]
    _, column_tiles, channels, tile = u.shape
    block = filter_block_channels(tile)
    blocks = (channels + block - 1) // block
    for task in prange(column_tiles * blocks):
        kt, c0 = task // blocks, task % blocks * block
        f = np.empty((3, 3, block, tile))  # f[r, s, c0 + i, kt·KB + j]
        columns = np.empty((3, block, tile))  # Σ_r g[ξ, r] f[r, s, c0 + i, ·] of one ξ
        count = min(block, channels - c0)
        for r in range(3):
            for s in range(3):
                # Views from 0: an offset index keeps Numba's wrap-around in the loop.
                if rotate:
                    for j in range(tile):
                        row = w[2 - r, 2 - s, kt * tile + j, c0:c0 + count]
                        for i in range(count):
                            f[r, s, i, j] = np.float64(row[i])
                else:
                    for i in range(count):
                        row = w[r, s, c0 + i, kt * tile:(kt + 1) * tile]
                        target = f[r, s, i]
                        for j in range(tile):
                            target[j] = np.float64(row[j])
        size = count * tile  # each block one loop along its contiguous values
        for xi in range(alpha):
            g0, g1, g2 = g[xi, 0], g[xi, 1], g[xi, 2]
            for s in range(3):
                first = f[0, s].reshape(-1)[:size]
                second = f[1, s].reshape(-1)[:size]
                third = f[2, s].reshape(-1)[:size]
                target = columns[s].reshape(-1)
                for v in range(size):
                    target[v] = g0 * first[v] + g1 * second[v] + g2 * third[v]
            one = columns[0].reshape(-1)[:size]
            two = columns[1].reshape(-1)[:size]
            three = columns[2].reshape(-1)[:size]
            for nu in range(alpha):
                h0, h1, h2 = g[nu, 0], g[nu, 1], g[nu, 2]
                target = u[xi * alpha + nu, kt, c0:c0 + count].reshape(-1)
                for v in range(size):
                    target[v] = h0 * one[v] + h1 * two[v] + h2 * three[v]


def transformed_filter(w: np.ndarray, t: Transform, tile: int, rotate: bool,
                       filter_matrix: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The filter in the transformed domain, [α², K/tile, C, tile] (see :func:`filter_kernel`),
    written into ``out`` (flat, as many elements); with ``rotate``, of w turned by 180° with
    its channel axes swapped (backward-data: C and K are w's output and input channels).
    ``filter_matrix``: G as float64 (``t.floats("filter")``), made once by the caller."""
    channels, columns = (w.shape[3], w.shape[2]) if rotate else (w.shape[2], w.shape[3])
    u = out.reshape(t.alpha ** 2, columns // tile, channels, tile)
    filter_kernel(layout.readonly(w), filter_matrix, u, rotate)
    return u


@parallel_kernel
def filter_gradient_kernel(sums, g, dw):
    """sums [α², C, K] (point p's: Σ over tiles of the data tiles' products with dy's)
    -> dw [3, 3, C, K] = Gᵀ sums G per (c, k): dw[r, s, c, k] =
    Σ_{ξ,ν} g[ξ, r] g[ν, s] sums[ξ·α + ν, c, k], summed in float64."""
    alpha = g.shape[0]
    in_channels, out_channels = dw.shape[2], dw.shape[3]
    for c in prange(in_channels):
        rows = np.zeros((alpha, 3, out_channels))  # Σ_ν g[ν, s] sums[c, ξ, ν, :]
        for xi in range(alpha):
            for nu in range(alpha):
                point = sums[xi * alpha + nu, c]
                for s in range(3):
                    coefficient = g[nu, s]
                    if coefficient != 0:
                        target = rows[xi, s]
                        for k in range(out_channels):
                            target[k] += coefficient * np.float64(point[k])
        total = np.empty(out_channels)
        for r in range(3):
            for s in range(3):
                total[:] = 0
                for xi in range(alpha):
                    coefficient = g[xi, r]
                    if coefficient != 0:
                        source = rows[xi, s]
                        for k in range(out_channels):
                            total[k] += coefficient * source[k]
                target = dw[r, s, c]
                for k in range(out_channels):
                    target[k] = total[k]


def filter_gradient(sums: np.ndarray, t: Transform, filter_shape: tuple) -> np.ndarray:
    """The filter gradient [3, 3, C, K] from the transformed-domain sums (see
    :func:`filter_gradient_kernel`)."""
    dw = np.empty(filter_shape, sums.dtype)
    filter_gradient_kernel(layout.readonly(sums), np.array(t.floats("filter")), dw)
    return dw
