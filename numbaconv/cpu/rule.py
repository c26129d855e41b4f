"""The CPU's default schedule where nothing tuned applies: a rule over the families.

The depthwise kernels for depthwise layers, and their vector tiles for grouped layers of a
few channels per group (as many in as out: ResNeXt's 4 and 8); Winograd tiles for 3×3
stride-1 layers large enough to pay for the filter's transform (backward-filter where
calibration found it faster); register tiles where they fit (the tiled family's
preferences, in order; a grouped layer's within its groups); the direct loop for tiny
images and for groups too narrow for a tile; im2col with the matmul on the tiled kernel
where no tile fits (an RGB input, say); never BLAS, whose spinning worker threads stall
the Numba kernels after it.
"""

from __future__ import annotations

from ..geometry import ConvGeometry
from ..machine import Machine
from . import depthwise, direct, gemm, tiled, winograd
from .families import CPU

#: Below this many output pixels, with at most this many channel pairs, the direct loop
#: beats register tiles (their set-up is not paid back).
TINY_PIXELS = 16
TINY_CHANNEL_PAIRS = 64 * 64


def calibrated_tiles(calibration: dict | None, primitive: str, itemsize: int) -> list:
    """The tiles calibration ranked for ``primitive`` in this dtype, fastest first."""
    dtype = {4: "float32", 8: "float64"}.get(itemsize)
    tiles = ((calibration or {}).get("tiles") or {}).get(dtype) or {}
    ranked = tiles.get(primitive) or []
    return [tuple(tile) for tile in ranked
            if isinstance(tile, (list, tuple)) and len(tile) == 2
            and all(isinstance(v, int) and v > 0 for v in tile)]


def calibrated_half_panels(calibration: dict | None, storage: str) -> bool:
    """Whether calibration found the half type ``storage``'s 1×1 backward-filter faster on
    packed panels than on pixel tiles outer (:func:`numbaconv.cpu.calibration.
    probe_half_panels`); no where it did not measure that."""
    found = ((calibration or {}).get("half_panels") or {}).get(storage) or {}
    return found.get("panels_pay") is True


def calibrated_winograd_backward_filter(calibration: dict | None) -> bool:
    """Whether calibration found Winograd's backward-filter faster than the tiles on its
    probe layer (:func:`numbaconv.cpu.calibration.probe_winograd_backward_filter`); no
    where it did not measure that."""
    found = (calibration or {}).get("winograd_backward_filter") or {}
    return found.get("pays") is True


def rule(primitive: str, g: ConvGeometry, itemsize: int, machine: Machine,
         calibration: dict | None = None):
    """The default schedule: ``machine`` decides the tile menu, ``calibration`` (the device
    config's section, if any) its order."""
    if g.is_depthwise:
        return depthwise.default(primitive, g, itemsize, machine)
    machine = machine.calibrated(calibration)
    pixels = g.batch * g.out_height * g.out_width
    if (primitive != "backward_filter" and pixels < TINY_PIXELS
            and g.in_channels * g.out_channels <= TINY_CHANNEL_PAIRS):
        return direct.default(primitive, g, itemsize)
    # The machine model picks these; this CPU's kernels decide what is legal (the two
    # differ only where a model describes another machine).
    for special in (winograd.default(primitive, g, itemsize, machine,
                                     calibrated_winograd_backward_filter(calibration)),
                    depthwise.grouped_default(primitive, g, itemsize, machine)):
        if special is not None and CPU.illegal_reason(primitive, g, special, itemsize) is None:
            return special
    ranking = calibrated_tiles(calibration, primitive, itemsize)
    for schedule in tiled.preferences(primitive, g, itemsize, machine, ranking):
        if CPU.illegal_reason(primitive, g, schedule, itemsize) is None:
            return schedule
    if g.groups > 1:  # groups too narrow for any tile: the direct loops
        return direct.default(primitive, g, itemsize)
    fallback = gemm.GemmSchedule(matmul="tiled")
    if CPU.illegal_reason(primitive, g, fallback, itemsize) is None:
        return fallback
    return direct.default(primitive, g, itemsize)
