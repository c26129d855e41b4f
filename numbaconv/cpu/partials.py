"""Backward-filter's split reduction: partial filters summed in a fixed order."""

import numpy as np
from numba import prange

from .jit import helper, parallel_kernel

#: Elements of the filter one task of :func:`sum_partials` adds up.
CHUNK = 4096


@helper
def _add(dst, src):
    for i in range(dst.shape[0]):
        dst[i] += src[i]


@parallel_kernel
def sum_partials(partials, out):
    """partials [splits, M] -> out [M], each element summed over splits in order."""
    splits, size = partials.shape
    for task in prange((size + CHUNK - 1) // CHUNK):
        i0 = task * CHUNK
        i1 = min(i0 + CHUNK, size)
        out[i0:i1] = partials[0, i0:i1]
        for split in range(1, splits):
            _add(out[i0:i1], partials[split, i0:i1])


#: Up to this size the partials are summed by NumPy (in the same order): a parallel launch
#: costs more than the sum.
SMALL_BYTES = 64 * 2**10


def reduced(partials: np.ndarray, by_numpy: bool = False) -> np.ndarray:
    """partials [splits, *shape] -> [*shape]: the one partial itself, or their ordered sum
    (by NumPy whatever the size when ``by_numpy``: a cold start's starter compiles only its
    register tile)."""
    if partials.shape[0] == 1:
        return partials[0]
    if by_numpy or partials.nbytes <= SMALL_BYTES:
        out = partials[0] + partials[1]
        for part in partials[2:]:
            out += part
        return out
    out = np.empty(partials.shape[1:], dtype=partials.dtype)
    sum_partials(partials.reshape(partials.shape[0], -1), out.reshape(-1))
    return out


@parallel_kernel
def _add_kernel(total, part):
    """total += part, each task CHUNK elements."""
    for task in prange((total.shape[0] + CHUNK - 1) // CHUNK):
        i0 = task * CHUNK
        i1 = min(i0 + CHUNK, total.shape[0])
        _add(total[i0:i1], part[i0:i1])


def add_into(total: np.ndarray, part: np.ndarray) -> None:
    """total += part (flat arrays of one size), by the threads where it is large (a sum
    over chunks of a reduction, in order)."""
    if total.nbytes <= SMALL_BYTES:
        total += part
    else:
        _add_kernel(total, part)
