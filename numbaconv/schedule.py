"""Schedules: the knobs of a kernel family, which values are legal for a geometry, and a
default per primitive.

A schedule never changes *what* a kernel computes, only how:

- ``algorithm`` — ``"direct"``: a loop nest vectorised over contiguous channels;
  ``"tiled"``: generated register-tile kernels (see :mod:`numbaconv.cpu.tiled`) on a
  zero-padded copy of the input; ``"gemm"``: im2col (or, for 1×1 filters without
  padding, a strided view) and one NumPy/BLAS matmul.
- ``loop_order`` — the nest inside one task.
  direct: with *pixel* = an output pixel (forward, backward-data) or a reduction pixel
  (backward-filter), *tap* = a filter position (r, s) and *channel* = the reduction
  channel, ``"pixel_tap_channel"`` streams the filter for each pixel (good when the filter
  slice is small), ``"tap_channel_pixel"`` keeps one filter row hot while it sweeps the
  pixels of a row (good when it is large).
  tiled: ``"pixel_tiles_outer"`` or ``"channel_tiles_outer"``, the order of a task's tiles;
  forward and backward-data also ``"packed_panels"``: channel tiles outer, each task
  packing the filter panel of each of its channel tiles itself (no separate pass packs the
  whole filter per call: 0.14-0.34 ms for ResNet-50's res5 filters), its task split
  favouring few pixel groups so that each panel is packed about once.
- ``channel_block`` — the contiguous output channels one task owns (``out_channels`` for
  forward and backward-filter, ``in_channels`` for backward-data); for direct kernels the
  innermost loop runs over them and vectorises; for tiled ones it is a multiple of the tile.
- ``register_tile`` — tiled only: (rows, channels) of the accumulator tile; rows are output
  pixels (forward, backward-data) or input channels (backward-filter), channels the
  vectorised output channels.
- ``in_channel_block`` — direct backward-filter: the input channels one task owns.
- ``reduction_splits`` — backward-filter: the N·OH rows of the reduction are split into
  this many chunks, each summed into its own partial filter, then added in a fixed order.
  It changes the rounding, so it is fixed by the shape, never by the thread count.

The parallel axis is the product of those: tasks are (rows × channel blocks) for forward
and backward-data, (reduction splits × channel tiles) for backward-filter, spread over
Numba's threads by ``prange``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .geometry import ConvGeometry
from .memory import workspace_cap

PRIMITIVES = ("forward", "backward_data", "backward_filter")
LOOP_ORDERS = {
    "direct": ("pixel_tap_channel", "tap_channel_pixel"),
    "tiled": ("pixel_tiles_outer", "channel_tiles_outer", "packed_panels"),
    "gemm": ("im2col", "im2col_tiled"),
}
ALGORITHMS = tuple(LOOP_ORDERS)

#: Tasks wanted per call: enough to balance a few cores, small enough to keep blocks wide.
#: A constant (not the thread count) so that results do not depend on the machine.
TARGET_TASKS = 16
#: Workspace (padded copies, im2col matrices, partial filters) allowed to one call, bytes
#: (:func:`numbaconv.memory.workspace_cap`). A schedule that needs more is not legal.
WORKSPACE_BYTES_CAP = workspace_cap()


@dataclass(frozen=True)
class Schedule:
    """How one primitive's kernel runs (see the module docstring for each knob)."""

    algorithm: str = "direct"
    loop_order: str = "pixel_tap_channel"
    channel_block: int = 64
    register_tile: tuple = field(default=(4, 16))
    in_channel_block: int = 64
    reduction_splits: int = 1

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.loop_order not in LOOP_ORDERS[self.algorithm]:
            raise ValueError(f"loop_order of a {self.algorithm} schedule must be one of "
                             f"{LOOP_ORDERS[self.algorithm]}, got {self.loop_order!r}")
        for name in ("channel_block", "in_channel_block", "reduction_splits"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        tile = tuple(self.register_tile)
        if len(tile) != 2 or not all(isinstance(v, int) and v >= 1 for v in tile):
            raise ValueError(f"register_tile must be two positive ints, got {self.register_tile!r}")
        object.__setattr__(self, "register_tile", tile)

    def to_dict(self) -> dict:
        """Plain data for YAML: only the knobs the algorithm uses."""
        data = asdict(self)
        data["register_tile"] = list(self.register_tile)
        unused = {"direct": ("register_tile",), "tiled": ("in_channel_block",),
                  "gemm": ("register_tile", "in_channel_block", "channel_block",
                           "reduction_splits")}[self.algorithm]
        for name in unused:
            data.pop(name)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Schedule":
        known = {name: value for name, value in data.items() if name in cls.__dataclass_fields__}
        if "register_tile" in known:
            known["register_tile"] = tuple(known["register_tile"])
        return cls(**known)

    def __str__(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.to_dict().items())


def output_channels(primitive: str, geometry: ConvGeometry) -> int:
    """The contiguous channel axis a primitive's tasks write."""
    return geometry.in_channels if primitive == "backward_data" else geometry.out_channels


def is_one_by_one(g: ConvGeometry) -> bool:
    """A 1×1 filter without padding: the convolution is a matmul on a strided view."""
    return (g.filter_height == g.filter_width == 1
            and g.pad_top == g.pad_bottom == g.pad_left == g.pad_right == 0)


def workspace_bytes(primitive: str, g: ConvGeometry, schedule: Schedule, itemsize: int) -> int:
    """Memory beyond the inputs and the result that ``schedule`` allocates for one call."""
    filter_elements = g.filter_height * g.filter_width * g.in_channels * g.out_channels
    pixels = g.batch * g.out_height * g.out_width
    if schedule.algorithm == "gemm":
        taps = g.filter_height * g.filter_width * g.in_channels
        if is_one_by_one(g):
            strided = (g.stride_h, g.stride_w) != (1, 1)
            cols = pixels * (g.in_channels + g.out_channels) if strided else 0
        else:
            cols = pixels * taps
        if schedule.loop_order == "im2col":
            return cols * itemsize
        # im2col_tiled (gemm.tiled_matmul): B zero-padded to whole tiles and packed, the
        # padded product, and a contiguous copy of A or of the product.
        def padded(n):
            return -(-n // 16) * 16
        rows, length, columns = {
            "forward": (pixels, taps, g.out_channels),
            "backward_data": (pixels, g.out_channels, taps),
            "backward_filter": (taps, pixels, g.out_channels)}[primitive]
        return (cols + 2 * length * padded(columns) + rows * padded(columns)
                + rows * max(length, columns)) * itemsize
    splits = schedule.reduction_splits if primitive == "backward_filter" else 1
    partials = filter_elements * splits * itemsize if splits > 1 else 0
    if schedule.algorithm == "direct":
        return partials + (filter_elements * itemsize if primitive == "backward_data" else 0)
    # tiled: a padded copy of the input (of dy for backward-data) and, for backward-data,
    # the rotated filter.
    if primitive == "backward_data":
        effective_h = (g.filter_height - 1) * g.dilation_h + 1
        effective_w = (g.filter_width - 1) * g.dilation_w + 1
        padded = (g.batch * (g.out_height + 2 * effective_h) * (g.out_width + 2 * effective_w)
                  * g.out_channels)
        packed = 0 if schedule.loop_order == "packed_panels" else filter_elements
        return (padded + packed) * itemsize
    padded = (g.batch * (g.in_height + g.pad_top + g.pad_bottom)
              * (g.in_width + g.pad_left + g.pad_right) * g.in_channels)
    return padded * itemsize + partials


def illegal_reason(primitive: str, g: ConvGeometry, schedule: Schedule,
                   itemsize: int = 4) -> str | None:
    """Why ``schedule`` cannot run ``primitive`` on ``g``, or None when it can."""
    if workspace_bytes(primitive, g, schedule, itemsize) > WORKSPACE_BYTES_CAP:
        return (f"needs {workspace_bytes(primitive, g, schedule, itemsize) / 2**20:.0f} MiB of "
                f"workspace, over the {WORKSPACE_BYTES_CAP / 2**20:.0f} MiB cap")
    if schedule.algorithm != "tiled":
        return None
    rows, cols = schedule.register_tile
    if primitive == "backward_filter":
        if schedule.loop_order == "packed_panels":
            return "packed_panels is not a backward-filter loop order"
        if g.in_channels % rows or g.out_channels % cols:
            return f"register tile {schedule.register_tile} does not divide (C, K)"
        return None
    channels = output_channels(primitive, g)
    if channels % cols or schedule.channel_block % cols:
        return f"tile channels {cols} do not divide {channels} channels or the channel block"
    return None


def channel_block_for(channels: int, row_tasks: int, multiple: int = 8) -> int:
    """Widest multiple of ``multiple`` that still gives about TARGET_TASKS tasks."""
    blocks_wanted = max(1, -(-TARGET_TASKS // max(row_tasks, 1)))
    block = -(-channels // blocks_wanted)
    block = max(multiple, -(-block // multiple) * multiple)
    return min(block, max(channels, 1))


def panel_channel_block(channels: int, tile_channels: int) -> int:
    """The channel block of a ``packed_panels`` schedule: channel tiles split into about
    TARGET_TASKS groups first (each pixel group packs every panel again)."""
    return tile_channels * max(1, channels // tile_channels // TARGET_TASKS)


def direct_schedule(primitive: str, g: ConvGeometry, itemsize: int = 4) -> Schedule:
    """A direct-loop schedule for any geometry (always legal within the workspace cap)."""
    channels = output_channels(primitive, g)
    if primitive == "backward_filter":
        rows = g.batch * g.out_height
        filter_bytes = g.filter_height * g.filter_width * g.in_channels * g.out_channels * itemsize
        most_splits = max(1, WORKSPACE_BYTES_CAP // 2 // max(filter_bytes, 1))
        # Wide output-channel rows amortise the inner loop's set-up (measured: 128 wide
        # runs 1.5-2x faster than 32); input-channel blocks then supply the tasks, and
        # reduction splits (extra memory, extra pass) only make up what is still missing.
        k_block = min(256, max(channels, 1))
        k_blocks = -(-channels // k_block)
        c_block = channel_block_for(g.in_channels, k_blocks)
        blocks = k_blocks * -(-g.in_channels // c_block)
        splits = max(1, min(rows, most_splits, -(-TARGET_TASKS // max(blocks, 1))))
        return Schedule(loop_order="tap_channel_pixel", channel_block=k_block,
                        in_channel_block=c_block, reduction_splits=splits)
    rows = g.batch * (g.out_height if primitive == "forward" else g.in_height)
    # Filter slices beyond a few hundred KB fall out of L2 when streamed once per pixel.
    filter_slice = g.filter_height * g.filter_width * g.in_channels * min(channels, 64) * itemsize
    order = "tap_channel_pixel" if filter_slice > 128 * 2**10 else "pixel_tap_channel"
    return Schedule(loop_order=order, channel_block=channel_block_for(channels, rows))


def default_schedule(primitive: str, geometry: ConvGeometry, itemsize: int = 4) -> Schedule:
    """The direct loop nest: legal for every geometry (the tuner's baseline)."""
    if primitive not in PRIMITIVES:
        raise ValueError(f"primitive must be one of {PRIMITIVES}, got {primitive!r}")
    return direct_schedule(primitive, geometry, itemsize)
