"""The CPU's kernel families, by algorithm name: the one place that lists them.

A new family is a module (or package) that builds a :class:`numbaconv.family.Family` and
one entry below; its knobs' search space is its own section of
``tuning/search_space.yaml`` (under its name).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .. import memory
from ..family import Registry
from ..geometry import ConvGeometry
from ..primitives import primitive as primitive_named
from . import depthwise, direct, gemm, tiled, winograd

CPU = Registry(direct.FAMILY, tiled.FAMILY, gemm.FAMILY, depthwise.FAMILY, winograd.FAMILY,
               workspace_cap=lambda: memory.WORKSPACE_BYTES_CAP)


def integer_schedule(primitive: str, g: ConvGeometry):
    """The schedule of integer operands: the direct (or depthwise) loops, the kernels
    written over any dtype; the generated tiles are float-only."""
    if g.is_depthwise:
        return depthwise.default(primitive, g, 8, generated=False)
    return direct.default(primitive, g, 8)


def half_type_schedule(primitive: str, g: ConvGeometry, schedule, storage: str,
                       panels_pay: bool):
    """What a call on the half type ``storage`` runs for ``schedule``, the choice for its
    float32 compute type (:func:`numbaconv.cpu.tiled.half_type_schedule`)."""
    if schedule.algorithm != tiled.TiledSchedule.algorithm:
        return schedule
    return tiled.half_type_schedule(primitive, g, schedule, storage,
                                    np.dtype(np.float32).itemsize,  # the compute type's
                                    panels_pay)


def run(primitive: str, operands, g: ConvGeometry, schedule) -> np.ndarray:
    """One primitive on C-contiguous NHWC / HWIO operands (in the order the primitive table
    gives) under ``schedule``: a fresh result. An empty operand sums nothing: zeros."""
    return prepare(primitive, g, schedule, operands[0].dtype)(*operands)


def prepare(primitive: str, g: ConvGeometry, schedule, dtype, **options) -> Callable:
    """:func:`run` as a function of the two operands (of ``dtype``), what ``g`` fixes done
    once (``options``: the family's own, e.g. the tiled family's ``copies_by_numpy``)."""
    p = primitive_named(primitive)
    if any(math.prod(shape) == 0 for shape in p.operand_shapes(g)):
        result_shape = p.result_shape(g)
        return lambda first, second: np.zeros(result_shape, dtype=dtype)
    other = getattr(schedule, "otherwise", None)
    if other is not None:  # Winograd over another family's schedule: that one prepared too
        options = dict(options, otherwise=prepare(primitive, g, other, dtype, **options))
    return CPU.prepare(primitive, g, schedule, dtype, **options)
