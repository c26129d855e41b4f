"""The bias gradient on CUDA: ``out_backprop`` as (rows, channels, inner) summed over
rows and inner. Each thread sums one channel over one chunk of rows into
``partials[chunk, channel]``; the chunks are added in order by the split-sum kernel
(deterministic, independent of the device)."""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

THREADS = 128
#: Row chunks: enough blocks to fill a GPU when there are few channels.
ROW_CHUNKS = 32


@functools.lru_cache(maxsize=None)
def kernel(dtype: str, python: bool = False):
    zero = np.dtype(dtype).type(0)

    def partial_sums(dy3, partials, rows_per_chunk):
        channel = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        chunk = cuda.blockIdx.y
        if channel >= dy3.shape[1]:
            return
        begin = chunk * rows_per_chunk
        end = min(dy3.shape[0], begin + rows_per_chunk)
        total = zero
        for row in range(begin, end):
            for i in range(dy3.shape[2]):
                total += dy3[row, channel, i]
        partials[chunk, channel] = total

    return partial_sums if python else cuda.jit(partial_sums)
