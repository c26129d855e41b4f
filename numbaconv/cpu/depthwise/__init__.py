"""The depthwise family: grouped convolutions with one input channel per group
(``depthwise_conv2d``, MobileNet's layers), as elementwise multiply-adds along the channel
axis (:mod:`.kernels`). Memory-bound: what counts is reading each row once. Its vector
tiles also take grouped layers of a few channels per group, as many in as out (ResNeXt's
4 and 8; forward and backward-data): a vector holds whole groups.

Knobs (:class:`DepthwiseSchedule`):

- ``loop_order``: ``vector_tiles`` (channel multiplier 1, or groups of at most
  :data:`MAX_GROUP_CHANNELS` channels in and out that divide the vectors; backward-filter
  with one input channel per group and a filter whose taps fit the vector registers,
  :mod:`.templates`): generated kernels whose accumulators are vectors of channels in
  registers, a tile of pixels (forward, backward-data; at strides > 1 one sweep per
  stride phase of dx) or every tap (backward-filter) at a time;
  ``flat_rows`` (channel multiplier 1 and, but for backward-filter, unit
  horizontal stride, :mod:`.rows`): each filter tap is one multiply-add over a whole
  flattened row; forward and
  backward-data also ``row_taps``, each tap sweeps an output row pixel by pixel, or
  ``pixel_taps``, each pixel sums its taps in one accumulator (:mod:`.kernels`). Integer
  operands take the last three (the generated kernels are float-only).
- ``tile_pixels`` (``vector_tiles``, forward and backward-data): the result pixels of a
  register tile (kernels compiled for the column steps, :data:`WINDOW_STRIDES`, take at
  most :func:`window_pixels`).
- ``channel_block``: the contiguous channels one task writes (a task split, derived).
- ``reduction_splits`` (backward-filter): the N·OH rows cut into this many chunks, each
  summed into its own partial filter, then added in a fixed order (derived; none smaller
  than :data:`SPLIT_MULTIPLY_ADDS`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

from ... import memory
from ...family import Family, run_prepared
from ...geometry import ConvGeometry
from ...machine import Machine, this_machine
from ...primitives import is_activation
from ...primitives import primitive as primitive_named
from ...schedule import Schedule
from .. import caches, layout, partials
from ..half import converts_in_kernels
from ..layout import readonly
from ..tasks import channel_block_for, groups_for
from ..tiled import phases
from .kernels import backward_data_depthwise, backward_filter_depthwise, forward_depthwise
from .rows import backward_data_rows, backward_filter_rows, forward_rows
from .templates import filter_chunk, filter_taps_kernel, operand_storage, sweep_kernel

LOOP_ORDERS = ("vector_tiles", "flat_rows", "row_taps", "pixel_taps")
#: Grouped layers' channels per group that vector tiles take at most (one weight vector
#: per channel of a group stays in a register while a tile's pixels stream).
MAX_GROUP_CHANNELS = 8
#: Backward-filter's multiply-adds per split (and channel block) at least: a smaller
#: split's work costs less than summing its partial filter.
SPLIT_MULTIPLY_ADDS = 2**15
#: The dx sizes where the rule runs backward-data at a stride > 1 on vector tiles, one
#: sweep per stride phase: on smaller layers the launches cost more than they save, on
#: larger ones each phase's pass over dy comes from memory (dx and dy past the last-level
#: cache) while the loops read dy once.
PHASED_BYTES = (2**20, 16 * 2**20)
#: Forward and backward-data flat rows stream three rows per tap (result, operand,
#: weights): beyond this many bytes a row they no longer share L1 and per-pixel
#: accumulators win.
FLAT_ROW_BYTES = 16 * 2**10
#: The column strides and tap steps that vector tiles' kernels are compiled for (each
#: operand column a tile reads loaded once); others run a kernel taking any.
WINDOW_STRIDES = (1, 2)
#: Vector tiles prefetch the operand rows of their thread's next task where the operand
#: is larger than this fraction of the last-level cache: smaller ones are mostly still
#: there, and the prefetches cost more than they save.
PREFETCH_FRACTION = 1 / 4


@dataclass(frozen=True)
class DepthwiseSchedule(Schedule):
    """The depthwise family's knobs (see the module docstring)."""

    algorithm: ClassVar[str] = "depthwise"
    TASK_SPLIT: ClassVar[tuple] = ("channel_block", "reduction_splits")
    loop_order: str = "flat_rows"
    channel_block: int = 64
    reduction_splits: int = 1
    tile_pixels: int = 8

    def __post_init__(self):
        self._require_one_of("loop_order", LOOP_ORDERS)
        self._require_positive("channel_block", "reduction_splits", "tile_pixels")


def default(primitive: str, g: ConvGeometry, itemsize: int = 4, machine: Machine | None = None,
            generated: bool = True) -> DepthwiseSchedule:
    """Vector tiles where they apply (``generated``: float operands) with vectors a quarter
    of a register or wider; else flat rows where they apply, else one accumulator per pixel
    (forward, backward-data) or per tap row (backward-filter); the task split of
    :func:`fit`."""
    machine = machine or this_machine()
    row_bytes = max(g.in_width, g.out_width) * g.out_channels * itemsize
    if generated and _vector_tiles_preferred(g, primitive, machine, itemsize):
        order = "vector_tiles"
    elif primitive == "backward_filter":  # its flat rows accumulate in place: no size limit
        order = "flat_rows" if _flat_rows_apply(g, primitive) else "row_taps"
    else:
        order = ("flat_rows" if _flat_rows_apply(g) and row_bytes <= FLAT_ROW_BYTES
                 else "pixel_taps")
    return fit(DepthwiseSchedule(order, tile_pixels=default_tile_pixels(machine)), primitive, g,
               itemsize)


def fit(schedule: DepthwiseSchedule, primitive: str, g: ConvGeometry,
        itemsize: int) -> DepthwiseSchedule:
    """``schedule``'s loop order and tile with the task split for ``g``: whole rows of
    channels per task unless the rows are too few to fill the cores; backward-filter's rows
    cut into splits, each summed into a partial filter within the workspace cap."""
    channels = primitive_named(primitive).channels(g)
    if primitive == "backward_filter":
        rows = g.batch * g.out_height
        # Vector tiles read whole pixels per task (channels inner), cut by rows first: a
        # task reading one vector of each pixel would use one cache line in several.
        block = channel_block_for(channels, rows if schedule.loop_order == "vector_tiles" else 1,
                                  multiple=16)
        flat = schedule.loop_order == "flat_rows"
        per_split = _partial_bytes(schedule.loop_order, g, itemsize)
        most_splits = max(1, memory.WORKSPACE_BYTES_CAP // 2 // max(per_split, 1))
        blocks = 1 if flat else -(-channels // block)
        # Splits of at least SPLIT_MULTIPLY_ADDS each: more only add partials to sum.
        worth = max(1, g.flops // 2 // blocks // SPLIT_MULTIPLY_ADDS)
        splits = min(most_splits, groups_for(rows, blocks), worth)
        if flat:  # a split's buffer costs about a row: give it two or more
            splits = max(1, min(splits, rows // 2))
        return dataclasses.replace(schedule, channel_block=block, reduction_splits=splits)
    rows = g.batch * (g.out_height if primitive == "forward" else g.in_height)
    return dataclasses.replace(schedule, reduction_splits=1,
                               channel_block=channel_block_for(channels, rows, multiple=16))


def grouped_default(primitive: str, g: ConvGeometry, itemsize: int,
                    machine: Machine) -> DepthwiseSchedule | None:
    """Vector tiles for a grouped layer with a few channels per group, as many in as out,
    where they apply (forward, backward-data); None elsewhere."""
    if g.groups == 1 or g.is_depthwise or not _vector_tiles_preferred(g, primitive, machine,
                                                                      itemsize):
        return None
    return default(primitive, g, itemsize, machine)


def default_tile_pixels(machine: Machine) -> int:
    """Pixels of a vector tile: enough independent accumulators to cover the FMA units'
    latency, at least 8 (each tap's weights are loaded once per tile), and at most half
    the registers (the rest hold weights and loads)."""
    return max(1, min(machine.vector_registers // 2, max(8, machine.accumulators_needed)))


def window_pixels(machine: Machine, filter_width: int) -> int:
    """The most pixels a window tile takes: its sums, a filter row's weights, the operand
    vector and one spare in the vector registers (one more pixel spilled on AVX2)."""
    return max(1, machine.vector_registers - filter_width - 2)


def _lanes(g: ConvGeometry, itemsize: int, machine: Machine) -> int:
    """The lanes of the vector tiles' vectors: the most of a register that divides the
    channels (a task's channels are whole vectors)."""
    return math.gcd(g.out_channels, machine.lanes(itemsize))


def _vector_tiles_preferred(g: ConvGeometry, primitive: str, machine: Machine,
                            itemsize: int) -> bool:
    """Vector tiles apply, with vectors a quarter of a register or more: narrower ones
    lose to the loops LLVM vectorises with a scalar tail; backward-data at a stride > 1
    only where its phases pay (:data:`PHASED_BYTES`)."""
    if (primitive == "backward_data" and (g.stride_h, g.stride_w) != (1, 1)
            and not PHASED_BYTES[0] <= math.prod(g.input_shape) * itemsize <= PHASED_BYTES[1]):
        return False
    return (_vector_tiles_apply(g, primitive, machine, itemsize)
            and 4 * _lanes(g, itemsize, machine) >= machine.lanes(itemsize))


def _vector_tiles_apply(g: ConvGeometry, primitive: str, machine: Machine,
                        itemsize: int = 4) -> bool:
    """As many channels in as out per group: one (channel multiplier 1), or (forward and
    backward-data) a few that divide the vectors (grouped layers, spread in registers);
    backward-filter with one accumulator per tap, plus the dy vector, a load and a spare,
    within the vector registers."""
    group = g.in_channels_per_group
    if g.out_channels_per_group != group:
        return False
    if group > 1 and (primitive == "backward_filter" or group > MAX_GROUP_CHANNELS
                      or _lanes(g, itemsize, machine) % group):
        return False
    if primitive == "backward_filter":
        return g.filter_height * g.filter_width + 3 <= machine.vector_registers
    return True


def _flat_rows_apply(g: ConvGeometry, primitive: str = "forward") -> bool:
    """Channel multiplier 1, and (but for backward-filter's kernel) unit horizontal stride."""
    return g.out_channels == g.in_channels and (g.stride_w == 1 or primitive == "backward_filter")


def _partial_bytes(order: str, g: ConvGeometry, itemsize: int) -> int:
    """One split's partial filter (flat rows: also one per row position while it sums)."""
    positions = 1 + g.out_width if order == "flat_rows" else 1
    return _filter_bytes(g, itemsize) * positions


def _filter_bytes(g: ConvGeometry, itemsize: int) -> int:
    return math.prod(g.filter_shape) * itemsize


def candidates(primitive: str, g: ConvGeometry, itemsize: int, section: dict, machine) -> list:
    found = []
    for order in section.get("loop_order", []):
        # Only the vector tiles of forward and backward-data have tiles of pixels.
        tiled_pixels = order == "vector_tiles" and primitive != "backward_filter"
        tiles = (tiled_pixels and section.get("tile_pixels")) or [default_tile_pixels(machine)]
        found += [fit(DepthwiseSchedule(order, tile_pixels=pixels), primitive, g, itemsize)
                  for pixels in tiles]
    return found


def illegal_reason(primitive: str, g: ConvGeometry, schedule: DepthwiseSchedule,
                   itemsize: int) -> str | None:
    if not g.is_depthwise and schedule.loop_order != "vector_tiles":
        return "not depthwise: the filter has more than one input channel per group"
    if schedule.loop_order == "flat_rows" and not _flat_rows_apply(g, primitive):
        return ("flat_rows needs channel multiplier 1 (and, but for backward-filter, "
                "horizontal stride 1)")
    if schedule.loop_order == "pixel_taps" and primitive == "backward_filter":
        return "pixel_taps is not a backward-filter loop order"
    if schedule.loop_order == "vector_tiles" and not _vector_tiles_apply(
            g, primitive, this_machine(), itemsize):
        return ("vector_tiles needs as many channels in as out per group (one, or for "
                "forward and backward-data a few that divide the vectors), and for "
                "backward-filter a filter whose taps fit the vector registers")
    return None


def _splits(schedule: DepthwiseSchedule, g: ConvGeometry) -> int:
    return max(1, min(schedule.reduction_splits, g.batch * g.out_height))


def workspace_bytes(primitive: str, g: ConvGeometry, schedule: DepthwiseSchedule,
                    itemsize: int) -> int:
    flat = schedule.loop_order == "flat_rows"
    if primitive == "backward_filter":
        splits = _splits(schedule, g)
        if flat or splits > 1:
            return splits * _partial_bytes(schedule.loop_order, g, itemsize)
        return 0
    if flat:  # the weights repeated along a row
        width = g.out_width if primitive == "forward" else g.in_width
        return _filter_bytes(g, itemsize) * width
    if primitive == "backward_data" and g.in_channels_per_group > 1:  # the swapped filter
        return _filter_bytes(g, itemsize)
    return 0


def _geometry_arguments(g: ConvGeometry) -> tuple:
    return (g.stride_h, g.stride_w, g.dilation_h, g.dilation_w, g.pad_top, g.pad_left)


def _repeated(taps: np.ndarray, width: int) -> np.ndarray:
    """[R, S, C] -> [R, S, width·C]: each tap's weights repeated along a row."""
    r, s, c = taps.shape
    return np.ascontiguousarray(np.broadcast_to(taps[:, :, None, :], (r, s, width, c))
                                ).reshape(r, s, width * c)


def _flat(shape: tuple) -> tuple:
    """[N, H, W, C] -> [N, H, W·C]: the shape of a flattened-rows view."""
    n, h, w, c = shape
    return (n, h, w * c)


def _rows_arguments(g: ConvGeometry) -> tuple:
    return (g.in_channels, g.in_width, g.out_width, g.stride_h, g.dilation_h, g.dilation_w,
            g.pad_top, g.pad_left)


def _sweep_launch(g: ConvGeometry, schedule: DepthwiseSchedule, dtype, storage: str | None,
                  operand_shape: tuple, grid: tuple, taps: tuple, sweep: dict,
                  full_shape: tuple, steps: tuple = (1, 1), offsets: tuple = (0, 0)):
    """The vector-tile sweep kernel bound to everything but its arrays (operand, filter
    of ``taps`` rows × columns, result): a ``grid`` of result pixels, every ``steps``-th
    pixel from ``offsets`` of an array of ``full_shape``."""
    machine = this_machine()
    batch, operand_height, operand_width, channels = operand_shape
    columns = (sweep["stride_w"], sweep["tap_w"])
    if not (g.in_channels_per_group == 1 and columns[0] in WINDOW_STRIDES
            and abs(columns[1]) in WINDOW_STRIDES):
        columns = None
    pixels = (min(schedule.tile_pixels, window_pixels(machine, taps[1])) if columns
              else schedule.tile_pixels)
    stored = _stored_dtype(dtype, operand_storage(storage, g.in_channels_per_group))
    return sweep_kernel(pixels, taps[1], _lanes(g, dtype.itemsize, machine), dtype.name,
                        machine.vector_bits, storage, g.in_channels_per_group,
                        columns).bind(
        batch=batch, operand_height=operand_height, operand_width=operand_width,
        channels=channels, result_height=grid[0], result_width=grid[1],
        filter_height=taps[0], filter_width=taps[1], channel_block=schedule.channel_block,
        **sweep, full_height=full_shape[1], full_width=full_shape[2], row_step=steps[0],
        column_step=steps[1], row_offset=offsets[0], column_offset=offsets[1],
        prefetch_rows=int(math.prod(operand_shape) * stored.itemsize
                          > PREFETCH_FRACTION * caches.last_level_cache_size()))


def _stored_dtype(dtype, storage: str | None) -> np.dtype:
    """How the vector tiles' activations are held: ``dtype``, or a half type's bits."""
    return dtype if storage is None else np.dtype(np.uint16)


def _prepare_sweep(rows_kernel, pixels_kernel, g: ConvGeometry, schedule: DepthwiseSchedule,
                   dtype, operand_shape: tuple, result_shape: tuple, width: int,
                   sweep: dict, storage: str | None, weights: Callable) -> Callable:
    """Forward (x -> y) and backward-data (dy -> dx) alike: the operand swept by the taps
    into a fresh result, by vector tiles (``sweep``: the generated kernel's stride, tap
    step and origin, :mod:`.templates`; ``storage``: the result as that half type's bits,
    the operand too where :func:`half_storage` says; ``weights(w)``: the filter as the
    sweep reads it), by flat rows (the weights repeated along ``width`` pixels) or per
    pixel."""
    taps_shape = _taps_shape(g)
    if schedule.loop_order == "vector_tiles":
        result_dtype = _stored_dtype(dtype, storage)
        launch = _sweep_launch(g, schedule, dtype, storage, operand_shape, result_shape[1:3],
                               (g.filter_height, g.filter_width), sweep, result_shape)

        def by_vectors(operand, w):
            result = np.empty(result_shape, result_dtype)
            launch(readonly(operand).reshape(-1), readonly(weights(w)).reshape(-1),
                   result.reshape(-1))
            return result

        return by_vectors
    if schedule.loop_order == "flat_rows":
        operand_rows, result_rows = _flat(operand_shape), _flat(result_shape)
        rows_arguments = _rows_arguments(g)

        def by_rows(operand, w):
            result = np.empty(result_shape, dtype)
            rows_kernel(readonly(operand.reshape(operand_rows)),
                        _repeated(w.reshape(taps_shape), width), result.reshape(result_rows),
                        *rows_arguments)
            return result

        return by_rows
    arguments = (*_geometry_arguments(g), schedule.channel_block,
                 schedule.loop_order == "row_taps", storage == "bfloat16")
    result_dtype = _stored_dtype(dtype, storage)

    def by_pixels(operand, w):
        result = np.empty(result_shape, result_dtype)
        pixels_kernel(readonly(operand), readonly(w.reshape(taps_shape)), result, *arguments)
        return result

    return by_pixels


def _prepare_forward(g: ConvGeometry, schedule: DepthwiseSchedule, dtype,
                     storage: str | None) -> Callable:
    sweep = dict(stride_h=g.stride_h, stride_w=g.stride_w, tap_h=g.dilation_h,
                 tap_w=g.dilation_w, origin_h=-g.pad_top, origin_w=-g.pad_left)
    return _prepare_sweep(forward_rows, forward_depthwise, g, schedule, dtype, g.input_shape,
                          g.output_shape, g.out_width, sweep, storage, lambda w: w)


def _prepare_backward_data(g: ConvGeometry, schedule: DepthwiseSchedule, dtype,
                           storage: str | None) -> Callable:
    # At unit stride, dx[ih, iw] gathers dy[ih + pt - r·dh, iw + pl - s·dw].
    sweep = dict(stride_h=1, stride_w=1, tap_h=-g.dilation_h, tap_w=-g.dilation_w,
                 origin_h=g.pad_top, origin_w=g.pad_left)
    # Grouped: input channel c of group k sums over the group's output channels, so the
    # sweep reads the filter with the channel roles exchanged within each group.
    weights = (lambda w: w) if g.in_channels_per_group == 1 else functools.partial(
        layout.swap_channels, groups=g.groups)
    if schedule.loop_order == "vector_tiles" and (g.stride_h, g.stride_w) != (1, 1):
        return _prepare_phases(g, schedule, dtype, storage, weights)
    return _prepare_sweep(backward_data_rows, backward_data_depthwise, g, schedule, dtype,
                          g.output_shape, g.input_shape, g.in_width, sweep, storage, weights)


def _prepare_phases(g: ConvGeometry, schedule: DepthwiseSchedule, dtype, storage: str | None,
                    weights: Callable) -> Callable:
    """Backward-data at stride > 1 on vector tiles: per stride phase of dx (every
    (stride_h, stride_w)-th pixel from one offset: :func:`phases.stride_phases`), a
    unit-stride sweep of dy with the sub-filter of the taps that reach it, in increasing
    order as at unit stride, written in place; phases no tap reaches are zero."""
    result_dtype = _stored_dtype(dtype, storage)
    reached, unreached = phases.stride_phases(g)
    launches = []
    for phase in reached:  # its taps come by increasing dy offset: decreasing tap index
        (top, left), (spacing_h, spacing_w) = phase.start, phase.dilation
        rows, cols = phase.rows[::-1], phase.cols[::-1]
        sweep = dict(stride_h=1, stride_w=1, tap_h=-spacing_h, tap_w=-spacing_w,
                     origin_h=top + (len(rows) - 1) * spacing_h,
                     origin_w=left + (len(cols) - 1) * spacing_w)
        launches.append((np.ix_(rows, cols), _sweep_launch(
            g, schedule, dtype, storage, g.output_shape, phase.size, (len(rows), len(cols)),
            sweep, g.input_shape, (g.stride_h, g.stride_w), phase.origin)))

    def by_phases(dy, w):
        dx = np.empty(g.input_shape, result_dtype)
        for part in unreached:
            dx[part] = 0
        swept, operand, flat = weights(w), readonly(dy).reshape(-1), dx.reshape(-1)
        for taps, launch in launches:
            launch(operand, readonly(swept[taps]).reshape(-1), flat)
        return dx

    return by_phases


def _prepare_backward_filter(g: ConvGeometry, schedule: DepthwiseSchedule, dtype,
                             storage: str | None) -> Callable:
    found_shape = (_splits(schedule, g),) + _taps_shape(g)
    filter_shape = g.filter_shape
    if schedule.loop_order == "vector_tiles":
        machine = this_machine()
        launch = filter_taps_kernel(g.filter_height, g.filter_width,
                                    _lanes(g, dtype.itemsize, machine), dtype.name,
                                    machine.vector_bits, storage).bind(
            batch=g.batch, in_height=g.in_height, in_width=g.in_width, channels=g.in_channels,
            out_height=g.out_height, out_width=g.out_width, stride_h=g.stride_h,
            stride_w=g.stride_w, dilation_h=g.dilation_h, dilation_w=g.dilation_w,
            pad_top=g.pad_top, pad_left=g.pad_left, splits=found_shape[0],
            channel_block=schedule.channel_block,
            chunk=filter_chunk(g.in_channels, dtype.itemsize))

        def by_vectors(x, dy):
            found = np.empty(found_shape, dtype)
            launch(readonly(x).reshape(-1), readonly(dy).reshape(-1), found.reshape(-1))
            return partials.reduced(found).reshape(filter_shape)

        return by_vectors
    if schedule.loop_order == "flat_rows":
        x_rows, dy_rows = _flat(g.input_shape), _flat(g.output_shape)
        arguments = (g.in_channels, g.in_width, g.out_width, g.stride_h, g.stride_w,
                     g.dilation_h, g.dilation_w, g.pad_top, g.pad_left)

        def backward_filter(x, dy):
            found = np.empty(found_shape, dtype)
            backward_filter_rows(readonly(x.reshape(x_rows)), readonly(dy.reshape(dy_rows)),
                                 found, *arguments)
            return partials.reduced(found).reshape(filter_shape)

        return backward_filter
    arguments = (*_geometry_arguments(g), schedule.channel_block)

    def backward_filter(x, dy):
        found = np.empty(found_shape, dtype)
        backward_filter_depthwise(readonly(x), readonly(dy), found, *arguments)
        return partials.reduced(found).reshape(filter_shape)

    return backward_filter


def _taps_shape(g: ConvGeometry) -> tuple:
    return (g.filter_height, g.filter_width, g.out_channels)


def prepare(primitive: str, g: ConvGeometry, schedule: DepthwiseSchedule, dtype,
            storage: str | None = None) -> Callable:
    """The run of ``primitive`` as a function of its two operands (C-contiguous NHWC /
    HWIO of ``dtype``), its arguments made once. ``storage`` (where :func:`half_storage`
    allows it): the activations it names are that half type's bits (uint16), converted in
    the kernels; the filter, operand or result, is ``dtype``, and so is the operand of a
    sweep whose groups are wider than a shuffle lane."""
    if storage is not None and not half_storage(primitive, g, schedule, storage):
        raise ValueError(f"storage: {schedule} does not convert {storage} in its kernels")
    return _PREPARES[primitive](g, schedule, np.dtype(dtype), storage)


def half_storage(primitive: str, g: ConvGeometry, schedule: DepthwiseSchedule,
                 storage: str) -> tuple[str, ...]:
    """The tensors :func:`prepare` takes and returns as the half type ``storage``'s bits,
    converted in its kernels (:func:`numbaconv.cpu.half.converts_in_kernels`): the
    activations, on vector tiles (but the operand of a sweep whose groups are wider than a
    shuffle lane, :func:`.templates.operand_storage`); all three in forward's and
    backward-data's per-pixel loops (``pixel_taps``: the small strided backward-data
    layers' order, whose conversion passes cost more than the loops)."""
    if not converts_in_kernels(storage):
        return ()
    p = primitive_named(primitive)
    if schedule.loop_order == "pixel_taps":
        return (*p.operands, p.result)
    if schedule.loop_order != "vector_tiles":
        return ()
    if operand_storage(storage, g.in_channels_per_group) is None:
        return (p.result,)
    return tuple(tensor for tensor in (*p.operands, p.result) if is_activation(tensor))


_PREPARES = {"forward": _prepare_forward, "backward_data": _prepare_backward_data,
             "backward_filter": _prepare_backward_filter}


FAMILY = Family("depthwise", DepthwiseSchedule, candidates, illegal_reason, workspace_bytes,
                fit, run_prepared(prepare), prepare, half_storage)
