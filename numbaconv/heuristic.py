"""Which schedule a call runs: the tuned one, else the nearest tuned one, else a rule.

1. ``tuned``: the config cache has this exact (primitive, dtype, geometry).
2. ``nearest tuned``: the tuned geometry of the same primitive and dtype closest in
   log-space (pixels, channels, filter size, stride) whose schedule is legal here, with
   its task split recomputed for this geometry. Neighbouring layers of one network want
   the same tile, so this carries tuning over to shapes nobody tuned.
3. ``default heuristic``: a rule from the tuner's measurements (register tiles where they
   fit; a direct loop for tiny images; im2col with the matmul on the tiled kernel where no
   tile fits; never BLAS).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

from . import configs
from .geometry import ConvGeometry
from .schedule import (Schedule, TARGET_TASKS, channel_block_for, direct_schedule, illegal_reason,
                       is_one_by_one, output_channels, panel_channel_block)

#: Beyond this log-distance a tuned geometry says little about another one: measured with
#: ResNet-50's tuned entries (AVX-512), MobileNetV2's layers ran 0.82-0.95 as fast on their
#: nearest neighbour's schedule as on the rule's at distances 1.0-3.0 (geometric means per
#: primitive, 51 problems); VGG-16's 0.98-1.03.
NEAREST_MAX_DISTANCE = 1.0


@dataclass(frozen=True)
class Choice:
    schedule: Schedule
    source: str


def _features(primitive: str, g: ConvGeometry) -> tuple:
    pixels = g.batch * g.out_height * g.out_width
    return (math.log2(pixels), math.log2(max(g.in_channels, 1)), math.log2(max(g.out_channels, 1)),
            math.log2(g.filter_height * g.filter_width), 2.0 * math.log2(g.stride_h * g.stride_w))


def distance(primitive: str, a: ConvGeometry, b: ConvGeometry) -> float:
    return math.dist(_features(primitive, a), _features(primitive, b))


#: Backward-filter tiles re-read the input and dy once per tile: beyond this many bytes of
#: them (no longer in cache) a layer behaves differently (a tuned neighbour must match).
STREAMED_BYTES = 4 * 2**20


class Regime(NamedTuple):
    """What decides the algorithm more than size does: the branches of :func:`rule`, and
    the test a tuned neighbour must pass (one in another regime says little here)."""

    one_by_one: bool          # a 1×1 filter without padding: one matmul
    few_rows: bool            # < 8 task rows: register tiles cannot fill the cores
    streamed_reduction: bool  # backward-filter whose x and dy no longer fit in cache
    tileable: bool            # both channel counts are multiples of 8


def regime(primitive: str, g: ConvGeometry, itemsize: int) -> Regime:
    pixels = g.batch * g.out_height * g.out_width
    streamed = pixels * (g.in_channels + g.out_channels) * itemsize > STREAMED_BYTES
    rows = g.batch * (g.in_height if primitive == "backward_data" else g.out_height)
    return Regime(is_one_by_one(g), rows < 8, primitive == "backward_filter" and streamed,
                  g.in_channels % 8 == 0 and g.out_channels % 8 == 0)


def fit(schedule: Schedule, primitive: str, g: ConvGeometry, itemsize: int) -> Schedule:
    """``schedule`` with its task split (channel block, reduction splits) redone for ``g``."""
    if schedule.algorithm == "gemm":
        return schedule
    if schedule.algorithm == "direct":
        base = direct_schedule(primitive, g, itemsize)
        return dataclasses.replace(base, loop_order=schedule.loop_order)
    rows, cols = schedule.register_tile
    if primitive == "backward_filter":
        tiles = g.filter_height * g.filter_width * (g.in_channels // rows) * (g.out_channels // cols)
        splits = max(1, min(g.batch * g.out_height, -(-TARGET_TASKS // max(tiles, 1))))
        return dataclasses.replace(schedule, reduction_splits=splits)
    if schedule.loop_order == "packed_panels":
        block = panel_channel_block(output_channels(primitive, g), cols)
        return dataclasses.replace(schedule, channel_block=block)
    task_rows = g.batch * (g.out_height if primitive == "forward" else g.in_height)
    block = channel_block_for(output_channels(primitive, g), task_rows, multiple=cols)
    return dataclasses.replace(schedule, channel_block=block)


def rule(primitive: str, g: ConvGeometry, itemsize: int) -> Schedule:
    """The default when nothing tuned applies (from the tuner's measurements on this
    project's 2-core machines, AVX2 and AVX-512)."""
    # Never BLAS: its worker threads spin for ~0.1 s after each matmul and stall the Numba
    # kernels after it (a ResNet-50 bottleneck with its 1×1 layers on BLAS: 8-16 ms; on
    # register tiles: 4.2-5.0 ms, the sum of its three layers alone). Where no register
    # tile fits, im2col with the matmul on the tiled kernel.
    gemm = Schedule(algorithm="gemm", loop_order="im2col_tiled")
    gemm_fits = illegal_reason(primitive, g, gemm, itemsize) is None
    pixels = g.batch * g.out_height * g.out_width
    if primitive != "backward_filter" and pixels < 16 and g.in_channels * g.out_channels <= 64 * 64:
        # Measured on a 3×3×64 image: the direct loop 2× faster than register tiles.
        return direct_schedule(primitive, g, itemsize)
    if primitive == "backward_filter":
        # 3×32 for RGB inputs (C = 3): 2.6 ms on ResNet-50's conv1, BLAS im2col 8.1. With
        # AVX-512's 32 registers 8×16 (8 zmm accumulators) beat 4×16 by 1.1-1.8× on 20 of
        # ResNet-50's 23 layers; with AVX2's 16 its 16 ymm accumulators spill.
        tiles = ((4, 16), (8, 8), (2, 32), (4, 8), (2, 8), (3, 32), (3, 16))
        if "avx512f" in configs.cpu_device()["simd"]:
            tiles = ((8, 16),) + tiles
    else:
        # 10-12 accumulator vectors first (measured on ResNet-50's 3×3 layers, fraction
        # of matmul, forward: 5×16 0.85, 3×32 0.84, 4×16 0.74, 8×8 0.61).
        tiles = ((5, 16), (3, 32), (4, 16), (8, 8), (2, 32), (4, 8), (2, 8), (1, 8))
    # Filter panels packed per task. In the shipped ResNet-50 configs (AVX-512) the tuner
    # chose packed_panels for forward on all 11 layers with filters of 1 MB or more and 7
    # of the 12 smaller ones; for backward-data on all 11 and 5 of 12 (side by side with
    # the filter packed beforehand: 1.0-1.8× on res4/res5, 0.8-1.1 on res2/res3).
    filter_bytes = g.filter_height * g.filter_width * g.in_channels * g.out_channels * itemsize
    panels = primitive == "forward" or (primitive == "backward_data" and filter_bytes >= 2**20)
    order = "packed_panels" if panels else "pixel_tiles_outer"
    # Float32 widths; a float64 vector holds half as many channels (same registers).
    scale = 4 / itemsize
    for rows, cols in tiles:
        tile = (rows, max(1, int(cols * scale)))
        tiled = fit(Schedule(algorithm="tiled", loop_order=order, register_tile=tile),
                    primitive, g, itemsize)
        if illegal_reason(primitive, g, tiled, itemsize) is None:
            return tiled
    # Channels no tile divides (an RGB input, say): im2col turns them into a long reduction.
    return gemm if gemm_fits else direct_schedule(primitive, g, itemsize)


_choices: dict = {}


def remembered(memo: dict, key, device: str, compute) -> Choice:
    """``compute()``, kept in ``memo`` under ``key`` until a config file of ``device``
    changes (every backend's ``choose`` goes through here)."""
    signature = configs.files_signature(device)
    found = memo.get(key)
    if found is not None and found[0] == signature:
        return found[1]
    if len(memo) > 4096:  # a stream of distinct shapes must not grow memory
        memo.clear()
    choice = compute()
    memo[key] = (signature, choice)
    return choice


def choose(primitive: str, g: ConvGeometry, dtype: str, itemsize: int) -> Choice:
    """The schedule for one call; remembered until a config file changes."""
    return remembered(_choices, (primitive, g, dtype, itemsize), "cpu",
                      lambda: _choose(primitive, g, dtype, itemsize))


def _choose(primitive: str, g: ConvGeometry, dtype: str, itemsize: int) -> Choice:
    tuned = configs.lookup(primitive, dtype, g)
    if tuned is not None and illegal_reason(primitive, g, tuned.schedule, itemsize) is None:
        return Choice(tuned.schedule, f"tuned: {tuned.path}")
    candidates = sorted(configs.tuned_entries(primitive, dtype),
                        key=lambda t: distance(primitive, g, t.geometry))
    for near in candidates:
        if distance(primitive, g, near.geometry) > NEAREST_MAX_DISTANCE:
            break
        if regime(primitive, near.geometry, itemsize) != regime(primitive, g, itemsize):
            continue
        schedule = fit(near.schedule, primitive, g, itemsize)
        if illegal_reason(primitive, g, schedule, itemsize) is None:
            return Choice(schedule, f"nearest tuned: {near.path} ({configs.geometry_key(near.geometry)})")
    return Choice(rule(primitive, g, itemsize), "default heuristic")
