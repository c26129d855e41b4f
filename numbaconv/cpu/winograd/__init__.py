"""The winograd family: 3×3 stride-1 convolutions in F(m×m, 3×3) tiles (:mod:`.transforms`),
all three primitives.

A call: the input zero-padded once (so that every α×α tile lies inside it), the filter
transformed (:func:`.kernels.transformed_filter`; kept from call to call while its bits
stay the same, :mod:`.filter_cache`), then chunk by chunk of ``chunk_tiles``
tiles (sized to stay in cache): the data tiles transformed, α² products
``M[ξν] = V[ξν] · U[ξν]`` (tiles × C by C × K) in one launch of the tiled family's
register-tile kernel (each product one of its phases, a 1×1 convolution), and the
products transformed back into the output. Backward-data is the same on ``dy`` padded by
2 − pad and the filter turned by 180° with its channel axes swapped.

Knobs (:class:`WinogradSchedule`): ``output_tile`` m (2, 4, 6; each dtype only those
accurate enough: :data:`ACCURATE_TILES`), ``register_tile`` and ``loop_order`` of the
products (the tiled family's), ``chunk_tiles`` (derived from :data:`CHUNK_BYTES`; the
tuner also tries half and twice that).

Over another family's schedule (``otherwise``, :func:`kept_transform`): Winograd only on
the calls whose filter has a kept transform (:func:`.filter_cache.kept`: a filter
unchanged since its last calls, as in inference), ``otherwise`` on the rest (a filter's
first calls, and every call once it has changed between two: training). The CPU's choice
puts the chosen schedule under it on every layer Winograd can run (not the tuner: it
times schedules as training calls them).

Backward-filter: the data tiles of x (Bᵀ d B) and of dy (A dy Aᵀ), laid out points outer,
their products summed over the tiles point by point (the tiled family's backward-filter
kernel on a 1×1 convolution of one image row per point, each row a reduction split of its
own), then Gᵀ · sums · G. The rule takes it where the machine's calibration found it
faster than the tiles (:func:`default`).

Non-finite values: a NaN or Inf spreads over its whole tile here (a direct convolution
keeps it to the windows that hold it), and any non-finite operand value, or an overflow in
the transforms, makes some stored output non-finite. The output transform notices that
(:func:`.kernels.render_output`) and the call is computed again by ``otherwise``, or
:func:`fallback`'s schedule, so the result has TensorFlow's pattern.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ...family import Family, run_prepared
from ...geometry import ConvGeometry
from ...machine import this_machine
from ...primitives import primitive as primitive_named
from ...schedule import Schedule
from .. import direct, layout, partials, tiled
from ..scratch import scratch
from ..tasks import TARGET_TASKS
from ..tiled import phases
from ..tiled.templates import COLUMN, PHASE_FIELDS
from . import filter_cache
from .kernels import filter_gradient, input_kernel, output_kernel, transformed_filter
from .transforms import POINTS, transform

#: The output tiles whose error stays within the tolerance every schedule meets (the
#: tuner's verification), by itemsize: ``docs/measurements.md`` has the errors measured.
ACCURATE_TILES = {4: (2, 4), 8: (2, 4, 6)}
#: Bytes of transformed data and products one chunk holds: each chunk pays three launches
#: and its products' partial register tiles, and fewer, larger chunks ran faster up to
#: about this size (measurements, 2026-12-02); the tuner tries half and twice it.
CHUNK_BYTES = 8 * 2**20
LOOP_ORDERS = ("channel_tiles_outer", "pixel_tiles_outer")


@dataclass(frozen=True)
class WinogradSchedule(Schedule):
    """The winograd family's knobs (see the module docstring)."""

    algorithm: ClassVar[str] = "winograd"
    TASK_SPLIT: ClassVar[tuple] = ("chunk_tiles",)
    output_tile: int = 4
    register_tile: tuple = field(default=(8, 32))
    loop_order: str = "channel_tiles_outer"
    chunk_tiles: int = 64
    otherwise: Schedule | None = None

    @property
    def calls_for_every_path(self) -> int:
        # Over ``otherwise``: its run on a filter's first two calls, then the transform
        # made, then reused (filter_cache.kept).
        return 1 if self.otherwise is None else 4

    def __post_init__(self):
        self._require_one_of("output_tile", tuple(POINTS))
        self._require_one_of("loop_order", LOOP_ORDERS)
        self._require_pair("register_tile")
        self._require_positive("chunk_tiles")
        if self.otherwise is not None and (not isinstance(self.otherwise, Schedule)
                                           or self.otherwise.algorithm == self.algorithm):
            raise ValueError(f"otherwise must be another family's schedule, not "
                             f"{self.otherwise!r}")


@dataclass(frozen=True)
class _Plan:
    """One call's arithmetic: the convolution the tiles compute (``source`` → ``result``,
    both NHWC, channels ``(in, out)``), the pads of its source and its tile grid."""

    in_channels: int
    out_channels: int
    result_shape: tuple
    pads: tuple  # (top, bottom, left, right) of the source, negative: cropped
    tiles_h: int
    tiles_w: int

    @property
    def tiles(self) -> int:
        return self.result_shape[0] * self.tiles_h * self.tiles_w


def _plan(primitive: str, g: ConvGeometry, m: int) -> _Plan:
    """Backward-filter tiles the forward's output grid (its data tiles are the forward's)."""
    if primitive in ("forward", "backward_filter"):
        source_height, source_width = g.in_height, g.in_width
        top, left = g.pad_top, g.pad_left
        result, channels = g.output_shape, (g.in_channels, g.out_channels)
    else:  # the full correlation of dy: pads 2 − pad
        source_height, source_width = g.out_height, g.out_width
        top, left = g.filter_height - 1 - g.pad_top, g.filter_width - 1 - g.pad_left
        result, channels = g.input_shape, (g.out_channels, g.in_channels)
    tiles_h, tiles_w = -(-result[1] // m), -(-result[2] // m)
    bottom = tiles_h * m + 2 - source_height - top
    right = tiles_w * m + 2 - source_width - left
    return _Plan(*channels, result, (top, bottom, left, right), tiles_h, tiles_w)


def illegal_reason(primitive: str, g: ConvGeometry, schedule: WinogradSchedule,
                   itemsize: int) -> str | None:
    if (g.filter_height, g.filter_width) != (3, 3):
        return "winograd needs a 3×3 filter"
    if (g.stride_h, g.stride_w, g.dilation_h, g.dilation_w) != (1, 1, 1, 1):
        return "winograd needs stride 1 and dilation 1"
    if g.groups > 1:
        return "winograd is not offered for grouped convolutions"
    if schedule.output_tile not in ACCURATE_TILES.get(itemsize, ()):
        return (f"output tile {schedule.output_tile} is not accurate enough for "
                f"{itemsize}-byte floats")
    rows, columns = schedule.register_tile
    if primitive == "backward_filter":  # the sums' tile: (input, output) channels
        if g.in_channels % rows or g.out_channels % columns:
            return (f"register tile {schedule.register_tile} does not divide (C, K) = "
                    f"({g.in_channels}, {g.out_channels})")
        return None
    channels = primitive_named(primitive).channels(g)
    if channels % columns:
        return f"tile channels {columns} do not divide {channels} channels"
    return None


#: The default rule runs Winograd where the multiply-adds its tiles save per channel pair
#: (:func:`saved_per_filter_value`) are at least this many per value of the transformed
#: filter (α² per channel pair, computed on every call), and both channel counts are at
#: least MIN_CHANNELS. Measured on a full-rate AVX-512 Xeon and on Zen 4 alike (measurements,
#: 2026-12-02 and 2026-12-06, fifth session): 147 (28×28 at batch 1) paid on both, 92 and
#: less (7×7 at batch 8, 14×14 at batch 1) did not.
MIN_SAVED_PER_FILTER_VALUE = 120
MIN_CHANNELS = 64
#: The rule's output tile: F(4×4, 3×3) beat F(2×2, 3×3) on every layer where Winograd paid.
DEFAULT_OUTPUT_TILE = 4


def saved_per_filter_value(primitive: str, g: ConvGeometry, m: int) -> float:
    """Multiply-adds per (input, output) channel pair that F(m×m, 3×3) tiles save against
    the direct convolution (9 per result pixel against α² per tile, the tiles covering
    whole m×m blocks), per value of the pair's transformed filter (α²)."""
    plan = _plan(primitive, g, m)
    points = (m + 2) ** 2
    pixels = math.prod(plan.result_shape[:3])
    return (g.filter_height * g.filter_width * pixels - points * plan.tiles) / points


def default(primitive: str, g: ConvGeometry, itemsize: int, machine,
            backward_filter_pays: bool = False) -> WinogradSchedule | None:
    """The default rule's Winograd schedule for ``g`` where it pays, with the first tile of
    :func:`tile_menu` that divides the channels; else None. Forward and backward-data:
    from :data:`MIN_SAVED_PER_FILTER_VALUE` saved multiply-adds up. Backward-filter: only
    where ``backward_filter_pays`` (the machine's calibration found it faster on
    :data:`BACKWARD_FILTER_PROBE`), from :data:`MIN_SAVED_BACKWARD_FILTER` up, its sums at
    least :data:`MIN_SUMS_INTENSITY` multiply-adds per value they read."""
    if primitive == "backward_filter" and not (
            backward_filter_pays and sums_intensity(g) >= MIN_SUMS_INTENSITY):
        return None
    if min(g.in_channels, g.out_channels) < MIN_CHANNELS:
        return None
    least = (MIN_SAVED_BACKWARD_FILTER if primitive == "backward_filter"
             else MIN_SAVED_PER_FILTER_VALUE)
    if saved_per_filter_value(primitive, g, DEFAULT_OUTPUT_TILE) < least:
        return None
    return _first_legal(WinogradSchedule(output_tile=DEFAULT_OUTPUT_TILE), primitive, g,
                        itemsize, machine)


#: Backward-filter's sums are α² values per channel pair on every call, written and read
#: again as the transform back reads them, where the direct kernels keep 9: network passes
#: (every layer after the others, its data out of cache) on Zen 5 ran ResNet-50's res3
#: 3×3 at batch 1 (147 saved) slower than the tiles, res4 at batch 8 (264) and up faster
#: or even (measurements, 2026-12-08).
MIN_SAVED_BACKWARD_FILTER = 250
#: The sums read α²·(C + K) values of each tile for α²·C·K multiply-adds: C·K / (C + K) a
#: value. With 64 channels in and out (32) they lost to the tiles in those passes on two
#: layers of four (ResNet-50's res2 at batch 1, VGG-16's conv1_2 at batch 8); 64 in and 128
#: out (43) and more won.
MIN_SUMS_INTENSITY = 40
#: Calibration's backward-filter probe (input and filter shapes, SAME): ResNet-50's res3
#: 3×3 layer at batch 8, inside the rule's range (1176 saved, intensity 64).
BACKWARD_FILTER_PROBE = ((8, 28, 28, 128), (3, 3, 128, 128))


def sums_intensity(g: ConvGeometry) -> float:
    """Backward-filter's multiply-adds per value its sums read (see
    :data:`MIN_SUMS_INTENSITY`)."""
    return g.in_channels * g.out_channels / (g.in_channels + g.out_channels)


def tile_menu(primitive: str, itemsize: int, machine) -> list:
    """The register tiles Winograd tries, in order (the rule takes the first legal one).
    Backward-filter's sums: the tiled family's backward-filter menu. Forward and
    backward-data's products: the tiled family's menu with, among the tiles of its first
    tile's accumulator count, the fewest loads per multiply-add first. The products are
    plain GEMMs: each step broadcasts one value per row and loads one vector per column
    vector, ``1/rows + 1/vectors`` loads per FMA, where the direct kernels' order (two
    vectors wide first) was calibrated on convolutions; the fewer loads ran most whole
    Winograd calls measured faster and none clearly slower (measurements, 2026-12-08)."""
    if primitive == "backward_filter":
        return tiled.tile_menu("backward_filter", itemsize, machine)
    menu = tiled.tile_menu("forward", itemsize, machine)
    lanes = machine.lanes(itemsize)
    accumulators = menu[0][0] * menu[0][1]
    widest = sorted((tile for tile in menu if tile[0] * tile[1] == accumulators),
                    key=lambda tile: 1 / tile[0] + lanes / tile[1])
    return widest + [tile for tile in menu if tile not in widest]


def _first_legal(base: WinogradSchedule, primitive: str, g: ConvGeometry, itemsize: int,
                 machine) -> WinogradSchedule | None:
    """``base`` with the first tile of :func:`tile_menu` that is legal for ``g``, fitted."""
    for tile in tile_menu(primitive, itemsize, machine):
        schedule = dataclasses.replace(base, register_tile=tile)
        if illegal_reason(primitive, g, schedule, itemsize) is None:
            return fit(schedule, primitive, g, itemsize)
    return None


#: With the transform kept, Winograd beat the tiles where its products make at least this
#: many tiles (their rows: a few register tiles' worth) and save at least MIN_KEPT_SAVING
#: times the direct convolution's multiply-adds: F(4×4) on 14×14 images at batch 1 (16
#: tiles, 3.06× fewer) did; on 7×7 at batch 1 F(4×4) makes 4 tiles, and F(2×2)'s 16 save
#: 1.72×, which was no faster in the benchmark's blocks (measurements, 2026-12-07).
MIN_KEPT_TILES = 16
MIN_KEPT_SAVING = 2.0


def kept_transform(primitive: str, g: ConvGeometry, itemsize: int, machine,
                   otherwise: Schedule) -> WinogradSchedule | None:
    """Winograd over ``otherwise`` (see the module docstring) where it is legal, forward and
    backward-data, both channel counts at least MIN_CHANNELS, with the larger output tile
    whose products make :data:`MIN_KEPT_TILES` tiles and save :data:`MIN_KEPT_SAVING`;
    None where neither does."""
    if (primitive == "backward_filter" or otherwise.algorithm == WinogradSchedule.algorithm
            or min(g.in_channels, g.out_channels) < MIN_CHANNELS):
        return None
    for m in (4, 2):
        plan = _plan(primitive, g, m)
        saving = 9 * math.prod(plan.result_shape[:3]) / ((m + 2) ** 2 * plan.tiles)
        if plan.tiles >= MIN_KEPT_TILES and saving >= MIN_KEPT_SAVING:
            return _first_legal(WinogradSchedule(output_tile=m, otherwise=otherwise),
                                primitive, g, itemsize, machine)
    return None


def _chunk_for(plan: _Plan, alpha: int, itemsize: int, budget: int) -> int:
    per_tile = alpha * alpha * (plan.in_channels + plan.out_channels) * itemsize
    return max(1, min(plan.tiles, budget // per_tile))


def fit(schedule: WinogradSchedule, primitive: str, g: ConvGeometry,
        itemsize: int) -> WinogradSchedule:
    """The chunk for ``g``: :data:`CHUNK_BYTES` of transformed data and products, or as
    much as the transformed filter if that is more (each chunk reads all of it again)."""
    plan = _plan(primitive, g, schedule.output_tile)
    alpha = schedule.output_tile + 2
    filter_bytes = alpha * alpha * plan.in_channels * plan.out_channels * itemsize
    chunk = _chunk_for(plan, alpha, itemsize, max(CHUNK_BYTES, filter_bytes))
    return dataclasses.replace(schedule, chunk_tiles=chunk)


def candidates(primitive: str, g: ConvGeometry, itemsize: int, section: dict, machine) -> list:
    tiles = [tile for tile in tile_menu(primitive, itemsize, machine)
             if illegal_reason(primitive, g, WinogradSchedule(register_tile=tile), itemsize)
             is None][:section.get("tiles", 1)]
    found = []
    for m in section.get("output_tile", []):
        for tile in tiles:
            base = fit(WinogradSchedule(output_tile=m, register_tile=tuple(tile)), primitive,
                       g, itemsize)
            for scale in section.get("chunk_scales", [1]):
                found.append(dataclasses.replace(base,
                                                 chunk_tiles=max(1, int(base.chunk_tiles * scale))))
    return found


def workspace_bytes(primitive: str, g: ConvGeometry, schedule: WinogradSchedule,
                    itemsize: int) -> int:
    plan = _plan(primitive, g, schedule.output_tile)
    alpha = schedule.output_tile + 2
    batch = plan.result_shape[0]
    padded = batch * (plan.tiles_h * schedule.output_tile + 2) * (
        plan.tiles_w * schedule.output_tile + 2) * plan.in_channels
    filter_ = alpha * alpha * plan.in_channels * plan.out_channels
    chunk = min(schedule.chunk_tiles, plan.tiles)
    chunks = chunk * alpha * alpha * (plan.in_channels + plan.out_channels)
    if primitive == "backward_filter":  # dy padded to whole tiles; the sums, twice
        dy = batch * plan.tiles_h * plan.tiles_w * schedule.output_tile ** 2 * g.out_channels
        return (padded + dy + chunks + 2 * filter_ + math.prod(g.filter_shape)) * itemsize
    return (padded + filter_ + chunks) * itemsize


# --- runs ---------------------------------------------------------------------------------

def _strides(points: int, channels: int) -> tuple[int, int]:
    """(tile stride, point stride) of a chunk's tiles × α² × channels array: tile by tile,
    each tile's α² rows of channels contiguous (the data transform writes whole tiles; the
    products ran as fast as with the points outer)."""
    return points * channels, channels


def products_launcher(tiles: int, u_shape: tuple, schedule: WinogradSchedule,
                      dtype: str) -> Callable:
    """``launch(v, u, out)``: out[t, p, :] = v[t, p, :] @ u[p] for each of the α² points p
    and ``tiles`` tiles, in one launch of the tiled family's forward kernel: point p is a
    phase, a 1×1 convolution of the tiles as pixels (v: tiles × α² × C, u [α², K/KB, C, KB]
    packed, out: tiles × α² × K, as :func:`_strides` lays them out; u and out flat). The
    phase table is built at once, not phase by phase (:func:`phases.launcher`'s way)."""
    points, k_tiles, in_channels, tile_channels = u_shape
    out_channels = k_tiles * tile_channels
    v_tile, v_point = _strides(points, in_channels)
    out_tile, out_point = _strides(points, out_channels)
    per_point = -(-tiles // schedule.register_tile[0])
    point = np.arange(points, dtype=np.int64)
    table = np.zeros((points, len(PHASE_FIELDS)), np.int64)
    for name, value in dict(
            first_tile=point * per_point, out_height=1, out_width=tiles, stride_h=1,
            stride_w=1, dilation_h=1, dilation_w=1, filter_height=1, filter_width=1,
            w_offset=point * k_tiles * in_channels * tile_channels, x_offset=point * v_point,
            out_offset=point * out_point, out_col_stride=out_tile).items():
        table[:, COLUMN[name]] = value
    total = points * per_point
    shared = layout.TiledFilter(1, 1, in_channels, out_channels, tile_channels, offset=0,
                                tile_stride=in_channels * tile_channels, row_stride=0,
                                col_stride=0, channel_stride=tile_channels)
    return phases.table_launcher((1, 1, tiles, v_tile), shared, table, total, schedule, dtype,
                                 k_groups=max(1, min(k_tiles, -(-TARGET_TASKS // total))))


def _data_source(shape: tuple, dtype, pads: tuple, by_numpy: bool = False) -> Callable:
    """What the data kernels read of an operand: its zero-padded copy (by NumPy where
    ``by_numpy``), or where nothing is padded the operand itself if writable (they take
    writable arrays and write nothing)."""
    if any(pads):
        return layout.padder(shape, dtype, *pads, copy=True, by_numpy=by_numpy)
    return lambda a: a if a.flags.writeable else a.copy()


def _prepare_tiles(source_shape: tuple, plan: _Plan, schedule: WinogradSchedule,
                   dtype: np.dtype, rotate: bool,
                   by_numpy: bool = False) -> tuple[Callable, Callable]:
    """``(filter_of, tiles)``: ``filter_of(w)`` the flat transformed filter (kept from call
    to call, :mod:`.filter_cache`; None where the schedule runs only with a kept one and w
    has none), ``tiles(source, u)`` the result of ``plan`` in Winograd tiles, or None when
    an output came out non-finite (the caller computes it another way). Everything the
    shapes fix (the pad, the kernels and their arguments per chunk, the products' phase
    tables) is made here, once: a call of a small layer paid about as much again for it."""
    m = schedule.output_tile
    t = transform(m)
    points = t.alpha * t.alpha
    filter_matrix = np.array(t.floats("filter"))
    machine = this_machine()
    lanes = machine.lanes(dtype.itemsize)
    pad = _data_source(source_shape, dtype, plan.pads, by_numpy)
    padded_height, padded_width = plan.tiles_h * m + 2, plan.tiles_w * m + 2
    chunk = min(schedule.chunk_tiles, plan.tiles)
    tasks = min(chunk, TARGET_TASKS)
    to_tiles = input_kernel(m, "data", dtype.name, machine.vector_bits, lanes)
    from_tiles = output_kernel(m, dtype.name, machine.vector_bits, lanes)
    v_tile, v_point = _strides(points, plan.in_channels)
    out_tile, out_point = _strides(points, plan.out_channels)
    register_columns = schedule.register_tile[1]
    u_shape = (points, plan.out_channels // register_columns, plan.in_channels,
               register_columns)
    launchers = {}  # tiles per chunk -> the products' launch (the last chunk may be short)
    chunks = []  # (tasks, data transform, products, output transform) of each chunk
    for first in range(0, plan.tiles, chunk):
        count = min(chunk, plan.tiles - first)
        work = min(count, tasks)
        if count not in launchers:
            launchers[count] = products_launcher(count, u_shape, schedule, dtype.name)
        grid = dict(first_tile=first, tiles=count, tiles_h=plan.tiles_h, tiles_w=plan.tiles_w)
        chunks.append((work, to_tiles.bind(
            **grid, padded_height=padded_height, padded_width=padded_width,
            channels=plan.in_channels, tile_stride=v_tile, point_stride=v_point, tasks=work),
            launchers[count], from_tiles.bind(
                **grid, out_height=plan.result_shape[1], out_width=plan.result_shape[2],
                channels=plan.out_channels, tile_stride=out_tile, point_stride=out_point,
                tasks=work)))
    data_size = chunk * points * plan.in_channels
    filter_size = math.prod(u_shape)
    products_size = chunk * points * plan.out_channels

    transform_key = (m, register_columns, rotate)

    def filter_of(w):
        def fill(out):
            transformed_filter(w, t, register_columns, rotate, filter_matrix, out)
        if schedule.otherwise is not None:
            return filter_cache.kept(w, transform_key, filter_size, fill)
        return filter_cache.transformed(w, transform_key, filter_size, fill)

    def tiles(source, u):
        xp = pad(source).reshape(-1)
        result = np.empty(plan.result_shape, dtype)
        v = scratch("winograd data tiles", data_size, dtype)
        found = scratch("winograd products", products_size, dtype)
        nonfinite = np.empty(tasks, dtype)
        out = result.reshape(-1)
        for work, to_data, multiply, from_products in chunks:
            to_data(xp, v)
            multiply(v, u, found)
            from_products(found, out, nonfinite)
            if np.any(nonfinite[:work] != 0):
                return None
        return result

    return filter_of, tiles


def _sums_geometry(tiles: int, points: int, in_channels: int, out_channels: int) -> ConvGeometry:
    """Backward-filter's sums over ``tiles`` tiles as the tiled family's backward-filter of
    a 1×1 convolution on an image of one row per point, each tile a pixel of it (the data
    tiles laid out points outer, :func:`_point_strides`), whose reduction splits are the
    rows (:func:`_sums_schedule`): split p sums point p's products alone."""
    return ConvGeometry(batch=1, in_height=points, in_width=tiles, in_channels=in_channels,
                        out_channels=out_channels, filter_height=1, filter_width=1)


def _sums_schedule(schedule: WinogradSchedule, points: int) -> tiled.TiledSchedule:
    return tiled.TiledSchedule(loop_order="channel_tiles_outer",
                               register_tile=schedule.register_tile, reduction_splits=points)


def _point_strides(tiles: int, channels: int) -> tuple[int, int]:
    """(tile stride, point stride) of a chunk's α² × tiles × channels array: each point's
    tiles one contiguous row (the sums read a point's tiles one after another; tile by
    tile, α²·C values apart, they fell into a few L1 sets)."""
    return channels, tiles * channels


def _prepare_filter_tiles(g: ConvGeometry, schedule: WinogradSchedule,
                          dtype: np.dtype) -> Callable:
    """``in_tiles(x, dy)``: backward-filter in Winograd tiles, or None where the result is
    not finite. Per chunk the data tiles of x (Bᵀ d B) and of dy (A dy Aᵀ), their products
    summed over the tiles point by point (the tiled family's backward-filter kernel), the
    first chunk's sums the total and each later chunk's added to it; then Gᵀ · sums · G.
    What the shapes fix (pads, the kernels' arguments per chunk, the sums' runs) is made
    here, once, as :func:`_prepare_tiles` does."""
    m = schedule.output_tile
    t = transform(m)
    points = t.alpha * t.alpha
    machine = this_machine()
    lanes = machine.lanes(dtype.itemsize)
    plan = _plan("backward_filter", g, m)
    grid_height, grid_width = plan.tiles_h * m, plan.tiles_w * m  # dy's, in whole tiles
    sources = ((_data_source(g.input_shape, dtype, plan.pads), grid_height + 2,
                grid_width + 2, g.in_channels, "data"),
               (_data_source(g.output_shape, dtype, (0, grid_height - g.out_height, 0,
                                                         grid_width - g.out_width)),
                grid_height, grid_width, g.out_channels, "gradient"))
    chunk = min(schedule.chunk_tiles, plan.tiles)
    sums_schedule = _sums_schedule(schedule, points)
    sums_runs = {}  # (tiles, scratch role) -> the sums' run (the last chunk may be short)
    chunks = []  # (tiles, the two data transforms, the sums) of each chunk
    for first in range(0, plan.tiles, chunk):
        count = min(chunk, plan.tiles - first)
        transforms = []
        for _, height, width, channels, kind in sources:
            tile_stride, point_stride = _point_strides(count, channels)
            transforms.append(input_kernel(m, kind, dtype.name, machine.vector_bits,
                                           lanes).bind(
                first_tile=first, tiles=count, tiles_h=plan.tiles_h, tiles_w=plan.tiles_w,
                padded_height=height, padded_width=width, channels=channels,
                tile_stride=tile_stride, point_stride=point_stride,
                tasks=min(count, TARGET_TASKS)))
        # The first chunk's sums are the total, in a scratch buffer of their own.
        role = "winograd sums" if first == 0 else "winograd chunk"
        if (count, role) not in sums_runs:
            sums_runs[count, role] = tiled.backward_filter_splits_into_scratch(
                _sums_geometry(count, points, g.in_channels, g.out_channels), sums_schedule,
                dtype, role)
        chunks.append((count, *transforms, sums_runs[count, role]))
    sizes = [chunk * points * channels for _, _, _, channels, _ in sources]

    def in_tiles(x, dy):
        xp, dyp = (source(operand).reshape(-1)
                   for (source, *_), operand in zip(sources, (x, dy)))
        v = scratch("winograd data tiles", sizes[0], dtype)
        y = scratch("winograd gradient tiles", sizes[1], dtype)
        total = None
        for count, to_data, to_gradient, sums in chunks:
            to_data(xp, v)
            to_gradient(dyp, y)
            part = sums(v[:count * points * g.in_channels].reshape(1, points, count, -1),
                        y[:count * points * g.out_channels].reshape(1, points, count, -1))
            if total is None:
                total = part
            else:
                partials.add_into(total.reshape(-1), part.reshape(-1))
        dw = filter_gradient(total.reshape(points, g.in_channels, g.out_channels), t,
                             g.filter_shape)
        return dw if np.isfinite(dw).all() else None

    return in_tiles


def fallback(primitive: str, g: ConvGeometry, itemsize: int):
    """What computes a call whose Winograd result was not finite (without ``otherwise``):
    the tiled family's first legal preference (the direct loop if none is)."""
    for schedule in tiled.preferences(primitive, g, itemsize, this_machine()):
        if tiled.illegal_reason(primitive, g, schedule, itemsize) is None:
            return schedule
    return direct.default(primitive, g, itemsize)


def prepare(primitive: str, g: ConvGeometry, schedule: WinogradSchedule, dtype,
            copies_by_numpy: bool = False, otherwise: Callable | None = None) -> Callable:
    """The run of ``primitive`` on ``g`` as a function of its two operands (C-contiguous
    NHWC / HWIO of ``dtype``, in the primitive table's order). ``otherwise``: the prepared
    run of ``schedule.otherwise`` (:func:`numbaconv.cpu.families.prepare` makes it), which
    computes the calls whose filter has no kept transform; it and, without one,
    :func:`fallback`'s schedule compute a call whose Winograd result is not finite.
    ``copies_by_numpy``: the padded copy made by NumPy, whatever its size (nothing to
    compile)."""
    dtype = np.dtype(dtype)
    if (schedule.otherwise is None) != (otherwise is None):
        raise ValueError("a Winograd schedule over another family's needs that schedule's "
                         "prepared run (numbaconv.cpu.families.prepare), and only it")
    if primitive == "backward_filter":
        in_tiles = _prepare_filter_tiles(g, schedule, dtype)
    else:
        plan = _plan(primitive, g, schedule.output_tile)
        source_shape = g.input_shape if primitive == "forward" else g.output_shape
        filter_of, tiles = _prepare_tiles(source_shape, plan, schedule, dtype,
                                          rotate=primitive == "backward_data",
                                          by_numpy=copies_by_numpy)

        def in_tiles(source, w):
            u = filter_of(w)
            return None if u is None else tiles(source, u)

    def winograd(first, second):
        result = in_tiles(first, second)
        if result is not None:
            return result
        if otherwise is not None:
            return otherwise(first, second)
        other = fallback(primitive, g, dtype.itemsize)
        family = tiled.FAMILY if isinstance(other, tiled.TiledSchedule) else direct.FAMILY
        return family.run(primitive, (first, second), g, other)

    return winograd


#: Each run takes C-contiguous NHWC / HWIO operands, in the primitive table's order.
FAMILY = Family("winograd", WinogradSchedule, candidates, illegal_reason, workspace_bytes, fit,
                run_prepared(prepare), prepare)
