"""The tiled family's kernels: generated loop nests whose register tiles are explicit
vectors (:mod:`numbaconv.cpu.simd`).

Both kernels read a zero-padded input, so the hot loops have no bounds checks, and index
flat arrays with unsigned offsets (signed indices cost a wrap-around select per load).

- ``forward``: a tile of ``tile_pixels`` consecutive output pixels (in (n, oh, ow) order) ×
  ``tile_channels`` output channels stays in registers while the (r, s, c) reduction
  streams: per input channel, ``tile_channels`` filter values (vector loads) and
  ``tile_pixels`` input values (broadcasts) feed ``tile_pixels × tile_channels`` FMAs.
  The filter is read through strides (:class:`numbaconv.cpu.layout.TiledFilter`): packed so
  that a tile's values are contiguous (:func:`numbaconv.cpu.layout.pack_filter`), or a
  rotated sub-filter of a packed one. One launch runs a table of phases
  (:class:`numbaconv.cpu.tiled.phases.Phase`), each a convolution into a strided part of
  the output: forward is one phase; backward-data is this kernel on the padded ``dy`` and
  the rotated, channel-swapped filter, one phase per stride phase of dx
  (:func:`numbaconv.cpu.tiled.phases.stride_phases`).
- ``backward_filter``: a tile of ``tile_pixels`` input channels × ``tile_channels``
  output channels of one filter tap stays in registers while the reduction over the
  (n, oh, ow) pixels streams: row by row through every tile, or (``backward_filter_panels``)
  as a GEMM per tap over blocks of pixels packed into panels.

Forward and backward-filter tiles sum each element in the same order as the direct
kernels ((r, s, c), resp. pixels in row-major order); backward-data tiles visit the taps
in rotated order, so their rounding differs from the direct kernel's.
"""

from __future__ import annotations

from ..codegen import KernelParameters, Source, load_kernel, preamble, task_loop
from ..simd import vector_lanes


def _accumulators(src: Source, rows: int, vectors: int, dtype: str):
    src(*(f"a{i}_{v} = broadcast({dtype}(0))" for i in range(rows) for v in range(vectors)))


#: How far ahead (in channels) backward-data's filter transpose prefetches each lane's row:
#: four 64-byte lines of float32, enough to cover a fetch from memory.
PREFETCH_CHANNELS = 64
#: Channels of a half type's filter lane the widening transpose takes at a time: a line.
HALF_BLOCK = 32

#: Columns of the phase table of the forward kernel (one row per phase, int64).
PHASE_FIELDS = ("first_tile", "out_height", "out_width", "stride_h", "stride_w", "dilation_h",
                "dilation_w", "filter_height", "filter_width", "w_offset", "w_row_stride",
                "w_col_stride", "x_offset", "out_offset", "out_image_stride", "out_row_stride",
                "out_col_stride")
COLUMN = {name: index for index, name in enumerate(PHASE_FIELDS)}

#: The generated kernels' parameters: their ``def`` lines, Numba signatures and the
#: arguments their callers pass all come from these lists.
_FORWARD_SHARED = (
    ("xp", "in"), ("w", "in"), ("out", "out"), ("phases", "table"), ("batch", "int"),
    ("padded_height", "int"), ("padded_width", "int"), ("x_channels", "int"),
    ("in_channels", "int"), ("out_channels", "int"), ("group_out_channels", "int"),
    ("w_tile_stride", "int"), ("w_channel_stride", "int"))
_TASKS = (("total_tiles", "int"), ("pixel_groups", "int"), ("k_groups", "int"))
FORWARD_PARAMETERS = KernelParameters(*_FORWARD_SHARED, *_TASKS, ("pixels_outer", "bool"))
FORWARD_PANELS_PARAMETERS = KernelParameters(*_FORWARD_SHARED, ("w_lane_stride", "int"), *_TASKS,
                                             ("pixels_major", "bool"))
BACKWARD_FILTER_PARAMETERS = KernelParameters(
    ("xp", "in"), ("dy", "in"), ("partials", "out"), ("batch", "int"), ("padded_height", "int"),
    ("padded_width", "int"), ("x_channels", "int"), ("in_channels", "int"),
    ("filter_height", "int"), ("filter_width", "int"), ("out_channels", "int"),
    ("group_out_channels", "int"), ("out_height", "int"),
    ("out_width", "int"), ("stride_h", "int"), ("stride_w", "int"), ("dilation_h", "int"),
    ("dilation_w", "int"), ("splits", "int"), ("tap_groups", "int"), ("c_groups", "int"),
    ("row_block", "int"), ("pack_dy", "bool"), ("pack_x", "bool"))
BACKWARD_FILTER_PANELS_PARAMETERS = KernelParameters(
    *BACKWARD_FILTER_PARAMETERS.parameters[:-3], ("block_pixels", "int"))


def forward_parameters(storage: str | None = None,
                       input_bits: bool = False) -> KernelParameters:
    """The forward kernel's parameters; ``storage``: the result as a half type's bits, and
    the input too if ``input_bits``."""
    if storage is None:
        return FORWARD_PARAMETERS
    return FORWARD_PARAMETERS.as_bits(("xp", "out") if input_bits else ("out",))


def forward_panels_parameters(storage: str | None = None,
                              input_bits: bool = False) -> KernelParameters:
    """The packed-panels kernel's parameters; ``storage``: the filter and the result as a
    half type's bits, and the input too if ``input_bits``."""
    if storage is None:
        return FORWARD_PANELS_PARAMETERS
    return FORWARD_PANELS_PARAMETERS.as_bits(("xp", "w", "out") if input_bits else ("w", "out"))


def render_forward(tile_pixels: int, tile_channels: int, dtype: str, vector_bits: int,
                   storage: str | None = None, input_bits: bool = False) -> str:
    """``storage``: the result is that half type's bits (``dtype`` float32), each tile's
    sums rounded once as it stores them; ``input_bits``: xp too, each value widened as it
    is broadcast."""
    P, KB = tile_pixels, tile_channels
    lanes = vector_lanes(KB, vector_bits, dtype)
    parameters = forward_parameters(storage, input_bits)
    src = Source()
    preamble(src, f"Generated by numbaconv.cpu.tiled.render_forward({P}, {KB}, {dtype!r}, "
                   f"{vector_bits}, {storage!r}, {input_bits}): a {P}-pixel × {KB}-channel "
                   "register tile.", dtype, vector_bits, lanes=lanes, storage=storage)
    with src.block(parameters.header()):
        src('"""xp [N, Hp, Wp, x_channels] (zero-padded input), w (filter), phases [P, F] ->'
            ' out, all flat but phases.',
            "",
            "    Grouped: output channel k reads the in_channels input channels from",
            "    (k // group_out_channels) · in_channels on (one group: all of them).",
            "",
            "    One launch runs every phase (a row of ``phases``, columns PHASE_FIELDS): a",
            "    convolution of the (N, out_height, out_width) output grid whose input starts",
            "    at xp[x_offset], whose output pixel (n, oh, ow) goes to out[out_offset +",
            "    n·out_image_stride + oh·out_row_stride + ow·out_col_stride] (K channels",
            "    contiguous), and whose filter value of tap (r, s), input channel c and output",
            "    channel kt·KB + j is w[w_offset + kt·w_tile_stride + r·w_row_stride +",
            "    s·w_col_stride + c·w_channel_stride + j] (tap strides may be negative).",
            "    Forward is one phase; backward-data one per stride phase of dx.",
            "",
            f"    A tile is {P} consecutive output pixels of one phase in (n, oh, ow) order, so",
            "    it may span rows and images; the last tile of a phase repeats its last pixel in",
            f'    its spare lanes and does not store them. Needs K % {KB} == 0."""',
            f"k_tiles = out_channels // {KB}",
            "last_phase = phases.shape[0] - 1",
            "w_step = uint64(w_channel_stride)")
        with task_loop(src, "pixel_groups * k_groups", vector_bits, "tile_task",
                       parameters, dtype,
                       {"k_tiles": "int", "last_phase": "int", "w_step": "uint"}):
            src("pg = task // k_groups",
                "kg = task % k_groups",
                "t0 = pg * total_tiles // pixel_groups",
                "t1 = (pg + 1) * total_tiles // pixel_groups",
                "kt0 = kg * k_tiles // k_groups",
                "kt1 = (kg + 1) * k_tiles // k_groups",
                "tiles_k = kt1 - kt0",
                "phase = 0")
            with src.block("for i in range((t1 - t0) * tiles_k):"):
                with src.block("if pixels_outer:"):
                    src("tile = t0 + i // tiles_k", "kt = kt0 + i % tiles_k")
                with src.block("else:"):
                    src("kt = kt0 + i // (t1 - t0)", "tile = t0 + i % (t1 - t0)")
                # The phase of the previous tile, unless the tiles started over (a search
                # from phase 0 per tile is dear with many phases: Winograd's α²).
                with src.block(f"if tile < phases[phase, {COLUMN['first_tile']}]:"):
                    src("phase = 0")
                with src.block(_next_phase_test()):
                    src("phase += 1")
                _phase_fields(src)
                _phase_setup(src, fused="w_col_stride == in_channels * w_channel_stride")
                _first_pixel(src, P)
                _forward_tile(src, P, KB, lanes, dtype, weights="w",
                              tap_offset="w_offset + kt * w_tile_stride + r * w_row_stride"
                                         " + s * w_col_stride",
                              step="w_step", store="store" if storage is None else "store_bits",
                              input_bits=input_bits)
    return src.text()


def _next_phase_test() -> str:
    return f"while phase < last_phase and phases[phase + 1, {COLUMN['first_tile']}] <= tile:"


def _phase_fields(src: Source):
    src(*(f"{name} = phases[phase, {column}]" for column, name in enumerate(PHASE_FIELDS)))


def _phase_setup(src: Source, fused: str | None):
    """Per phase: ``fused`` (None: always) says when the (s, c) taps of a filter row are
    one run of the filter."""
    src("pixels = batch * out_height * out_width",
        "tap_row = dilation_h * padded_width * x_channels",
        "tap_col = dilation_w * x_channels",
        "# Undilated columns of a packed filter, ungrouped: the (s, c) taps of one filter",
        "# row are one contiguous run in both xp and the filter, summed in the same order.",
        "fused = dilation_w == 1 and x_channels == in_channels" + (f" and {fused}" if fused else ""),
        "column_taps = 1 if fused else filter_width",
        "run = filter_width * in_channels if fused else in_channels")


def _first_pixel(src: Source, P: int):
    """(n, oh, ow) of tile ``tile``'s first pixel, by division."""
    src(f"m0 = (tile - first_tile) * {P}",
        "ow = m0 % out_width",
        "oh = m0 // out_width % out_height",
        "n = m0 // (out_width * out_height)")


def _next_pixel(src: Source, guard: str):
    with src.block(f"if {guard} < pixels:"):
        src("ow += 1")
        with src.block("if ow == out_width:"):
            src("ow = 0", "oh += 1")
            with src.block("if oh == out_height:"):
                src("oh = 0", "n += 1")


def _forward_tile(src: Source, P: int, KB: int, lanes: int, dtype: str, weights: str,
                  tap_offset: str, step: str, step_on: bool = False, store: str = "store",
                  input_bits: bool = False):
    """Output tile ``tile`` (of the phase set up in scope, its first pixel at (n, oh, ow))
    × channel tile ``kt``, as ``KB / lanes`` vectors per pixel: the value of tap (r, s),
    input channel c, lane j is ``weights[tap_offset + c·step + j]``. ``step_on``: leave
    (n, oh, ow) at the next tile's first pixel (the next pixels by stepping: divisions per
    pixel are dear on small tiles). ``store``: the operation that writes the sums
    (``store_bits``: rounded to a half type). ``input_bits``: xp holds a half type's bits,
    each value widened as it is broadcast."""
    vectors = range(KB // lanes)
    src(f"m0 = (tile - first_tile) * {P}",
        f"k0 = kt * {KB}",
        "x_group = x_offset + k0 // group_out_channels * in_channels")
    for p in range(P):
        if p:
            _next_pixel(src, f"m0 + {p}")
        src(f"b{p} = uint64(x_group + ((n * padded_height + oh * stride_h)"
            f" * padded_width + ow * stride_w) * x_channels)",
            f"d{p} = uint64(out_offset + n * out_image_stride + oh * out_row_stride"
            f" + ow * out_col_stride + k0)")
    if step_on:
        _next_pixel(src, f"m0 + {P}")
    _accumulators(src, P, len(vectors), dtype)
    with src.block("for r in range(filter_height):"):
        with src.block("for s in range(column_taps):"):
            src("tap = uint64(r * tap_row + s * tap_col)")
            src(*(f"x{p} = b{p} + tap" for p in range(P)))
            src(f"wo = uint64({tap_offset})")
            with src.block("for c in range(run):"):
                src("cu = uint64(c)")
                src(*(f"w{v} = load({weights}, wo + uint64({v * lanes}))" for v in vectors))
                src(*(f"v{p} = broadcast_bits(xp, x{p} + cu)" if input_bits
                      else f"v{p} = broadcast(xp[x{p} + cu])" for p in range(P)))
                src(f"wo += {step}")
                src(*(f"a{p}_{v} = multiply_add(v{p}, w{v}, a{p}_{v})"
                      for p in range(P) for v in vectors))
    for p in range(P):
        with src.block(f"if m0 + {p} < pixels:"):
            src(*(f"{store}(out, d{p} + uint64({v * lanes}), a{p}_{v})" for v in vectors))


def render_forward_panels(tile_pixels: int, tile_channels: int, dtype: str,
                          vector_bits: int, storage: str | None = None,
                          input_bits: bool = False) -> str:
    """``storage``: the filter and the result are that half type's bits (``dtype`` float32):
    each panel widens its filter values as it copies them, each tile rounds its sums once as
    it stores them; ``input_bits``: xp too, each value widened as it is broadcast."""
    P, KB = tile_pixels, tile_channels
    lanes = vector_lanes(KB, vector_bits, dtype)
    parameters = forward_panels_parameters(storage, input_bits)
    src = Source()
    preamble(src, f"Generated by numbaconv.cpu.tiled.render_forward_panels({P}, {KB}, "
                   f"{dtype!r}, {vector_bits}, {storage!r}, {input_bits}): a {P}-pixel × "
                   f"{KB}-channel register tile over filter panels packed by each task.",
             dtype, vector_bits, lanes=lanes, storage=storage)
    load_filter = "load" if storage is None else "load_bits"
    with src.block(parameters.header()):
        src('"""The forward kernel\'s phases and tiles (see render_forward); the filter value',
            "    of lane j is ``w_lane_stride`` elements after lane j − 1's (the filter is read",
            "    as it is: unpacked, or with its channel axes swapped for backward-data).",
            "",
            f"    A task owns {KB}-channel tiles [kt0, kt1) and pixel tiles [t0, t1): per",
            "    channel tile it copies the filter panel [R, S, C, KB] of the phase at hand into",
            "    a buffer of its own (contiguous and hot), then runs that phase's pixel tiles",
            "    over it: no separate pass packs the whole filter per call, and with one pixel",
            "    group (the task split of few-pixel layers) each filter value is read once.",
            f'    Needs K % {KB} == 0."""',
            f"k_tiles = out_channels // {KB}",
            "last_phase = phases.shape[0] - 1",
            "w_step = uint64(w_channel_stride)",
            "lane = uint64(w_lane_stride)",
            f"panel_column = in_channels * {KB}",
            # int64, not the literal 0: a literal-typed argument compiles the task twice.
            "panel_length = int64(0)",
            "for phase in range(last_phase + 1):",
            "    panel_length = max(panel_length, phases[phase, "
            f"{COLUMN['filter_height']}] * phases[phase, {COLUMN['filter_width']}] * panel_column)")
        with task_loop(src, "pixel_groups * k_groups", vector_bits, "panel_task",
                       parameters, dtype,
                       {"k_tiles": "int", "last_phase": "int", "w_step": "uint", "lane": "uint",
                        "panel_column": "int", "panel_length": "int"}):
            # Numba hands each thread a contiguous run of tasks: pixel groups outer gives
            # each thread its own part of x, channel groups outer its own part of the
            # filter (launcher: whichever is larger).
            with src.block("if pixels_major:"):
                src("pg = task // k_groups", "kg = task % k_groups")
            with src.block("else:"):
                src("kg = task // pixel_groups", "pg = task % pixel_groups")
            src("t0 = pg * total_tiles // pixel_groups",
                "t1 = (pg + 1) * total_tiles // pixel_groups",
                "kt0 = kg * k_tiles // k_groups",
                "kt1 = (kg + 1) * k_tiles // k_groups",
                f"panel = empty(panel_length, {dtype})")
            if storage is not None:  # the widening transpose's buffer
                src(f"lane_rows = empty({KB * HALF_BLOCK}, {dtype})")
            with src.block("for kt in range(kt0, kt1):"):
                # A phase's fields, set-up and first pixel are read once per run of its
                # tiles (here for phase 0, so that they are defined on every path).
                src("phase = 0", "panel_phase = -1", "n = oh = ow = 0")
                _phase_fields(src)
                _phase_setup(src, fused=None)
                with src.block("for tile in range(t0, t1):"):
                    with src.block(_next_phase_test()):
                        src("phase += 1")
                    with src.block("if phase != panel_phase:"):
                        _phase_fields(src)
                        _phase_setup(src, fused=None)
                        _first_pixel(src, P)
                        src("panel_phase = phase", "q = uint64(0)")
                        with src.block("for r in range(filter_height):"):
                            with src.block("for s in range(filter_width):"):
                                src("wo = uint64(w_offset + kt * w_tile_stride + r * w_row_stride"
                                    " + s * w_col_stride)")
                                # Contiguous lanes (forward): a vector copy per channel.
                                # Else (backward-data: contiguous channels) a transpose in
                                # blocks of 16 channels, each block's panel rows in L1 (a
                                # gather of lanes per channel is much slower); its lanes'
                                # rows, read a line at a time side by side, are more streams
                                # than the hardware prefetchers follow from memory, so each
                                # lane asks for its line PREFETCH_CHANNELS ahead.
                                with src.block("if lane == 1:"):
                                    with src.block("for c in range(in_channels):"):
                                        src(*(f"store(panel, q + uint64({v * lanes}), "
                                              f"{load_filter}(w, wo + uint64({v * lanes})))"
                                              for v in range(KB // lanes)))
                                        src(f"q += uint64({KB})", "wo += w_step")
                                with src.block("else:"):
                                    if storage is None:
                                        _transpose(src, KB)
                                    else:
                                        _widening_transpose(src, KB, lanes)
                                    src(f"q += uint64(in_channels * {KB})")
                    _forward_tile(src, P, KB, lanes, dtype, weights="panel",
                                  tap_offset="(r * filter_width + s) * panel_column",
                                  step=f"uint64({KB})", step_on=True,
                                  store="store" if storage is None else "store_bits",
                                  input_bits=input_bits)
    return src.text()


def _transpose(src: Source, KB: int):
    """The panel's values from the filter's ``KB`` lanes (rows of contiguous channels)."""
    with src.block("for c0 in range(0, in_channels, 16):"):
        src("c1 = min(c0 + 16, in_channels)")
        with src.block(f"for j in range({KB}):"):
            src("lane_start = wo + uint64(j) * lane",
                f"prefetch(w, lane_start + uint64(c0 + {PREFETCH_CHANNELS}) * w_step)")
            with src.block("for c in range(c0, c1):"):
                src(f"panel[q + uint64(c * {KB} + j)] = w[lane_start + uint64(c) * w_step]")


def _widening_transpose(src: Source, KB: int, lanes: int):
    """:func:`_transpose` from a half type's bits, a block of :data:`HALF_BLOCK` channels
    (a line of them) at a time: each lane's block widened by vectors into ``lane_rows``,
    then transposed from there (converting each element in the transpose itself was
    markedly slower: ``docs/measurements.md``)."""
    vectors = range(HALF_BLOCK // lanes)
    with src.block(f"for c0 in range(0, in_channels, {HALF_BLOCK}):"):
        src(f"c1 = min(c0 + {HALF_BLOCK}, in_channels)")
        with src.block(f"for j in range({KB}):"):
            src("lane_start = wo + uint64(j) * lane",
                f"prefetch(w, lane_start + uint64(c0 + {2 * PREFETCH_CHANNELS}) * w_step)",
                f"row = uint64(j * {HALF_BLOCK})")
            with src.block(f"if c1 - c0 == {HALF_BLOCK} and w_step == 1:"):
                src(*(f"store(lane_rows, row + uint64({v * lanes}), "
                      f"load_bits(w, lane_start + uint64(c0 + {v * lanes})))" for v in vectors))
            with src.block("else:"):
                with src.block("for c in range(c0, c1):"):
                    src("lane_rows[row + uint64(c - c0)] = "
                        "bits_value(w[lane_start + uint64(c) * w_step])")
        with src.block(f"for j in range({KB}):"):
            with src.block("for c in range(c0, c1):"):
                src(f"panel[q + uint64(c * {KB} + j)] = "
                    f"lane_rows[uint64(j * {HALF_BLOCK}) + uint64(c - c0)]")


def _pack_dy_panels(src: Source, first: str, count: str, KB: int, lanes: int,
                    load: str = "load"):
    """dy's ``count`` pixels from pixel ``first`` on into ``dy_panels``: one panel per tile
    of ``KB`` output channels, its pixels' values contiguous (``load``: how a vector of dy
    is read)."""
    with src.block(f"for i in range({count}):"):
        src(f"source = uint64(({first} + i) * out_channels)")
        with src.block("for kt in range(k_tiles):"):
            src(f"target = uint64((kt * {count} + i) * {KB})")
            src(*(f"store(dy_panels, target + uint64({v * lanes}), "
                  f"{load}(dy, source + uint64(kt * {KB} + {v * lanes})))"
                  for v in range(KB // lanes)))


def _tap_position(src: Source):
    src("r = tap // filter_width",
        "s = tap % filter_width")


def _tile_slots(CB: int, KB: int, lanes: int) -> list:
    """(accumulator, offset in ``partials`` from ``p``) of each vector of a backward-filter
    tile of ``CB`` input × ``KB`` output channels."""
    return [(f"a{c}_{v}", f"p + uint64({c} * out_channels + {v * lanes})")
            for c in range(CB) for v in range(KB // lanes)]


def _start_sums(src: Source, first_block: str, CB: int, KB: int, lanes: int, dtype: str):
    """A backward-filter tile's accumulators at the start of a block: zero in the split's
    first block (``first_block``), else its sums so far from ``partials`` at ``p`` — so
    the partials are written whole and need no zeroing first (a memset of the size of the
    filter for each split)."""
    slots = _tile_slots(CB, KB, lanes)
    with src.block(f"if {first_block}:"):
        src(*(f"{name} = broadcast({dtype}(0))" for name, _ in slots))
    with src.block("else:"):
        src(*(f"{name} = load(partials, {offset})" for name, offset in slots))


def backward_filter_parameters(storage: str | None = None) -> KernelParameters:
    """The backward-filter kernel's parameters; ``storage``: xp and dy as a half type's
    bits."""
    if storage is None:
        return BACKWARD_FILTER_PARAMETERS
    return BACKWARD_FILTER_PARAMETERS.as_bits(("xp", "dy"))


def render_backward_filter(tile_in_channels: int, tile_channels: int, dtype: str,
                           vector_bits: int, pixels_outer: bool = True,
                           storage: str | None = None) -> str:
    """``storage`` (pixel tiles outer only): xp and dy are that half type's bits, and every
    block's x and dy are packed (whatever pack_x and pack_dy say), widened as they are."""
    if storage is not None and not pixels_outer:
        raise ValueError("half-type bits are read by the pixel-tiles-outer kernel only")
    CB, KB = tile_in_channels, tile_channels
    lanes = vector_lanes(KB, vector_bits, dtype)
    vectors = range(KB // lanes)
    order = "pixel tiles outer" if pixels_outer else "channel tiles outer"
    parameters = backward_filter_parameters(storage)
    packed = storage is not None  # x and dy packed into panels on every block
    src = Source()
    preamble(src, f"Generated by numbaconv.cpu.tiled.render_backward_filter({CB}, {KB}, "
                   f"{dtype!r}, {vector_bits}, {pixels_outer}, {storage!r}): a "
                   f"{CB}-input-channel × {KB}-output-channel register tile, {order}.", dtype,
             vector_bits, lanes=lanes, storage=storage)

    def pixel_row(xo: str, do: str, x_source: str = "xp", x_step: str = "pixel_step",
                  dy_source: str = "dy", dy_step: str = "out_channels"):
        """The tile's accumulators over one output row's pixels, whose x values are
        ``x_step`` apart in ``x_source`` from ``xo`` on, and dy vectors ``dy_step`` apart in
        ``dy_source`` from ``do`` on."""
        src(f"xo = {xo}", f"do = {do}")
        with src.block("for ow in range(out_width):"):
            src(*(f"v{c} = broadcast({x_source}[xo + uint64({c})])" for c in range(CB)))
            src(*(f"d{v} = load({dy_source}, do + uint64({v * lanes}))" for v in vectors))
            src(*(f"a{c}_{v} = multiply_add(v{c}, d{v}, a{c}_{v})"
                  for c in range(CB) for v in vectors))
            src(f"xo += {x_step}",
                f"do += uint64({dy_step})")

    def x_row_start():
        """``x_row``: where output row ``row``'s first pixel reads x at tap (r, s)."""
        src("n = row // out_height",
            "ih = (row % out_height) * stride_h + r * dilation_h",
            "x_row = uint64(((n * padded_height + ih) * padded_width"
            " + s * dilation_w) * x_channels)")

    def pack_x_block():
        """The tile's x values over rows [block0, block1) at tap (r, s) into ``x_panel``,
        contiguous (``CB`` per pixel), for the input channels from ``x_first`` on."""
        with src.block("for row in range(block0, block1):"):
            x_row_start()
            src("xo = x_row + x_first",
                f"target = uint64((row - block0) * out_width * {CB})")
            with src.block("for ow in range(out_width):"):
                src(*(f"x_panel[target + uint64({c})] = "
                      + (f"bits_value(xp[xo + uint64({c})])" if packed
                         else f"xp[xo + uint64({c})]") for c in range(CB)))
                src("xo += pixel_step", f"target += uint64({CB})")

    def split_rows():
        """The task's split's rows [row0, row1) of the reduction."""
        src("row0 = split * rows // splits",
            "row1 = (split + 1) * rows // splits")

    with src.block(parameters.header()):
        src('"""xp [N, Hp, Wp, x_channels] (zero-padded input), dy [N, OH, OW, K] ->'
            ' partials [splits, R, S, C, K] (C = in_channels), all flat.',
            "",
            "    Grouped: output channel k reads the C input channels from",
            "    (k // group_out_channels) · C on (one group: all of them).",
            "",
            "    Each split sums its rows of output pixels in row-major order. Pixel tiles",
            "    outer: a task (split, group of taps, group of c tiles) walks its rows once",
            "    and, per block of row_block rows, runs every tile of its taps and c tiles,",
            "    its accumulators kept in ``partials`` (written whole) between",
            "    blocks, so the block's x and dy stay in cache (dy read once for all the",
            "    task's taps; pack_dy: first copied into one contiguous panel per tile of",
            "    output channels, where dy's pixel stride maps its rows to too few L1",
            "    sets; pack_x: likewise the block's x, one panel per tap and c tile, for",
            "    every k tile of a group); channel tiles outer: a task is one tile and",
            "    streams all its rows (same sums, same order; each order its own kernel, as",
            "    each is a whole unrolled tile to compile).",
            f'    C % {CB} == 0 and K % {KB} == 0."""',
            f"c_tiles = in_channels // {CB}",
            f"k_tiles = out_channels // {KB}",
            "taps = filter_height * filter_width",
            "rows = batch * out_height",
            "tiles = taps * c_tiles * k_tiles",
            "pixel_step = uint64(stride_w * x_channels)")
        locals_ = {"c_tiles": "int", "k_tiles": "int", "taps": "int", "rows": "int",
                   "tiles": "int", "pixel_step": "uint"}
        if pixels_outer:
            with task_loop(src, "splits * tap_groups * c_groups", vector_bits, "rows_task",
                           parameters, dtype, locals_):
                src("split = task // (tap_groups * c_groups)",
                    "tap_group = task // c_groups % tap_groups",
                    "group = task % c_groups",
                    "tap0 = tap_group * taps // tap_groups",
                    "tap1 = (tap_group + 1) * taps // tap_groups",
                    "ct0 = group * c_tiles // c_groups",
                    "ct1 = (group + 1) * c_tiles // c_groups")
                split_rows()
                if packed:
                    src(f"dy_panels = empty(row_block * out_width * out_channels, {dtype})",
                        f"dy_pixel_step = {KB}",
                        "dy_block = dy_panels",
                        f"x_panel = empty(row_block * out_width * {CB}, {dtype})",
                        f"x_pixel_step = uint64({CB})",
                        "x_block = x_panel")
                else:
                    src(f"dy_panels = empty(row_block * out_width * out_channels if pack_dy"
                        f" else 0, {dtype})",
                        f"dy_pixel_step = {KB} if pack_dy else out_channels",
                        "dy_block = dy_panels if pack_dy else dy",
                        f"x_panel = empty(row_block * out_width * {CB} if pack_x else 0,"
                        f" {dtype})",
                        f"x_pixel_step = uint64({CB}) if pack_x else pixel_step",
                        "x_block = x_panel if pack_x else xp")
                with src.block("for block0 in range(row0, row1, row_block):"):
                    src("block1 = min(block0 + row_block, row1)",
                        "block_pixels = (block1 - block0) * out_width")
                    if packed:
                        _pack_dy_panels(src, "block0 * out_width", "block_pixels", KB, lanes,
                                        "load_bits")
                    else:
                        with src.block("if pack_dy:"):
                            _pack_dy_panels(src, "block0 * out_width", "block_pixels", KB,
                                            lanes)
                    with src.block("for tap in range(tap0, tap1):"):
                        _tap_position(src)
                        with src.block("for ct in range(ct0, ct1):"):
                            src("panel_group = -1")
                            with src.block("for kt in range(k_tiles):"):
                                src(f"c0 = ct * {CB}", f"k0 = kt * {KB}",
                                    "k_group = k0 // group_out_channels",
                                    "x_first = uint64(k_group * in_channels + c0)",
                                    "p = uint64((split * taps + tap) * in_channels"
                                    " * out_channels + c0 * out_channels + k0)")
                                with src.block("if k_group != panel_group:" if packed
                                               else "if pack_x and k_group != panel_group:"):
                                    pack_x_block()
                                    src("panel_group = k_group")
                                _start_sums(src, "block0 == row0", CB, KB, lanes, dtype)
                                src(f"dy_first = kt * block_pixels * {KB}" + (
                                    "" if packed else " if pack_dy"
                                    " else block0 * out_width * out_channels + k0"))
                                with src.block("for row in range(block0, block1):"):
                                    if packed:
                                        src(f"x_start = uint64((row - block0) * out_width"
                                            f" * {CB})")
                                    else:
                                        with src.block("if pack_x:"):
                                            src(f"x_start = uint64((row - block0) * out_width"
                                                f" * {CB})")
                                        with src.block("else:"):
                                            x_row_start()
                                            src("x_start = x_row + x_first")
                                    pixel_row("x_start", "uint64(dy_first + (row - block0)"
                                              " * out_width * dy_pixel_step)", "x_block",
                                              "x_pixel_step", "dy_block", "dy_pixel_step")
                                src(*(f"store(partials, {offset}, {name})"
                                      for name, offset in _tile_slots(CB, KB, lanes)))
        else:
            with task_loop(src, "splits * tiles", vector_bits, "tile_task",
                           BACKWARD_FILTER_PARAMETERS, dtype, locals_):
                src("split = task // tiles",
                    "tile = task % tiles",
                    "tap = tile // (c_tiles * k_tiles)",
                    f"c0 = (tile // k_tiles % c_tiles) * {CB}",
                    f"k0 = (tile % k_tiles) * {KB}")
                _tap_position(src)
                split_rows()
                _accumulators(src, CB, len(vectors), dtype)
                with src.block("for row in range(row0, row1):"):
                    src("n = row // out_height",
                        "ih = (row % out_height) * stride_h + r * dilation_h")
                    pixel_row("uint64(((n * padded_height + ih) * padded_width + s * dilation_w)"
                              " * x_channels + k0 // group_out_channels * in_channels + c0)",
                              "uint64(row * out_width * out_channels + k0)")
                src("p = uint64((split * taps + tap) * in_channels * out_channels"
                    " + c0 * out_channels + k0)")
                src(*(f"store(partials, {offset}, {name})"
                      for name, offset in _tile_slots(CB, KB, lanes)))
    return src.text()


def backward_filter_panels_parameters(storage: str | None = None) -> KernelParameters:
    """The packed-panels backward-filter's parameters; ``storage``: xp and dy as a half
    type's bits."""
    if storage is None:
        return BACKWARD_FILTER_PANELS_PARAMETERS
    return BACKWARD_FILTER_PANELS_PARAMETERS.as_bits(("xp", "dy"))


def render_backward_filter_panels(tile_in_channels: int, tile_channels: int, dtype: str,
                                  vector_bits: int, storage: str | None = None) -> str:
    """``storage``: xp and dy are that half type's bits, widened as the panels are packed."""
    CB, KB = tile_in_channels, tile_channels
    lanes = vector_lanes(KB, vector_bits, dtype)
    vectors = range(KB // lanes)
    tile = [(c, v) for c in range(CB) for v in vectors]
    parameters = backward_filter_panels_parameters(storage)
    src = Source()
    preamble(src, f"Generated by numbaconv.cpu.tiled.render_backward_filter_panels({CB}, {KB}, "
                   f"{dtype!r}, {vector_bits}, {storage!r}): a {CB}-input-channel × "
                   f"{KB}-output-channel register tile over packed panels.", dtype,
             vector_bits, lanes=lanes, storage=storage)
    with src.block(parameters.header()):
        src('"""xp [N, Hp, Wp, x_channels] (zero-padded input), dy [N, OH, OW, K] ->'
            ' partials [splits, R, S, C, K] (C = in_channels; written whole), all flat.',
            "",
            "    Grouped: output channel k reads the C input channels from",
            "    (k // group_out_channels) · C on (one group: all of them).",
            "",
            "    A task (split, group of taps, group of c tiles) walks its split's output",
            "    pixels in blocks of block_pixels, in row-major order, as a GEMM per tap",
            "    whose reduction is the pixels: the block's dy is packed into one panel per",
            "    tile of output channels, then per tap the block's x into one panel per",
            "    tile of input channels (every group's); the k tiles go outer, so that each",
            "    dy panel stays in L1 while every c tile's x panel streams past it. Each",
            "    element sums the pixels in row-major order, as the other loop orders do.",
            f'    C % {CB} == 0 and K % {KB} == 0."""',
            f"c_tiles = in_channels // {CB}",
            f"k_tiles = out_channels // {KB}",
            "taps = filter_height * filter_width",
            "groups = out_channels // group_out_channels")
        locals_ = {"c_tiles": "int", "k_tiles": "int", "taps": "int", "groups": "int"}
        with task_loop(src, "splits * tap_groups * c_groups", vector_bits, "panels_task",
                       parameters, dtype, locals_):
            src("split = task // (tap_groups * c_groups)",
                "tap_group = task // c_groups % tap_groups",
                "c_group = task % c_groups",
                "tap0 = tap_group * taps // tap_groups",
                "tap1 = (tap_group + 1) * taps // tap_groups",
                "ct0 = c_group * c_tiles // c_groups",
                "ct1 = (c_group + 1) * c_tiles // c_groups",
                "task_c_tiles = ct1 - ct0",
                "rows = batch * out_height",
                "pixel0 = split * rows // splits * out_width",
                "pixel1 = (split + 1) * rows // splits * out_width",
                f"dy_panels = empty(block_pixels * out_channels, {dtype})",
                f"x_panels = empty(block_pixels * groups * task_c_tiles * {CB}, {dtype})")
            with src.block("for block0 in range(pixel0, pixel1, block_pixels):"):
                src("block_size = min(block_pixels, pixel1 - block0)")
                _pack_dy_panels(src, "block0", "block_size", KB, lanes,
                                "load" if storage is None else "load_bits")
                with src.block("for tap in range(tap0, tap1):"):
                    _tap_position(src)
                    with src.block("for i in range(block_size):"):
                        src("pixel = block0 + i",
                            "row = pixel // out_width",
                            "ih = (row % out_height) * stride_h + r * dilation_h",
                            "iw = pixel % out_width * stride_w + s * dilation_w",
                            "source = uint64(((row // out_height * padded_height + ih)"
                            " * padded_width + iw) * x_channels)")
                        with src.block("for group in range(groups):"):
                            with src.block("for ct in range(ct0, ct1):"):
                                src(f"target = uint64(((group * task_c_tiles + ct - ct0)"
                                    f" * block_size + i) * {CB})",
                                    f"xo = source + uint64(group * in_channels + ct * {CB})")
                                src(*(f"x_panels[target + uint64({c})] = "
                                      + (f"xp[xo + uint64({c})]" if storage is None
                                         else f"bits_value(xp[xo + uint64({c})])")
                                      for c in range(CB)))
                    with src.block("for kt in range(k_tiles):"):
                        src(f"group = kt * {KB} // group_out_channels",
                            f"dy_first = uint64(kt * block_size * {KB})")
                        with src.block("for ct in range(ct0, ct1):"):
                            src("p = uint64(((split * taps + tap) * in_channels"
                                f" + ct * {CB}) * out_channels + kt * {KB})")
                            slots = _tile_slots(CB, KB, lanes)
                            _start_sums(src, "block0 == pixel0", CB, KB, lanes, dtype)
                            src(f"xo = uint64((group * task_c_tiles + ct - ct0) * block_size"
                                f" * {CB})",
                                "do = dy_first")
                            with src.block("for i in range(block_size):"):
                                src(*(f"v{c} = broadcast(x_panels[xo + uint64({c})])"
                                      for c in range(CB)))
                                src(*(f"d{v} = load(dy_panels, do + uint64({v * lanes}))"
                                      for v in vectors))
                                src(*(f"a{c}_{v} = multiply_add(v{c}, d{v}, a{c}_{v})"
                                      for c, v in tile))
                                src(f"xo += uint64({CB})",
                                    f"do += uint64({KB})")
                            src(*(f"store(partials, {offset}, {name})" for name, offset in slots))
    return src.text()


def _bits_suffix(storage: str | None, input_bits: bool) -> str:
    return "" if storage is None else f"_{storage}_bits" + ("_input" if input_bits else "")


def forward_kernel(tile_pixels: int, tile_channels: int, dtype: str, vector_bits: int,
                   storage: str | None = None, input_bits: bool = False):
    bits = _bits_suffix(storage, input_bits)
    return load_kernel(f"forward_p{tile_pixels}_k{tile_channels}_{dtype}_v{vector_bits}{bits}",
                       lambda: render_forward(tile_pixels, tile_channels, dtype, vector_bits,
                                              storage, input_bits),
                       forward_parameters(storage, input_bits), dtype)


def forward_panels_kernel(tile_pixels: int, tile_channels: int, dtype: str, vector_bits: int,
                          storage: str | None = None, input_bits: bool = False):
    bits = _bits_suffix(storage, input_bits)
    return load_kernel(f"forward_panels_p{tile_pixels}_k{tile_channels}_{dtype}_v{vector_bits}"
                       f"{bits}",
                       lambda: render_forward_panels(tile_pixels, tile_channels, dtype,
                                                     vector_bits, storage, input_bits),
                       forward_panels_parameters(storage, input_bits), dtype)


def backward_filter_kernel(tile_in_channels: int, tile_channels: int, dtype: str,
                           vector_bits: int, pixels_outer: bool = True,
                           storage: str | None = None):
    order = "rows" if pixels_outer else "tiles"
    bits = _bits_suffix(storage, input_bits=False)
    return load_kernel(f"wgrad_c{tile_in_channels}_k{tile_channels}_{order}_{dtype}"
                       f"_v{vector_bits}{bits}",
                       lambda: render_backward_filter(tile_in_channels, tile_channels, dtype,
                                                      vector_bits, pixels_outer, storage),
                       backward_filter_parameters(storage), dtype)


def backward_filter_panels_kernel(tile_in_channels: int, tile_channels: int, dtype: str,
                                  vector_bits: int, storage: str | None = None):
    bits = _bits_suffix(storage, input_bits=False)
    return load_kernel(f"wgrad_c{tile_in_channels}_k{tile_channels}_panels_{dtype}"
                       f"_v{vector_bits}{bits}",
                       lambda: render_backward_filter_panels(tile_in_channels, tile_channels,
                                                             dtype, vector_bits, storage),
                       backward_filter_panels_parameters(storage), dtype)
