"""The three primitives every op reduces to, as one table.

Each primitive reads two of the forward convolution's three tensors and computes the
third, all in the geometry of the forward convolution (:class:`ConvGeometry`):

================  ==================  ==========  ==========================
primitive         reads               computes    channels its tasks write
================  ==================  ==========  ==========================
forward           input, filter       output      out_channels
backward_data     output, filter      input       in_channels
backward_filter   input, output       filter      out_channels
================  ==================  ==========  ==========================

(``output`` read by a gradient is ``dy``, the gradient of the loss by the output.)
Activations (``input``, ``output``) are NHWC inside numbaconv, filters HWIO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import ConvGeometry

#: The tensors of a convolution; ``filter`` is HWIO, the others are activations.
TENSORS = ("input", "filter", "output")


def tensor_shape(tensor: str, g: ConvGeometry) -> tuple[int, int, int, int]:
    """NHWC shape of an activation, HWIO shape of the filter (the geometry's
    ``<tensor>_shape``)."""
    return getattr(g, f"{tensor}_shape")


def is_activation(tensor: str) -> bool:
    return tensor != "filter"


@dataclass(frozen=True)
class Primitive:
    """One row of the table: the tensors read (in the order kernels take them), the
    tensor computed, and the channel axis (a field of the geometry) that tasks split."""

    name: str
    operands: tuple[str, str]
    result: str
    written_channels: str

    def operand_shapes(self, g: ConvGeometry) -> tuple:
        return tuple(tensor_shape(tensor, g) for tensor in self.operands)

    def result_shape(self, g: ConvGeometry) -> tuple:
        return tensor_shape(self.result, g)

    def channels(self, g: ConvGeometry) -> int:
        """The contiguous channel axis this primitive's tasks write."""
        return getattr(g, self.written_channels)

    def group_channels(self, g: ConvGeometry) -> int:
        """The channels of one group along that axis (all of them when not grouped)."""
        return self.channels(g) // g.groups

    def pick(self, tensors: dict) -> tuple:
        """This primitive's operands out of ``tensors`` (tensor name -> array)."""
        return tuple(tensors[tensor] for tensor in self.operands)


FORWARD = Primitive("forward", ("input", "filter"), "output", "out_channels")
BACKWARD_DATA = Primitive("backward_data", ("output", "filter"), "input", "in_channels")
BACKWARD_FILTER = Primitive("backward_filter", ("input", "output"), "filter", "out_channels")

PRIMITIVES: dict[str, Primitive] = {p.name: p for p in (FORWARD, BACKWARD_DATA, BACKWARD_FILTER)}
NAMES = tuple(PRIMITIVES)


def primitive(name: str) -> Primitive:
    """The table row of ``name``; a ValueError for an unknown one."""
    found = PRIMITIVES.get(name)
    if found is None:
        raise ValueError(f"primitive must be one of {NAMES}, got {name!r}")
    return found


def random_tensors(g: ConvGeometry, dtype, rng) -> dict[str, np.ndarray]:
    """All three tensors, standard-normal, drawn in :data:`TENSORS` order (tuner and
    benchmark: every primitive's operands from one draw)."""
    return {tensor: rng.standard_normal(tensor_shape(tensor, g)).astype(dtype)
            for tensor in TENSORS}
