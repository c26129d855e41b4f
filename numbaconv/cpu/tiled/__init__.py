"""The tiled family: generated register-tile kernels (:mod:`.templates`) on a zero-padded
copy of the input (of ``dy`` for backward-data), launched as a table of phases
(:mod:`.phases`).

Knobs (:class:`TiledSchedule`):

- ``register_tile``: (rows, channels) of the accumulator tile; rows are output pixels
  (forward, backward-data) or input channels (backward-filter), channels the vectorised
  output channels.
- ``loop_order``: the order of a task's tiles, ``pixel_tiles_outer`` or
  ``channel_tiles_outer``; also ``packed_panels``: for forward and backward-data, channel
  tiles outer, each task packing the filter panel of each of its channel tiles itself (no
  pass over the whole filter per call), its task split favouring few pixel groups so that
  each panel is packed about once; for backward-filter, a GEMM per tap over blocks of
  pixels (:func:`backward_filter_block_pixels`), dy and x packed into panels per block,
  the tiles of output channels outer so that each dy panel stays in L1.
- ``channel_block`` (forward, backward-data): the contiguous channels one task owns, a
  multiple of the tile's.
- ``reduction_splits`` (backward-filter): as the direct family's.

Tasks: (pixel groups × channel groups) for forward and backward-data, (splits × taps ×
input-channel groups) for backward-filter (:func:`fit` and the launches).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numba
import numpy as np

from ...family import Family, run_prepared
from ...geometry import ConvGeometry
from ...machine import this_machine
from ...primitives import TENSORS
from ...primitives import primitive as primitive_named
from ...schedule import Schedule
from .. import half, layout, partials
from ..scratch import scratch
from ..tasks import TARGET_TASKS, channel_block_for, groups_for
from . import phases
from .templates import backward_filter_kernel, backward_filter_panels_kernel

LOOP_ORDERS = ("pixel_tiles_outer", "channel_tiles_outer", "packed_panels")
#: Backward-data packs its panels per task only for filters at least this large (smaller
#: ones are packed once per call, which is cheap for them).
PANEL_FILTER_BYTES = 2**20
#: Backward-filter re-reads x and dy once per group of channel tiles: beyond this many bytes
#: of them (no longer in cache) the split favours the rows (:func:`backward_filter_splits`).
STREAMED_BYTES = 4 * 2**20
#: Backward-filter in cache cuts its rows in at least this many splits where x and dy
#: outweigh the partial filters :data:`ROW_SPLIT_BYTES_PER_FILTER`-fold. Numba gives each
#: thread a contiguous run of tasks, splits outermost, so each thread reads a part of x
#: and dy, not all of them: the part it (or the layer before, splitting its pixels the same
#: way) just wrote; lines another core just wrote are slow to read. A constant, not the
#: thread count, so that results do not depend on the machine; more splits cost more
#: partial filters and ran slower on cached operands.
MIN_ROW_SPLITS = 2
ROW_SPLIT_BYTES_PER_FILTER = 8
#: A backward-filter task's share of a tap's partial filter, read and written every row:
#: small enough to stay in any x86 core's L2 beside the rows of x and dy.
TASK_FILTER_BYTES = 64 * 2**10
#: Backward-filter's tiles load and store their sums once per block of output rows of
#: about this many pixels (once per row, short rows of 7 or 14 pixels paid for it).
BLOCK_PIXELS = 48
#: Backward-filter's packed panels: a block's panel of dy per tile of output channels
#: within half of L1 (:data:`layout.L1_BYTES`), and the panels a block reuses within this
#: many bytes: half of the smallest L2 of x86 cores in use (256 KB).
PANELS_L2_BYTES = 128 * 2**10
#: Backward-filter's packed panels pay from this many output channels per group (each x
#: value packed is reused by all of them; at 64, ResNet-50's res2, the copy cost more than
#: the panels gained).
PANELS_MIN_OUT_CHANNELS = 128
#: Backward-filter's packed panels give a task all the taps where its share of the
#: partial filter is at most this large: ResNet-50's res3_3x3 (590 KB) ran faster so, its
#: res4 and res5 3×3 (1.2-4.7 MB) with a tap per task (docs/measurements.md).
PANELS_TASK_FILTER_BYTES = 2**20
#: What packing a byte of dy costs against loading or storing a byte of the partial filter
#: in a block's pass over it (a gather into panels, against a stream): the weight under
#: which the model picks, of ResNet-50's 1×1 layers at b8, the c groups that ran fastest
#: (more for res4 and res5 squeeze, whose x is 1024-2048 channels wide; the fewest else).
PACKED_DY_COST = 4
#: What writing and summing a partial filter's byte costs against packing a dy byte.
PARTIAL_FILTER_COST = 4
#: x86 cores' L1 data caches come in ways of 4 KB (8-12 ways; their size, the smaller
#: assumed: :data:`layout.L1_BYTES`).
L1_WAY_BYTES = 4 * 2**10
#: Backward-filter packs a block's x only for at least this many tiles of output channels
#: per panel (its copy moves a tile row's values one by one, about a tile pass's work), and
#: only where L1 keeps at most this many lines at x's pixel step (where it keeps more, the
#: tiles' fetches from L2 cost no more than the copy).
MIN_X_PANEL_TILES = 16
MAX_X_LINES_HELD = 16
#: bfloat16 bits packed by pixel tiles outer's blocks (backward_filter_packs_half_bits)
#: where each packed x value feeds at least this many vectors of multiply-adds: on
#: MobileNetV2's 1×1 layers 2 lost to the widened copies, 3-12 gained (measurements,
#: 2026-12-07, sixteenth session).
MIN_PACKED_X_REUSE = 3
#: A half type's 1×1 backward-filter runs packed panels (which widen x and dy as they pack
#: them) where float32's choice is pixel tiles outer and calibration found the panels
#: faster, from this many output channels a group: on Zen 3, MobileNetV2's 1×1 layers of
#: 32-96 gained over the rows and their widening (least at 32), 16 and 24 lost; on Zen 5
#: the rows won at 32-96 (measurements, 2026-12-07, nineteenth and twentieth sessions).
HALF_PANELS_MIN_OUT_CHANNELS = 32
#: Tiled forward and backward-data broadcast bfloat16 input bits themselves
#: (broadcasts_half_input) where each input value is broadcast at most this many times
#: (once per channel tile of its group's outputs): on MobileNetV2's 1×1 layers, 1-4
#: broadcasts gained over the widened copy, its expand layers' 6 and more lost
#: (measurements, 2026-12-07, seventeenth session).
MAX_HALF_INPUT_BROADCASTS = 4
#: Tiles of the machine's menu a search space of ``register_tile: model`` offers.
MODEL_TILES = 5
#: Backward-filter's packed panels come with the first this many of a space's tiles (each
#: a kernel to compile and time: the default tuning run's 5 minutes are nearly full).
PANEL_TILES = 3
#: Backward-filter tile rows (input channels): divisors of common channel counts.
ROW_DIVISORS = (1, 2, 3, 4, 6, 8, 12, 16)


@dataclass(frozen=True)
class TiledSchedule(Schedule):
    """The tiled family's knobs (see the module docstring)."""

    algorithm: ClassVar[str] = "tiled"
    TASK_SPLIT: ClassVar[tuple] = ("channel_block", "reduction_splits")
    loop_order: str = "pixel_tiles_outer"
    channel_block: int = 64
    register_tile: tuple = field(default=(4, 16))
    reduction_splits: int = 1

    def __post_init__(self):
        self._require_one_of("loop_order", LOOP_ORDERS)
        self._require_positive("channel_block", "reduction_splits")
        self._require_pair("register_tile")


def illegal_reason(primitive: str, g: ConvGeometry, schedule: TiledSchedule,
                   itemsize: int) -> str | None:
    tile = schedule.register_tile
    if primitive == "backward_filter":
        if not tile_fits(primitive, g, tile):
            return (f"register tile {tile} does not divide (C, K) of a "
                    f"group, ({g.in_channels_per_group}, {g.out_channels_per_group})")
        return None
    channels, cols = primitive_named(primitive).group_channels(g), tile[1]
    if not tile_fits(primitive, g, tile) or schedule.channel_block % cols:
        return f"tile channels {cols} do not divide {channels} channels or the channel block"
    return None


def fit(schedule: TiledSchedule, primitive: str, g: ConvGeometry, itemsize: int) -> TiledSchedule:
    """The task split for ``g``: reduction splits (backward-filter) or the channel block."""
    rows, cols = schedule.register_tile
    if primitive == "backward_filter":
        splits = (backward_filter_panel_splits(g, itemsize)
                  if schedule.loop_order == "packed_panels"
                  else backward_filter_splits(g, schedule.register_tile, itemsize))
        return dataclasses.replace(schedule, reduction_splits=splits)
    channels = primitive_named(primitive).channels(g)
    if schedule.loop_order == "packed_panels":
        # Channel tiles split into about TARGET_TASKS groups first: each pixel group packs
        # every panel of its channel group again.
        block = cols * max(1, channels // cols // TARGET_TASKS)
    else:
        task_rows = g.batch * (g.out_height if primitive == "forward" else g.in_height)
        block = channel_block_for(channels, task_rows, multiple=cols)
    return dataclasses.replace(schedule, channel_block=block)


def _activation_bytes(g: ConvGeometry, itemsize: int) -> int:
    """Backward-filter's bytes of x and dy (x counted at dy's pixels)."""
    return g.batch * g.out_height * g.out_width * (g.in_channels + g.out_channels) * itemsize


def _dy_bytes(g: ConvGeometry, itemsize: int) -> int:
    return g.batch * g.out_height * g.out_width * g.out_channels * itemsize


def _split_pixels(g: ConvGeometry, splits: int) -> int:
    """The output pixels of the largest of backward-filter's ``splits`` splits of the rows."""
    return -(-g.batch * g.out_height // max(1, splits)) * g.out_width


def _filter_bytes(g: ConvGeometry, itemsize: int) -> int:
    return math.prod(g.filter_shape) * itemsize


def streamed_reduction(g: ConvGeometry, itemsize: int) -> bool:
    """Whether backward-filter's x and dy outgrow the caches (:data:`STREAMED_BYTES`)."""
    return _activation_bytes(g, itemsize) > STREAMED_BYTES


def backward_filter_splits(g: ConvGeometry, tile: tuple, itemsize: int) -> int:
    """Backward-filter's reduction splits for ``tile``. A launch runs tasks of (split,
    group of taps, group of input-channel tiles); each task reads all of its rows' dy
    again, each split adds a partial filter to sum. Where x and dy stay in cache, every
    tap is a group of its own, the channel tiles are cut only as far as the threads need
    (:func:`_thread_groups`), and the rows only where taps and tiles are fewer than
    TARGET_TASKS; where they stream, taps and channel tiles are cut only as
    far as a task's share of the partial filter (read and written every row) must be to
    fit :data:`TASK_FILTER_BYTES`, and the rows for the rest of the tasks. In cache, the
    rows are still cut in :data:`MIN_ROW_SPLITS` where x and dy dwarf the filter."""
    rows, cols = tile
    taps = g.filter_height * g.filter_width
    c_tiles = g.in_channels_per_group // rows
    task_rows = g.batch * g.out_height
    if not streamed_reduction(g, itemsize):
        splits = groups_for(task_rows, taps * c_tiles * (g.out_channels // cols))
        filter_bytes = _filter_bytes(g, itemsize)
        if _activation_bytes(g, itemsize) >= ROW_SPLIT_BYTES_PER_FILTER * filter_bytes:
            splits = max(splits, min(MIN_ROW_SPLITS, task_rows))
        return splits
    tap_groups = _shared_tap_groups(g, itemsize)
    tap_filter_bytes = g.in_channels_per_group * g.out_channels * itemsize
    c_groups = 1 if tap_groups < taps else max(
        1, min(c_tiles, -(-tap_filter_bytes // TASK_FILTER_BYTES)))
    return groups_for(task_rows, tap_groups * c_groups)


def _shared_tap_groups(g: ConvGeometry, itemsize: int) -> int:
    """The fewest groups of taps whose partial filters fit :data:`TASK_FILTER_BYTES`."""
    taps = g.filter_height * g.filter_width
    return max(1, min(taps, -(-_filter_bytes(g, itemsize) // TASK_FILTER_BYTES)))


def backward_filter_tap_groups(g: ConvGeometry, splits: int, itemsize: int) -> int:
    """The groups of taps a launch with ``splits`` splits cuts the filter into: one per tap
    where x and dy stay in cache; where they stream, as few as fit (each reads dy again),
    more only where the splits leave too few tasks (:func:`backward_filter_splits`)."""
    taps = g.filter_height * g.filter_width
    if not streamed_reduction(g, itemsize):
        return taps
    return max(_shared_tap_groups(g, itemsize), min(taps, -(-TARGET_TASKS // splits)))


def candidates(primitive: str, g: ConvGeometry, itemsize: int, section: dict, machine) -> list:
    if g.is_depthwise:
        # The depthwise family's layers; the narrowest tiles would fit a channel
        # multiplier of 2 where a quarter vector is 2 lanes (AVX2), at a quarter of the lanes.
        return []
    orders = section.get("loop_order", [])
    if primitive == "backward_filter":
        # Row by row through every tile of a task beats tile by tile through every row on
        # every layer measured: that order is not timed, nor packed panels where they
        # lost (:func:`backward_filter_panels_pay`).
        orders = [order for order in orders if order == "pixel_tiles_outer" or (
            order == "packed_panels" and backward_filter_panels_pay(g, itemsize))]
    tiles = section.get("register_tile", {}).get(primitive, [])
    if tiles == "model":
        tiles = tile_menu(primitive, itemsize, machine)
        if g.groups > 1:  # the tiles that fit a group's channels
            tiles = [tile for tile in tiles + narrow_tiles(primitive, itemsize, machine)
                     if tile_fits(primitive, g, tile)]
        tiles = tiles[:MODEL_TILES]
    schedules = [TiledSchedule(loop_order=order, register_tile=tuple(tile))
                 for tile in tiles for order in orders]
    if primitive == "backward_filter":
        panel_tiles = [tuple(tile) for tile in tiles[:PANEL_TILES]]
        schedules = [s for s in schedules
                     if s.loop_order != "packed_panels" or s.register_tile in panel_tiles]
    return [fit(schedule, primitive, g, itemsize) for schedule in schedules]


def tile_fits(primitive: str, g: ConvGeometry, tile: tuple) -> bool:
    """Whether ``tile`` divides a group's channels (a tile never spans two groups):
    backward-filter's (input, output) channels, else the channels the primitive writes."""
    rows, cols = tile
    if primitive == "backward_filter":
        return g.in_channels_per_group % rows == 0 and g.out_channels_per_group % cols == 0
    return primitive_named(primitive).group_channels(g) % cols == 0


def tile_menu(primitive: str, itemsize: int, machine) -> list:
    """Register tiles for this machine, in the order the default rule tries them.

    A tile of ``rows`` × ``vectors`` vectors of channels keeps ``rows · vectors``
    accumulators and ``vectors`` filter (or dy) vectors live, plus a broadcast: that must
    fit the vector registers. Tiles are ranked by how close their accumulators come to
    twice the accumulators the FMA units need (their latency hidden, loads amortised),
    short of the last quarter of the registers (which the compiler's broadcasts and
    addresses take), two vectors wide first; half-vector tiles follow, for channel counts
    the wide ones do not divide.
    """
    lanes = machine.lanes(itemsize)
    registers = machine.vector_registers
    target = min(2 * machine.accumulators_needed, 3 * registers // 4 - 2)
    # Backward-filter's rows are input channels: counts that divide channel counts.
    row_counts = ROW_DIVISORS if primitive == "backward_filter" else range(1, 17)
    fitting = [(rows, vectors) for vectors in (1, 2, 4) for rows in row_counts
               if rows * vectors + vectors + 1 <= registers
               and rows * vectors <= 3 * registers // 4]
    ranked = sorted(fitting, key=lambda t: (abs(t[0] * t[1] - target), abs(t[1] - 2), -t[0]))
    menu = [(rows, vectors * lanes) for rows, vectors in ranked]
    half = max(1, lanes // 2)
    menu += [(rows, half) for rows in (8, 4, 2, 1) if half < lanes]
    return list(dict.fromkeys(menu))


def narrow_tiles(primitive: str, itemsize: int, machine) -> list:
    """Quarter-vector tiles, for groups of fewer channels than a half vector (ResNeXt's
    4 per group): their lanes are wasted, but far less than the direct loop's time."""
    quarter = max(1, machine.lanes(itemsize) // 4)
    rows = (4, 2, 1) if primitive == "backward_filter" else (8, 12, 16)
    return [(count, quarter) for count in rows]


def preferences(primitive: str, g: ConvGeometry, itemsize: int, machine,
                ranking: list | None = None) -> list:
    """The default rule's tiled schedules, best first (the rule takes the first legal one):
    the calibrated ``ranking`` of tiles if there is one, then the machine's menu; filter
    panels packed per task for forward, and for backward-data filters of
    :data:`PANEL_FILTER_BYTES` or more."""
    tiles = [tuple(tile) for tile in ranking or []] + tile_menu(primitive, itemsize, machine)
    if g.groups > 1:
        tiles += narrow_tiles(primitive, itemsize, machine)
    if primitive == "backward_filter":
        panels = backward_filter_panels_pay(g, itemsize)
    else:  # grouped filters are small per task: packed once per call, not per task
        panels = ((primitive == "forward" and g.groups == 1)
                  or _filter_bytes(g, itemsize) >= PANEL_FILTER_BYTES)
    order = "packed_panels" if panels else "pixel_tiles_outer"
    return [fit(TiledSchedule(loop_order=order, register_tile=tile), primitive, g, itemsize)
            for tile in dict.fromkeys(tiles)]


# --- workspace: what the runs below allocate -----------------------------------------------

def _input_pads(g: ConvGeometry) -> tuple[int, int, int, int]:
    return g.pad_top, g.pad_bottom, g.pad_left, g.pad_right


def _padded_shape(shape: tuple, pads: tuple) -> tuple:
    batch, height, width, channels = shape
    top, bottom, left, right = pads
    return (batch, height + top + bottom, width + left + right, channels)


def _padded_elements(shape: tuple, pads: tuple) -> int:
    """Elements of :func:`layout.padder`'s copy of an NHWC array (none when no pad)."""
    return math.prod(_padded_shape(shape, pads)) if any(pads) else 0


def _panel_elements(phase_taps: list[int], schedule: TiledSchedule, channels: int,
                    reduction_channels: int, pixel_tiles: int) -> int:
    """Elements of the per-task panels of a ``packed_panels`` launch (its task split as
    :func:`phases.launcher` makes it)."""
    k_groups = max(1, channels // schedule.channel_block)
    tasks = k_groups * groups_for(pixel_tiles, k_groups)
    return tasks * max(phase_taps) * reduction_channels * schedule.register_tile[1]


def _splits(schedule: TiledSchedule, g: ConvGeometry) -> int:
    return min(schedule.reduction_splits, g.batch * g.out_height)


def workspace_bytes(primitive: str, g: ConvGeometry, schedule: TiledSchedule,
                    itemsize: int) -> int:
    rows = schedule.register_tile[0]
    filter_elements = math.prod(g.filter_shape)
    panels = schedule.loop_order == "packed_panels"
    if primitive == "backward_filter":
        tasks = _filter_tasks(g, schedule, itemsize)
        if panels:
            panel_elements = tasks.count * backward_filter_block_pixels(
                g, schedule.register_tile, tasks, itemsize) * (
                g.out_channels + _task_x_channels(g, schedule.register_tile, tasks))
        else:
            block_pixels = backward_filter_row_block(g) * g.out_width
            panel_elements = tasks.count * block_pixels * (g.out_channels * tasks.pack_dy
                                                           + rows * tasks.pack_x)
        return (_padded_elements(g.input_shape, _input_pads(g)) + panel_elements
                + (tasks.splits * filter_elements if tasks.splits > 1 else 0)) * itemsize
    if primitive == "forward":
        padded = _padded_elements(g.input_shape, _input_pads(g))
        pixel_tiles = -(-(g.batch * g.out_height * g.out_width) // rows)
        filter_copy = (_panel_elements([g.filter_height * g.filter_width], schedule,
                                       g.out_channels, g.in_channels_per_group, pixel_tiles)
                       if panels else filter_elements)
        return (padded + filter_copy) * itemsize
    reached, _ = phases.stride_phases(g)
    if not reached:
        return 0
    padded = _padded_elements(g.output_shape, phases.dy_padding(reached))
    pixel_tiles = sum(-(-(g.batch * p.size[0] * p.size[1]) // rows) for p in reached)
    filter_copy = (_panel_elements([len(p.rows) * len(p.cols) for p in reached], schedule,
                                   g.in_channels, g.out_channels_per_group, pixel_tiles)
                   if panels else filter_elements)
    group_swapped = filter_elements if g.groups > 1 else 0
    return (padded + filter_copy + group_swapped) * itemsize


# --- runs ---------------------------------------------------------------------------------

def broadcasts_half_input(g: ConvGeometry, schedule: TiledSchedule, result_channels: int,
                          storage: str | None) -> bool:
    """Whether tiled forward and backward-data read the half type ``storage``'s input (dy)
    as its bits, each value widened as it is broadcast
    (:func:`numbaconv.cpu.simd.storage_broadcast`), rather than a widened copy: bfloat16
    on 1×1 filters whose values are broadcast at most :data:`MAX_HALF_INPUT_BROADCASTS`
    times (``result_channels``, a group's, in channel tiles): there a pass that widens the
    input costs more than the masks. Not on larger filters, whose kernels are
    compute-bound, nor float16, whose widening of a vector costs more than a mask."""
    tiles = -(-result_channels // schedule.register_tile[1])
    return (storage == "bfloat16" and g.filter_height * g.filter_width == 1
            and tiles <= MAX_HALF_INPUT_BROADCASTS)


def _padder(shape: tuple, pads: tuple, dtype: np.dtype, by_numpy: bool,
            storage: str | None) -> Callable:
    """:func:`layout.padder`, or (``storage``) the widening of that half type's bits and
    the padding in one pass (``by_numpy``, a starter's: in two, by the conversion every
    half-type call compiles anyway and NumPy)."""
    padder = layout.padder(shape, dtype, *pads, by_numpy=by_numpy)
    if storage is None:
        return padder
    if by_numpy:
        return lambda bits: padder(half.widened(bits, storage))
    if any(pads):
        return functools.partial(half.padded_float32, storage=storage, pads=pads)
    return functools.partial(half.widened, storage=storage)


def _input_padder(g: ConvGeometry, schedule: TiledSchedule, result_channels: int,
                  shape: tuple, pads: tuple, dtype: np.dtype, by_numpy: bool,
                  storage: str | None) -> tuple[bool, Callable]:
    """Forward's input (backward-data's dy) as the kernel reads it: (whether as a half
    type's bits, :func:`broadcasts_half_input`; its padder): the bits padded as they are,
    else (``storage``) widened into the padded copy."""
    if broadcasts_half_input(g, schedule, result_channels, storage):
        return True, _padder(shape, pads, np.uint16, by_numpy, None)
    return False, _padder(shape, pads, dtype, by_numpy, storage)


def _widened_first(filter_values: Callable, storage: str | None) -> Callable:
    """``filter_values`` of the widened filter, where a half type's bits arrive and
    ``filter_values`` takes float32 (grouped backward-data's swap before its packing)."""
    if storage is None:
        return filter_values
    return lambda bits: filter_values(half.widened(bits, storage))


def _prepare_forward(g: ConvGeometry, schedule: TiledSchedule, dtype: np.dtype,
                     by_numpy: bool, storage: str | None) -> Callable:
    input_bits, pad = _input_padder(g, schedule, g.out_channels_per_group, g.input_shape,
                                    _input_pads(g), dtype, by_numpy, storage)
    padded_shape = _padded_shape(g.input_shape, _input_pads(g))
    tile, panels = schedule.register_tile[1], schedule.loop_order == "packed_panels"
    phase = phases.Phase(layout.kernel_filter(g.filter_shape, tile, panels),
                         (g.out_height, g.out_width), (g.stride_h, g.stride_w),
                         (g.dilation_h, g.dilation_w))
    out_shape, out_dtype = g.output_shape, dtype if storage is None else np.dtype(np.uint16)
    launch = phases.launcher(padded_shape, out_shape, [phase], schedule, dtype.name, g.groups,
                             storage, input_bits)
    # The generated kernels take writable arrays for their read-only parameters as they are.
    # A half type's bits: widened as they are packed (by the panels, or pack_filter).
    filter_values = np.ravel if panels else functools.partial(
        layout.pack_filter, tile=tile, by_numpy=by_numpy, storage=storage)

    def forward(x, w):
        out = np.empty(out_shape, out_dtype)
        launch(pad(x).reshape(-1), filter_values(w), out.reshape(-1))
        return out

    return forward


def _prepare_backward_data(g: ConvGeometry, schedule: TiledSchedule, dtype: np.dtype,
                           by_numpy: bool, storage: str | None) -> Callable:
    dx_shape, dx_dtype = g.input_shape, dtype if storage is None else np.dtype(np.uint16)
    reached, unreached = phases.stride_phases(g)
    if not reached:
        return lambda dy, w: np.zeros(dx_shape, dx_dtype)
    padding = phases.dy_padding(reached)
    input_bits, pad = _input_padder(g, schedule, g.in_channels_per_group, g.output_shape,
                                    padding, dtype, by_numpy, storage)
    padded_shape = _padded_shape(g.output_shape, padding)
    tile, panels = schedule.register_tile[1], schedule.loop_order == "packed_panels"
    if g.groups == 1:
        read_as = layout.kernel_filter(g.filter_shape, tile, panels, swap=True)
    else:  # swapped within each group first: [R, S, Kg, G·C]
        height, width, in_channels, out_channels = g.filter_shape
        read_as = layout.kernel_filter(
            (height, width, out_channels // g.groups, g.groups * in_channels), tile, panels)
    launch = phases.launcher(
        padded_shape, g.input_shape,
        phases.backward_data_phases(reached, read_as, g, padding, padded_shape), schedule,
        dtype.name, g.groups, storage, input_bits)

    # A half type's bits: widened as they are packed (by the panels, or pack_filter);
    # grouped, swapped within groups first (as bits, for the panels).
    if g.groups == 1:
        filter_values = (np.ravel if panels
                         else functools.partial(layout.pack_filter, tile=tile, swap=True,
                                                by_numpy=by_numpy, storage=storage))
    elif panels:
        def filter_values(w):
            return layout.swap_channels(w, g.groups, by_numpy).reshape(-1)
    else:
        def filter_values(w):
            return layout.pack_filter(layout.swap_channels(w, g.groups, by_numpy), tile,
                                      by_numpy=by_numpy)
        filter_values = _widened_first(filter_values, storage)

    def backward_data(dy, w):
        dx = np.empty(dx_shape, dx_dtype)
        for part in unreached:
            dx[part] = 0
        launch(pad(dy).reshape(-1), filter_values(w), dx.reshape(-1))
        return dx

    return backward_data


def backward_filter_row_block(g: ConvGeometry) -> int:
    """The output rows a tile sums before its sums go back to the partial filter: about
    :data:`BLOCK_PIXELS` pixels' worth."""
    return max(1, BLOCK_PIXELS // g.out_width)


def _l1_lines_held(pixel_step_bytes: int) -> int:
    """How many lines ``pixel_step_bytes`` apart L1 keeps: a step of a large power of two
    lands on a few sets."""
    return layout.L1_BYTES // max(64, math.gcd(pixel_step_bytes, L1_WAY_BYTES))


def _block_crowds_l1(g: ConvGeometry, pixel_step_bytes: int) -> bool:
    """Whether a block's pixels, ``pixel_step_bytes`` apart, outnumber the lines L1 keeps at
    that step, so that every tile reading them would fetch them from L2 again."""
    return backward_filter_row_block(g) * g.out_width > _l1_lines_held(pixel_step_bytes)


def backward_filter_packs_dy(g: ConvGeometry, itemsize: int, tiles_per_panel: int) -> bool:
    """Whether backward-filter copies each block's dy into contiguous panels first (one per
    tile of output channels): where the block's dy pixels crowd a few L1 sets, and where
    each panel serves at least two tiles of a task (``tiles_per_panel``: a panel read once
    reads as much as the copy)."""
    return _block_crowds_l1(g, g.out_channels * itemsize) and tiles_per_panel >= 2


def backward_filter_packs_x(g: ConvGeometry, itemsize: int, tiles_per_panel: int) -> bool:
    """Whether backward-filter copies each block's x values into a contiguous panel per tap
    and tile of input channels first, for all the tiles of output channels of a group
    (``tiles_per_panel``): where the block's x pixels crowd at most
    :data:`MAX_X_LINES_HELD` lines of L1, and at least :data:`MIN_X_PANEL_TILES` tiles
    share the panel."""
    step = g.stride_w * g.in_channels * itemsize
    return (_block_crowds_l1(g, step) and _l1_lines_held(step) <= MAX_X_LINES_HELD
            and tiles_per_panel >= MIN_X_PANEL_TILES)


@dataclass(frozen=True)
class _FilterTasks:
    """How backward-filter cuts a launch into tasks (splits of the rows × groups of taps ×
    groups of input-channel tiles), and whether they pack dy and x into panels."""

    splits: int
    tap_groups: int
    c_groups: int
    pack_dy: bool
    pack_x: bool

    @property
    def count(self) -> int:
        return self.splits * self.tap_groups * self.c_groups


def _filter_tasks(g: ConvGeometry, schedule: TiledSchedule, itemsize: int) -> _FilterTasks:
    splits = _splits(schedule, g)
    if schedule.loop_order == "packed_panels":
        return _panel_tasks(g, schedule, splits, itemsize)
    tap_groups = backward_filter_tap_groups(g, splits, itemsize)
    c_tiles = g.in_channels_per_group // schedule.register_tile[0]
    # Streamed, the c tiles are cut as the splits assumed (each task's share of the
    # partial filter within TASK_FILTER_BYTES); in cache, no more than the threads take.
    c_groups = (groups_for(c_tiles, splits * tap_groups) if streamed_reduction(g, itemsize)
                else _thread_groups(c_tiles, splits * tap_groups))
    taps = g.filter_height * g.filter_width
    pixels_outer = schedule.loop_order == "pixel_tiles_outer"
    pack_dy = pixels_outer and backward_filter_packs_dy(
        g, itemsize, (taps // tap_groups) * (c_tiles // c_groups))
    pack_x = pixels_outer and backward_filter_packs_x(
        g, itemsize, g.out_channels_per_group // schedule.register_tile[1])
    return _FilterTasks(splits, tap_groups, c_groups, pack_dy, pack_x)


def backward_filter_packs_half_bits(g: ConvGeometry, schedule: TiledSchedule,
                                    tasks: _FilterTasks, itemsize: int, storage: str) -> bool:
    """Whether pixel tiles outer take the half type ``storage``'s bits, packing every
    block's x and dy and widening them as they are packed, rather than reading copies
    widened first: where x is packed anyway; for bfloat16 also where x has one tap (each
    value packed about as often as the copy would write it) and each packed value feeds
    :data:`MIN_PACKED_X_REUSE` vectors of multiply-adds (its group's output channels in
    vectors). Not so for float16, whose x values, packed one at a time, each take a trip
    through a vector register to be converted."""
    if tasks.pack_x:
        return True
    lanes = min(schedule.register_tile[1], this_machine().lanes(itemsize))
    return (storage == "bfloat16" and g.filter_height * g.filter_width == 1
            and g.out_channels_per_group >= MIN_PACKED_X_REUSE * lanes)


def half_type_schedule(primitive: str, g: ConvGeometry, schedule: TiledSchedule,
                       storage: str, itemsize: int, panels_pay: bool) -> TiledSchedule:
    """What a call on the half type ``storage`` runs for ``schedule``, float32's choice:
    on a 1×1 layer, backward-filter's pixel tiles outer become packed panels of the same
    tile where ``panels_pay`` (the machine's calibration says so), a group has
    :data:`HALF_PANELS_MIN_OUT_CHANNELS` output channels and the kernels convert the type
    themselves: the panels widen x and dy as they pack them, where the rows would widen
    float16 into copies first (two passes over memory) and pack bfloat16's anew in every
    block; which costs more depends on the machine. Any other schedule as it is."""
    if (not panels_pay or primitive != "backward_filter"
            or schedule.loop_order != "pixel_tiles_outer" or not g.is_one_by_one
            or g.out_channels_per_group < HALF_PANELS_MIN_OUT_CHANNELS
            or not half.converts_in_kernels(storage)):
        return schedule
    panels = fit(dataclasses.replace(schedule, loop_order="packed_panels"), primitive, g,
                 itemsize)
    return schedule if illegal_reason(primitive, g, panels, itemsize) else panels


def _panel_tasks(g: ConvGeometry, schedule: TiledSchedule, splits: int,
                 itemsize: int) -> _FilterTasks:
    """Packed panels' tasks: few, since each packs its blocks' dy again (per group of taps
    and of c tiles). All the taps in one task where its share of the partial filter stays
    within :data:`PANELS_TASK_FILTER_BYTES` (each block loads and stores that share once),
    else groups of taps as for the rows; then the fewest c groups that make the tasks a
    multiple of the threads, or a multiple of them where :func:`_panel_traffic` says the
    longer blocks of narrower x panels pay. The splits fix the sums (and stay the
    machine's, whatever the thread count); the groups of taps and c tiles change no sum."""
    taps = g.filter_height * g.filter_width
    c_tiles = g.in_channels_per_group // schedule.register_tile[0]
    task_filter = _filter_bytes(g, itemsize) // _thread_groups(c_tiles, splits)
    tap_groups = 1 if task_filter <= PANELS_TASK_FILTER_BYTES else groups_for(taps, splits)
    fewest = _thread_groups(c_tiles, splits * tap_groups)
    choices = [_FilterTasks(splits, tap_groups, fewest * 2**i, False, False)
               for i in range(c_tiles.bit_length()) if fewest * 2**i <= c_tiles]
    return min(choices, key=lambda tasks: _panel_traffic(g, schedule.register_tile, tasks,
                                                         itemsize))


def _panel_traffic(g: ConvGeometry, tile: tuple, tasks: _FilterTasks, itemsize: int) -> int:
    """What a packed-panels launch moves beyond its panels, in bytes: its tasks' dy, packed
    again by each (weighed :data:`PACKED_DY_COST`), and the partial filter, loaded and
    stored once per block of each split but the first. More c groups mean narrower x
    panels, so longer blocks (fewer passes over the partial filter), and more dy packed."""
    blocks = -(-_split_pixels(g, tasks.splits)
               // backward_filter_block_pixels(g, tile, tasks, itemsize))
    packed_dy = PACKED_DY_COST * tasks.tap_groups * tasks.c_groups * _dy_bytes(g, itemsize)
    return packed_dy + tasks.splits * _filter_bytes(g, itemsize) * (2 * blocks - 1)


def _thread_groups(items: int, other_groups: int) -> int:
    """The fewest groups of ``items`` (at least 1, at most all of them) that make
    ``other_groups`` × groups tasks a multiple of the thread count: tasks that change no
    sum (not the splits), so that each thread runs as many and as few as can be."""
    threads = numba.get_num_threads()
    return max(1, min(items, threads // math.gcd(other_groups, threads)))


def _task_x_channels(g: ConvGeometry, tile: tuple, tasks: _FilterTasks) -> int:
    """The input channels of a backward-filter task's x panels (its c tiles of each group)."""
    c_tiles = g.in_channels_per_group // tile[0]
    return g.groups * -(-c_tiles // tasks.c_groups) * tile[0]


def backward_filter_panels_pay(g: ConvGeometry, itemsize: int) -> bool:
    """Whether backward-filter's packed panels are worth offering: where a group has at
    least :data:`PANELS_MIN_OUT_CHANNELS` output channels, over which each x value the
    task packs (one by one) is reused; at strides > 1 only where x and dy stream (in
    cache, the rows' tiles read the strided x as fast as the packing does)."""
    return g.out_channels_per_group >= PANELS_MIN_OUT_CHANNELS and (
        (g.stride_h, g.stride_w) == (1, 1) or streamed_reduction(g, itemsize))


def backward_filter_panel_splits(g: ConvGeometry, itemsize: int) -> int:
    """Packed panels' reduction splits: each task packs its blocks' dy again, so fewer
    tasks along the channels and taps (more splits) pack less, while each split adds a
    partial filter to write and sum (:data:`PARTIAL_FILTER_COST`). Counting TARGET_TASKS
    tasks (a constant, not the threads: the splits fix the sums), the splits that minimise
    ``dy · TARGET_TASKS / splits + cost · filter · splits``, at most the rows."""
    best = math.sqrt(TARGET_TASKS * _dy_bytes(g, itemsize)
                     / (PARTIAL_FILTER_COST * _filter_bytes(g, itemsize)))
    return max(1, min(g.batch * g.out_height, TARGET_TASKS, round(best)))


def backward_filter_block_pixels(g: ConvGeometry, tile: tuple, tasks: _FilterTasks,
                                 itemsize: int) -> int:
    """The pixels of a packed-panels block: each dy panel (a tile's output channels) within
    half of L1, and the panels the block reuses (one tap's x; dy's where the task has more
    than one tap, else only the panel in use) within :data:`PANELS_L2_BYTES`; the more
    pixels, the fewer passes of the tiles' sums over the partial filter."""
    by_l1 = layout.L1_BYTES // 2 // (tile[1] * itemsize)
    task_taps = -(-g.filter_height * g.filter_width // tasks.tap_groups)
    dy_held = g.out_channels if task_taps > 1 else tile[1]
    by_l2 = PANELS_L2_BYTES // ((dy_held + _task_x_channels(g, tile, tasks)) * itemsize)
    return max(1, min(by_l1, by_l2, _split_pixels(g, tasks.splits)))


def _prepare_backward_filter(g: ConvGeometry, schedule: TiledSchedule, dtype: np.dtype,
                             by_numpy: bool, storage: str | None,
                             splits_role: str | None = None) -> Callable:
    tasks = _filter_tasks(g, schedule, dtype.itemsize)
    pixels_outer = schedule.loop_order == "pixel_tiles_outer"
    panels = schedule.loop_order == "packed_panels"
    # A half type's bits: widened as the kernel packs them (into panels, or pixel tiles
    # outer's blocks where that pays), else first into copies.
    rows_widen = storage is not None and pixels_outer and backward_filter_packs_half_bits(
        g, schedule, tasks, dtype.itemsize, storage)
    kernel_storage = storage if panels or rows_widen else None
    copied = storage if kernel_storage is None else None  # widened into copies first
    pad = _padder(g.input_shape, _input_pads(g), np.uint16 if kernel_storage else dtype,
                  by_numpy, copied)
    dy_values = (np.ascontiguousarray if copied is None
                 else functools.partial(half.widened, storage=copied))
    _, padded_height, padded_width, _ = _padded_shape(g.input_shape, _input_pads(g))
    tile_in, tile_out = schedule.register_tile
    shared = dict(
        batch=g.batch, padded_height=padded_height, padded_width=padded_width,
        x_channels=g.in_channels, in_channels=g.in_channels_per_group,
        filter_height=g.filter_height, filter_width=g.filter_width,
        out_channels=g.out_channels, group_out_channels=g.out_channels_per_group,
        out_height=g.out_height, out_width=g.out_width, stride_h=g.stride_h,
        stride_w=g.stride_w, dilation_h=g.dilation_h, dilation_w=g.dilation_w,
        splits=tasks.splits, tap_groups=tasks.tap_groups, c_groups=tasks.c_groups)
    vector_bits = this_machine().vector_bits
    if panels:
        launch = backward_filter_panels_kernel(tile_in, tile_out, dtype.name, vector_bits,
                                               storage).bind(
            **shared, block_pixels=backward_filter_block_pixels(
                g, schedule.register_tile, tasks, dtype.itemsize))
    else:
        launch = backward_filter_kernel(tile_in, tile_out, dtype.name, vector_bits,
                                        pixels_outer, kernel_storage).bind(
            **shared, row_block=backward_filter_row_block(g),
            pack_dy=tasks.pack_dy or kernel_storage is not None,
            pack_x=tasks.pack_x or kernel_storage is not None)
    partials_shape = (tasks.splits,) + g.filter_shape

    def backward_filter(x, dy):
        found = (np.empty(partials_shape, dtype) if splits_role is None  # all written
                 else scratch(splits_role, math.prod(partials_shape),
                              dtype).reshape(partials_shape))
        launch(pad(x).reshape(-1), dy_values(dy).reshape(-1), found.reshape(-1))
        return found if splits_role is not None else partials.reduced(found, by_numpy)

    return backward_filter


def backward_filter_splits_into_scratch(g: ConvGeometry, schedule: TiledSchedule, dtype,
                                        role: str) -> Callable:
    """Backward-filter's prepared run (float32 or float64) that returns each reduction
    split's partial filter, not their sum ([splits, R, S, C, K], this thread's scratch
    buffer for ``role``, valid until the thread's next run for it): for a family whose
    splits are problems of their own (Winograd's α² points, one image row each)."""
    return _prepare_backward_filter(g, schedule, np.dtype(dtype), False, None, role)


def prepare(primitive: str, g: ConvGeometry, schedule: TiledSchedule, dtype: np.dtype,
            copies_by_numpy: bool = False, storage: str | None = None) -> Callable:
    """The run of ``primitive`` on ``g`` under ``schedule`` as a function of its two
    operands (C-contiguous NHWC / HWIO of ``dtype``, in the primitive table's order): the
    kernel, its arguments, the phase table and the pads made once. ``copies_by_numpy``:
    padded copies and filter rearrangements by NumPy, whatever their size, so that the
    register tile is the only kernel to compile (a cold start's starter). ``storage``
    (where :func:`half_storage` allows it): every operand and the result are that half
    type's bits (uint16), ``dtype`` float32."""
    if storage is not None and not half_storage(primitive, g, schedule, storage):
        raise ValueError(f"storage: {schedule} does not convert {storage} itself")
    return _PREPARES[primitive](g, schedule, np.dtype(dtype), copies_by_numpy, storage)


def half_storage(primitive: str, g: ConvGeometry, schedule: TiledSchedule,
                 storage: str) -> tuple[str, ...]:
    """The tensors :func:`prepare` takes and returns as the half type ``storage``'s bits.
    Forward and backward-data: all three, the input (dy) widened in its padded copy or
    (where :func:`broadcasts_half_input`) as the tiles broadcast it, the filter widened as
    it is packed (on packed panels: each panel as the task packs it; grouped backward-data
    swaps its bits within groups first), the result rounded by the tiles as they store it.
    Backward-filter: x and dy, widened as the kernel packs them (packed panels; pixel tiles
    outer where :func:`backward_filter_packs_half_bits`), else x in its padded copy and dy
    in a copy; the filter comes back as float32."""
    if not half.converts_in_kernels(storage):
        return ()
    if primitive == "backward_filter":
        return ("input", "output")
    return TENSORS


_PREPARES = {"forward": _prepare_forward, "backward_data": _prepare_backward_data,
             "backward_filter": _prepare_backward_filter}


FAMILY = Family("tiled", TiledSchedule, candidates, illegal_reason, workspace_bytes, fit,
                run_prepared(prepare), prepare, half_storage)
