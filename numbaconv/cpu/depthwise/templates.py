"""The depthwise family's ``vector_tiles`` kernels: generated, with the accumulators in
registers as explicit vectors of channels (:mod:`numbaconv.cpu.simd`). Channel multiplier 1;
the sweep also groups of ``G`` channels in and out (``w[r, s, g, c]``, HWIO): per input
channel g of a group, one shuffle spreads channel g of every group in the operand's vector
over its group's lanes (``spread{g}``), then one multiply-add with the filter's vector.

- ``sweep`` (forward and backward-data): a tile of ``tile_pixels``
  consecutive result pixels of one row × one vector of channels sums every tap in
  registers, each tap's weights loaded once per tile; a tile's channel vectors take
  turns, so that its operand pixels stay in L1. Per result element:
  ``result[n, i, j, c] = Σ_{r,s} operand[n, i·sh + r·th + oh, j·sw + s·tw + ow, c] ·
  w[r, s, c]``, taps (r, s) in that order, positions outside the operand skipped: forward is
  ``(th, tw) = dilations``, ``(oh, ow) = −(pad_top, pad_left)``; backward-data at stride 1
  the gather ``dx[ih, iw] = Σ dy[ih + pt − r·dh, iw + pl − s·dw] · w[r, s]``, so
  ``(th, tw) = −dilations`` and ``(oh, ow) = (pad_top, pad_left)``; at larger strides, per
  stride phase of dx (the pixels ``(sh·i + φh, sw·j + φw)``, written in place: the result's
  ``row_step``, ``row_offset`` and the like), the same gather of dy with the sub-filter of
  the taps that reach that phase. Columns whose taps all land inside the operand run
  tiled, with no bounds checks; the rest one pixel at a time.

  A kernel is compiled for one filter width, its taps written out, and where it is
  compiled for the column stride and tap step too (:data:`WINDOW_STRIDES` in the family's
  module), each operand column a tile reads is loaded once and feeds every tap that
  meets it from a register (``_window_taps``): at unit steps a tile of P pixels reads
  P + S − 1 columns per filter row where tap by tap it loads P·S vectors, and the tile's
  addresses are fewer for LLVM to keep in registers. With ``prefetch_rows`` (an operand
  that comes from memory, not the caches), each tile also prefetches its columns of the
  operand rows the thread's next task reads first, so that those arrive while this task
  computes.
- ``filter_taps`` (backward-filter): every tap of an ``R × S`` filter keeps one vector
  accumulator while a task's rows of pixels stream, so each ``dy`` vector is loaded once
  for all taps; a row's pixels go in chunks whose channel vectors take turns, the
  accumulators kept in the task's partial filter between chunks. Per element
  ``dw[r, s, c]`` the pixels are summed in row-major order, as in :mod:`.kernels`.

No padded copy of the operand: the kernels are memory-bound, and a copy is a pass more.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..codegen import (KERNEL_DECORATOR, KernelParameters, Source, load_kernel, preamble,
                       task_loop)

#: Bytes of the pixels of a backward-filter chunk (the pixels whose channel vectors take
#: turns before the next pixels): the chunk's R rows of x stay in L1 meanwhile.
FILTER_CHUNK_BYTES = 4096

#: Channel vectors an edge pixel sums at once (independent chains of FMAs).
EDGE_VECTORS = 4

#: x86's cache line: the step of the sweep's prefetches.
LINE_BYTES = 64

#: x86's vector shuffles move values within 128-bit lanes (one instruction); across
#: them takes a second.
SHUFFLE_LANE_BYTES = 16


#: The kernels' parameters (:func:`sweep_parameters`, :func:`filter_taps_parameters` give
#: their half-type variants).
SWEEP_PARAMETERS = KernelParameters(
    ("operand", "in"), ("w", "in"), ("result", "out"), ("batch", "int"),
    ("operand_height", "int"), ("operand_width", "int"), ("channels", "int"),
    ("result_height", "int"), ("result_width", "int"), ("filter_height", "int"),
    ("filter_width", "int"), ("stride_h", "int"), ("stride_w", "int"), ("tap_h", "int"),
    ("tap_w", "int"), ("origin_h", "int"), ("origin_w", "int"), ("channel_block", "int"),
    ("full_height", "int"), ("full_width", "int"), ("row_step", "int"),
    ("column_step", "int"), ("row_offset", "int"), ("column_offset", "int"),
    ("prefetch_rows", "int"))
FILTER_TAPS_PARAMETERS = KernelParameters(
    ("x", "in"), ("dy", "in"), ("partials", "out"), ("batch", "int"), ("in_height", "int"),
    ("in_width", "int"), ("channels", "int"), ("out_height", "int"), ("out_width", "int"),
    ("stride_h", "int"), ("stride_w", "int"), ("dilation_h", "int"), ("dilation_w", "int"),
    ("pad_top", "int"), ("pad_left", "int"), ("splits", "int"), ("channel_block", "int"),
    ("chunk", "int"))


def sweep_parameters(storage: str | None = None, group: int = 1) -> KernelParameters:
    """The sweep kernel's parameters; ``storage``: the result as a half type's bits, and
    the operand too where the kernel reads it so (:func:`operand_storage`)."""
    if storage is None:
        return SWEEP_PARAMETERS
    return SWEEP_PARAMETERS.as_bits(("operand", "result") if operand_storage(storage, group)
                                    else ("result",))


def operand_storage(storage: str | None, group: int) -> str | None:
    """The half type whose bits a sweep that stores its result as ``storage``'s bits reads
    its operand as, or None (float32): ``storage`` where a group's float32 values fit one
    of x86's 128-bit shuffle lanes (depthwise; groups of up to 4), so that a spread is one
    in-lane shuffle of a vector in registers, widened or not. Wider groups' spreads are
    one broadcast load each from float32 in memory but two shuffles each of widened bits
    in registers, competing with the FMAs for ports: the caller widens such an operand
    first (one pass) instead."""
    return storage if group * 4 <= SHUFFLE_LANE_BYTES else None


def filter_taps_parameters(storage: str | None = None) -> KernelParameters:
    """The backward-filter kernel's parameters; ``storage``: x and dy as a half type's bits."""
    if storage is None:
        return FILTER_TAPS_PARAMETERS
    return FILTER_TAPS_PARAMETERS.as_bits(("x", "dy"))


def filter_chunk(channels: int, itemsize: int) -> int:
    """The pixels of a backward-filter chunk: as many as fill :data:`FILTER_CHUNK_BYTES`,
    at least 4 (the partial filter's loads and stores between chunks amortised)."""
    return max(4, FILTER_CHUNK_BYTES // (channels * itemsize))


def _inner_columns(src: Source, columns: str, width: str, first_offset: str, last_offset: str):
    """``first_inner``, ``last_inner``: the range of the ``columns`` result columns j whose
    taps' columns ``j·stride_w + offset`` (offsets from ``first_offset`` to ``last_offset``)
    all lie in [0, ``width``)."""
    src(f"first_inner = min({columns}, max(0, -(({first_offset}) // stride_w)))",
        f"last_inner = max(first_inner, min({columns}, ({width} - 1 - ({last_offset}))"
        " // stride_w + 1))")


def render_sweep(tile_pixels: int, filter_width: int, lanes: int, dtype: str,
                 vector_bits: int, storage: str | None = None, group: int = 1,
                 columns: tuple | None = None) -> str:
    """``storage``: the result is that half type's bits (and the operand:
    :func:`operand_storage`), the sums float32;
    ``group``: the channels of a group, in and out (1: depthwise); ``filter_width``: the
    tiles' taps per filter row (the kernel's ``filter_width`` must equal it);
    ``columns`` (depthwise only): ``(stride_w, tap_w)``, fixed here, so that each operand
    column a tile reads is loaded once (:func:`_window_taps`); None: any."""
    P, G, S = tile_pixels, group, filter_width
    if columns and G != 1:
        raise ValueError("window tiles are depthwise only")
    line_elements = LINE_BYTES // (2 if operand_storage(storage, G)
                                   else np.dtype(dtype).itemsize)
    parameters = sweep_parameters(storage, G)
    src = Source()
    _module_head(src, f"Generated by numbaconv.cpu.depthwise.templates.render_sweep({P}, "
                      f"{S}, {lanes}, {dtype!r}, {vector_bits}, {storage!r}, {G}, {columns}): "
                      f"{P} pixels × {lanes} channels in registers.", dtype, vector_bits,
                 lanes, storage, G)
    with src.block(parameters.header()):
        src(f'"""operand [N, OH_op, OW_op, C], w [R, S, {G}, C] -> result, all flat; see',
            "    the module docstring of numbaconv.cpu.depthwise.templates. The result's H × W",
            "    pixels are every (row_step, column_step)-th pixel from (row_offset,",
            "    column_offset) of an [N, full_height, full_width, C] array (a stride phase",
            "    of backward-data; all of it otherwise). One task per (n, result row, block",
            f"    of channel_block channels); C % {lanes} == 0, groups of {G} channels.\"\"\"",
            "blocks = (channels + channel_block - 1) // channel_block")
        _inner_columns(src, "result_width", "operand_width",
                       "origin_w + min(0, (filter_width - 1) * tap_w)",
                       "origin_w + max(0, (filter_width - 1) * tap_w)")
        # Tiles cover the inner columns, the last one moved back to end with them (its
        # overlap computed twice, the same values): whole tiles or none.
        src(f"tiled_end = last_inner if last_inner - first_inner >= {P} else first_inner",
            f"tiles = (tiled_end - first_inner + {P - 1}) // {P}",
            "single_pixels = first_inner + result_width - tiled_end")
        with task_loop(src, "batch * result_height * blocks", vector_bits, "row_task",
                       parameters, dtype,
                       dict.fromkeys(("blocks", "first_inner", "tiled_end", "tiles",
                                      "single_pixels"), "int")):
            src("row = task // blocks",
                "c0 = task % blocks * channel_block",
                "c1 = min(c0 + channel_block, channels)",
                "n = row // result_height",
                "i = row % result_height",
                "result_row = ((n * full_height + i * row_step + row_offset) * full_width"
                " + column_offset) * channels",
                "result_step = uint64(column_step * channels)",
                "pixel_step = uint64(stride_w * channels)")
            with src.block("for t in range(single_pixels):"):
                src("# The edge columns, and the inner ones short of a whole tile.",
                    "j = t if t < first_inner else tiled_end + t - first_inner",
                    "c = c0")
                # A few vectors of channels at once: independent sums, the FMA latency hidden.
                with src.block(f"while c + {EDGE_VECTORS * lanes} <= c1:"):
                    _checked_pixel(src, EDGE_VECTORS, lanes, dtype, G)
                with src.block("while c < c1:"):
                    _checked_pixel(src, 1, lanes, dtype, G)
            # prefetch_rows: the operand rows the next task reads and this one does not
            # (tasks of one thread come in order), each tile's columns of them a task ahead.
            src("last_row = i * stride_h + max(0, (filter_height - 1) * tap_h) + origin_h",
                "ahead_first = max(0, last_row + 1)",
                "ahead_end = (min(operand_height, last_row + 1 + stride_h)"
                " if prefetch_rows and i + 1 < result_height and blocks == 1 else 0)")
            with src.block("for tile in range(tiles):"):
                src(f"j = min(first_inner + tile * {P}, tiled_end - {P})",
                    "o = uint64(result_row + j * column_step * channels)")
                src(f"first_column = max(0, j * stride_w + origin_w + min(0, {S - 1} * tap_w))",
                    f"end_column = min(operand_width, j * stride_w + origin_w + {P - 1} * stride_w"
                    f" + max(0, {S - 1} * tap_w) + 1)")
                with src.block("for ahead_row in range(ahead_first, ahead_end):"):
                    src("ahead = (n * operand_height + ahead_row) * operand_width * channels")
                    with src.block("for k in range(ahead + first_column * channels,"
                                   f" ahead + end_column * channels, {line_elements}):"):
                        src("prefetch(operand, uint64(k))")
                # Channels inner: a tile's operand pixels (R rows of a few pixels, all
                # their channels) stay in L1 while its channel vectors take turns.
                with src.block(f"for c in range(c0, c1, {lanes}):"):
                    src("cu = uint64(c)")
                    src(*(f"a{p} = broadcast({dtype}(0))" for p in range(P)))
                    with _operand_rows(src):
                        if columns:
                            _window_taps(src, P, S, columns)
                        else:
                            _strided_taps(src, P, S, G)
                    src(*(f"store_data(result, o + cu{_times(p, 'result_step')}, a{p})"
                          for p in range(P)))
    return src.text()


def _strided_taps(src: Source, P: int, S: int, G: int):
    """The tile's sums over the ``S`` taps of filter row ``r``: tap by tap, each of the
    ``P`` pixels' operand vectors loaded as it is multiplied."""
    for s in range(S):
        src(f"wo = uint64(({S} * r + {s}) * {G} * channels) + cu",
            f"xo = uint64(operand_row + (j * stride_w + {s} * tap_w + origin_w) * channels) + cu")
        src(*(f"w{g} = load(w, wo{_times(g, 'uint64(channels)')})" for g in range(G)))
        for p in range(P):
            _group_terms(src, f"a{p}", f"load_data(operand, xo{_times(p, 'pixel_step')})",
                         [f"w{g}" for g in range(G)])


def _window_taps(src: Source, P: int, S: int, columns: tuple):
    """The tile's sums over the ``S`` taps of filter row ``r`` when pixel p's tap s reads
    operand column ``j·stride + origin_w + stride·p + tap·s`` (``columns``: (stride, tap),
    fixed here): each column the tile's taps read is loaded once and multiplied by every
    tap weight that meets it, in registers (P sums, S weights, one operand vector). For
    each pixel the taps still come in increasing s: the columns go in increasing order,
    decreasing where ``tap`` < 0."""
    stride, tap = columns
    first = min(0, tap * (S - 1))
    src(f"wo = uint64({S} * r * channels) + cu",
        f"xo = uint64(operand_row + (j * {stride} + origin_w + {first}) * channels) + cu")
    src(*(f"w{s} = load(w, wo{_times(s, 'uint64(channels)')})" for s in range(S)))
    feeds = {}  # column -> the (pixel, tap) pairs it feeds, taps in increasing order
    for p in range(P):
        for s in range(S):
            feeds.setdefault(stride * p + tap * s - first, []).append((p, s))
    for q in sorted(feeds, reverse=tap < 0):
        src(f"v = load_data(operand, xo{_times(q, 'uint64(channels)')})")
        src(*(f"a{p} = multiply_add(v, w{s}, a{p})" for p, s in feeds[q]))


def render_filter_taps(filter_height: int, filter_width: int, lanes: int, dtype: str,
                       vector_bits: int, storage: str | None = None) -> str:
    """``storage``: x and dy are that half type's bits, the sums float32."""
    R, S = filter_height, filter_width
    taps = [(r, s) for r in range(R) for s in range(S)]
    parameters = filter_taps_parameters(storage)
    src = Source()
    _module_head(src, f"Generated by numbaconv.cpu.depthwise.templates.render_filter_taps({R}, "
                      f"{S}, {lanes}, {dtype!r}, {vector_bits}, {storage!r}): {R}×{S} taps × "
                      f"{lanes} channels in registers.", dtype, vector_bits, lanes, storage)

    def accumulate(checked: bool):
        """Every tap's accumulator += x · dy at column ``j`` (``checked``: skip the
        columns outside x)."""
        for r in range(R):
            with src.block(f"if inside{r}:"):
                if not checked:
                    src(f"xo = uint64(x_row{r} + column * channels) + cu")
                for s in range(S):
                    if checked:
                        with src.block(f"if 0 <= column + {s} * dilation_w < in_width:"):
                            src(f"a{r}_{s} = multiply_add(load_data(x, uint64(x_row{r} + (column"
                                f" + {s} * dilation_w) * channels) + cu), d, a{r}_{s})")
                    else:
                        src(f"a{r}_{s} = multiply_add(load_data(x, xo{_times(s, 'tap_step')}),"
                            f" d, a{r}_{s})")

    with src.block(parameters.header()):
        src('"""x [N, H, W, C], dy [N, OH, OW, C] -> partials [splits, R, S, C], all flat;',
            "    see the module docstring of numbaconv.cpu.depthwise.templates. One task per",
            "    (split of the N·OH rows, block of channel_block channels), summing its rows",
            "    into its partial filter, chunk pixels of a row at a time;",
            f'    C % {lanes} == 0."""',
            "blocks = (channels + channel_block - 1) // channel_block",
            "rows = batch * out_height")
        _inner_columns(src, "out_width", "in_width", "-pad_left",
                       f"{S - 1} * dilation_w - pad_left")
        with task_loop(src, "splits * blocks", vector_bits, "split_task", parameters, dtype,
                       dict.fromkeys(("blocks", "rows", "first_inner", "last_inner"), "int")):
            src("split = task // blocks",
                "c0 = task % blocks * channel_block",
                "c1 = min(c0 + channel_block, channels)",
                f"part = split * {R * S} * channels",
                "tap_step = uint64(dilation_w * channels)")
            with src.block(f"for c in range(c0, c1, {lanes}):"):
                src(*(f"store(partials, uint64(part + {t} * channels + c), broadcast({dtype}(0)))"
                      for t in range(R * S)))
            with src.block("for row in range(split * rows // splits,"
                           " (split + 1) * rows // splits):"):
                src("n = row // out_height",
                    "i = row % out_height",
                    "dy_row = row * out_width * channels")
                for r in range(R):
                    src(f"row_in = i * stride_h + {r} * dilation_h - pad_top",
                        f"inside{r} = 0 <= row_in < in_height",
                        f"x_row{r} = (n * in_height + row_in) * in_width * channels")
                # Columns in chunks, channels inner: a chunk's pixels are read in address
                # order (a vector of each pixel at a time would take a cache line from
                # each pixel at a time, which DRAM serves far slower).
                with src.block("for j0 in range(0, out_width, chunk):"), \
                        src.block(f"for c in range(c0, c1, {lanes}):"):
                    src("cu = uint64(c)")
                    src(*(f"a{r}_{s} = load(partials, uint64(part + {r * S + s} * channels) + cu)"
                          for r, s in taps))
                    with src.block("for j in range(j0, min(j0 + chunk, out_width)):"):
                        src("d = load_data(dy, uint64(dy_row + j * channels) + cu)",
                            "column = j * stride_w - pad_left")
                        with src.block("if first_inner <= j < last_inner:"):
                            accumulate(checked=False)
                        with src.block("else:"):
                            accumulate(checked=True)
                    src(*(f"store(partials, uint64(part + {r * S + s} * channels) + cu, a{r}_{s})"
                          for r, s in taps))
    return src.text()


def sweep_kernel(tile_pixels: int, filter_width: int, lanes: int, dtype: str,
                 vector_bits: int, storage: str | None = None, group: int = 1,
                 columns: tuple | None = None):
    window = "" if columns is None else "_columns{}_{}".format(*columns)
    return load_kernel(f"depthwise_sweep_p{tile_pixels}_l{lanes}_{dtype}_v{vector_bits}"
                       f"_{storage or 'values'}" + (f"_g{group}" if group > 1 else "")
                       + f"_s{filter_width}{window}",
                       lambda: render_sweep(tile_pixels, filter_width, lanes, dtype,
                                            vector_bits, storage, group, columns),
                       sweep_parameters(storage, group), dtype)


def filter_taps_kernel(filter_height: int, filter_width: int, lanes: int, dtype: str,
                       vector_bits: int, storage: str | None = None):
    return load_kernel(f"depthwise_taps_r{filter_height}_s{filter_width}_l{lanes}_{dtype}"
                       f"_v{vector_bits}_{storage or 'values'}",
                       lambda: render_filter_taps(filter_height, filter_width, lanes, dtype,
                                                  vector_bits, storage),
                       filter_taps_parameters(storage), dtype)


def _module_head(src: Source, doc: str, dtype: str, vector_bits: int, lanes: int,
                 storage: str | None, group: int = 1):
    """The module's docstring, imports and vector operations (:func:`preamble`), then
    ``load_data``, ``store_data``: the operations on the activations (a half type's bits
    widened and rounded in registers, or values as they are; the operand of a sweep whose
    groups are wider than a shuffle lane always values: :func:`operand_storage`);
    ``spread0`` ... for groups of ``group`` channels; then the kernel's decorator."""
    preamble(src, doc, dtype, vector_bits, decorator=False, lanes=lanes, storage=storage)
    src(f"load_data = {'load_bits' if operand_storage(storage, group) else 'load'}",
        f"store_data = {'store' if storage is None else 'store_bits'}")
    if group > 1:
        src("from numbaconv.cpu.simd import group_spreads",
            f"{', '.join(f'spread{g}' for g in range(group))}, = group_spreads({lanes}, {group})")
    src("", "", KERNEL_DECORATOR)


def _checked_pixel(src: Source, vectors: int, lanes: int, dtype: str, group: int):
    """Result pixel ``j``, channels from ``c`` on (``vectors`` vectors of them), every tap's
    position checked; leaves ``c`` after them."""
    src(*(f"e{v} = broadcast({dtype}(0))" for v in range(vectors)))
    with _operand_rows(src), src.block("for s in range(filter_width):"):
        src("column = j * stride_w + s * tap_w + origin_w")
        with src.block("if 0 <= column < operand_width:"):
            src("xo = uint64(operand_row + column * channels + c)",
                f"wo = uint64((r * filter_width + s) * {group} * channels + c)")
            for v in range(vectors):
                _group_terms(src, f"e{v}", f"load_data(operand, xo + uint64({v * lanes}))",
                             [f"load(w, wo + uint64({g} * channels + {v * lanes}))"
                              for g in range(group)])
    src(*(f"store_data(result, uint64(result_row + j * column_step * channels + c"
            f" + {v * lanes}), e{v})"
          for v in range(vectors)))
    src(f"c += {vectors * lanes}")


def _group_terms(src: Source, accumulator: str, operand: str, weights: list):
    """``accumulator`` += the operand vector's terms with each channel's weights: one
    multiply-add (depthwise), or per channel g of the groups the operand's channel g spread
    over its group's lanes (``spread{g}``) times ``weights[g]``, g in order."""
    if len(weights) == 1:
        src(f"{accumulator} = multiply_add({operand}, {weights[0]}, {accumulator})")
        return
    src(f"v = {operand}")
    src(*(f"{accumulator} = multiply_add(spread{g}(v), {weight}, {accumulator})"
          for g, weight in enumerate(weights)))


@contextlib.contextmanager
def _operand_rows(src: Source):
    """``for r`` over the filter rows whose operand row exists (``operand_row``: its first
    element); the columns' loop goes inside."""
    with src.block("for r in range(filter_height):"):
        src("row_in = i * stride_h + r * tap_h + origin_h")
        with src.block("if 0 <= row_in < operand_height:"):
            src("operand_row = (n * operand_height + row_in) * operand_width * channels")
            yield


def _times(p: int, step: str) -> str:
    return "" if p == 0 else f" + {step}" if p == 1 else f" + uint64({p}) * {step}"
