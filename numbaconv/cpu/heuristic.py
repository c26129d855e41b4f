"""Which CPU schedule a call runs: the tuned one, else the nearest tuned one, else a rule.

1. ``tuned``: the config cache has this exact (primitive, dtype, geometry).
2. ``nearest tuned``: the tuned geometry of the same primitive and dtype closest in
   log-space (pixels, channels, filter size, stride) whose schedule is legal here, with
   its task split redone for this geometry (its family's ``fit``). Neighbouring layers of
   one network want the same tile, so this carries tuning over to shapes nobody tuned.
3. ``default heuristic``: :func:`numbaconv.cpu.rule.rule`.

Where Winograd can run and the schedule is another family's, Winograd goes over it
(:func:`numbaconv.cpu.winograd.kept_transform`): the calls whose filter comes again
unchanged (inference) run Winograd on a kept transform, the others the schedule. float32
and float64 only: a half type's filter is converted, a new array on every call.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .. import configs
from ..choice import Choice, remembered
from ..geometry import ConvGeometry, geometry_key
from ..machine import this_machine
from . import tiled, winograd
from .families import CPU
from .rule import rule

#: Beyond this log-distance (a factor of 2 in pixels, channels or taps) a tuned geometry
#: says little about another one: farther neighbours' schedules ran slower than the rule's.
NEAREST_MAX_DISTANCE = 1.0


def _features(primitive: str, g: ConvGeometry) -> tuple:
    pixels = g.batch * g.out_height * g.out_width
    return (math.log2(pixels), math.log2(max(g.in_channels, 1)), math.log2(max(g.out_channels, 1)),
            math.log2(g.filter_height * g.filter_width), 2.0 * math.log2(g.stride_h * g.stride_w),
            2.0 * math.log2(g.groups))


def distance(primitive: str, a: ConvGeometry, b: ConvGeometry) -> float:
    return math.dist(_features(primitive, a), _features(primitive, b))


class Regime(NamedTuple):
    """What decides the algorithm more than size does (the rule's branches), and the test a
    tuned neighbour must pass (one in another regime says little here)."""

    one_by_one: bool          # a 1×1 filter without padding: one matmul
    few_rows: bool            # < 8 task rows: register tiles cannot fill the cores
    streamed_reduction: bool  # backward-filter whose x and dy no longer fit in cache
    tileable: bool            # both channel counts are multiples of 8
    grouping: str             # "dense", "grouped" or "depthwise": different families


def regime(primitive: str, g: ConvGeometry, itemsize: int) -> Regime:
    streamed = tiled.streamed_reduction(g, itemsize)
    rows = g.batch * (g.in_height if primitive == "backward_data" else g.out_height)
    grouping = "depthwise" if g.is_depthwise else "grouped" if g.groups > 1 else "dense"
    return Regime(g.is_one_by_one, rows < 8, primitive == "backward_filter" and streamed,
                  g.in_channels % 8 == 0 and g.out_channels % 8 == 0, grouping)


_choices: dict = {}


def choose(primitive: str, g: ConvGeometry, dtype: str, itemsize: int) -> Choice:
    """The schedule for one call; remembered until a config file changes."""
    return remembered(_choices, (primitive, g, dtype, itemsize), "cpu",
                      lambda: _choose(primitive, g, dtype, itemsize))


def _choose(primitive: str, g: ConvGeometry, dtype: str, itemsize: int) -> Choice:
    chosen = _tuned_or_rule(primitive, g, dtype, itemsize)
    if dtype not in ("float32", "float64"):
        return chosen
    over = winograd.kept_transform(primitive, g, itemsize, this_machine(), chosen.schedule)
    if over is None or CPU.illegal_reason(primitive, g, over, itemsize) is not None:
        return chosen
    return Choice(over, f"{chosen.source}; Winograd over it where the filter comes again "
                        f"unchanged")


def _tuned_or_rule(primitive: str, g: ConvGeometry, dtype: str, itemsize: int) -> Choice:
    tuned = configs.lookup(primitive, dtype, g)
    if tuned is not None and CPU.illegal_reason(primitive, g, tuned.schedule, itemsize) is None:
        return Choice(tuned.schedule, f"tuned: {tuned.path}")
    candidates = sorted(configs.tuned_entries(primitive, dtype),
                        key=lambda t: distance(primitive, g, t.geometry))
    for near in candidates:
        if distance(primitive, g, near.geometry) > NEAREST_MAX_DISTANCE:
            break
        if regime(primitive, near.geometry, itemsize) != regime(primitive, g, itemsize):
            continue
        schedule = CPU.fit(near.schedule, primitive, g, itemsize)
        if CPU.illegal_reason(primitive, g, schedule, itemsize) is None:
            return Choice(schedule, f"nearest tuned: {near.path} ({geometry_key(near.geometry)})")
    calibration = configs.calibration()
    return Choice(rule(primitive, g, itemsize, this_machine(), calibration),
                  "default heuristic" + (" (calibrated)" if calibration else ""))
