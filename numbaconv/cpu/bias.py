"""Bias gradient (``bias_add_grad``) on the CPU: a sum over every axis but the channel's."""

import numpy as np
from numba import prange

from .jit import parallel_kernel
from .layout import readonly

#: Row chunks summed separately, then added in order: fixed, so results are deterministic.
SPLITS = 16


@parallel_kernel
def bias_grad_direct(x, partials):
    """x [outer, C, inner] (C-contiguous) -> partials [splits, C] (float64)."""
    outer, channels, inner = x.shape
    splits = partials.shape[0]
    for split in prange(splits):
        o0 = split * outer // splits
        o1 = (split + 1) * outer // splits
        for c in range(channels):
            partials[split, c] = 0.0
        for o in range(o0, o1):
            for c in range(channels):
                total = 0.0
                for i in range(inner):
                    total += x[o, c, i]
                partials[split, c] += total


def run(x3: np.ndarray) -> np.ndarray:
    """x3 [outer, C, inner] (C-contiguous) -> [C] in x3's dtype, summed in float64."""
    splits = max(1, min(SPLITS, x3.shape[0]))
    partials = np.empty((splits, x3.shape[1]), dtype=np.float64)
    bias_grad_direct(readonly(x3), partials)
    return partials.sum(axis=0).astype(x3.dtype)
