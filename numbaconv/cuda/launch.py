"""Launching the CUDA kernels: device arrays in (activations in ``data_format`` layout,
filters HWIO, any strides), a fresh C-contiguous device array out."""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

from ..arguments import from_nhwc_shape
from ..geometry import ConvGeometry
from ..primitives import primitive as primitive_named
from . import backward_data, backward_filter, bias, forward
from .schedule import CudaSchedule, gemm_shape, grid, illegal_reason, reduction_chunk
from .tiles import geometry_tuple, split_sum_kernel

KERNELS = {"forward": forward.kernel, "backward_data": backward_data.kernel,
           "backward_filter": backward_filter.kernel}
SUM_THREADS = 256


@functools.lru_cache(maxsize=None)
def fill_zero_kernel(python: bool = False):
    def fill_zero(flat):
        i = cuda.grid(1)
        if i < flat.shape[0]:
            flat[i] = 0

    return fill_zero if python else cuda.jit(fill_zero)


@functools.lru_cache(maxsize=None)
def cast_kernel(python: bool = False):
    """target[i] = source[i], converted to target's dtype (float16 <-> float32)."""
    def cast(source, target):
        i = cuda.grid(1)
        if i < target.shape[0]:
            target[i] = source[i]

    return cast if python else cuda.jit(cast)


def cast(array, dtype, stream, name: str):
    """A fresh C-contiguous device array of ``array``'s values in ``dtype``."""
    if not array.is_c_contiguous():
        raise ValueError(f"{name}: a non-contiguous {array.dtype} device array (shape "
                         f"{array.shape}) is not supported on CUDA; pass a contiguous one")
    out = cuda.device_array(array.shape, dtype=dtype, stream=stream)
    size = int(np.prod(array.shape))
    if size:
        cast_kernel()[-(-size // SUM_THREADS), SUM_THREADS, stream](array.reshape(size),
                                                                   out.reshape(size))
    return out


def zeros(shape, dtype, stream):
    out = cuda.device_array(shape, dtype=dtype, stream=stream)
    flat = out.reshape(int(np.prod(shape)))
    if flat.shape[0]:
        fill_zero_kernel()[-(-flat.shape[0] // SUM_THREADS), SUM_THREADS, stream](flat)
    return out


def run(primitive: str, first, second, g: ConvGeometry, schedule: CudaSchedule,
        result_shape: tuple, data_format: str, stream):
    """One primitive on the GPU: ``first``/``second`` as in :class:`numbaconv.api.Call`."""
    dtype = np.dtype(first.dtype)
    reason = illegal_reason(primitive, g, schedule, dtype.itemsize)
    if reason:
        raise ValueError(f"schedule {schedule} cannot run {primitive} here: {reason}")
    rows, columns, depth = gemm_shape(primitive, g)
    kernel = KERNELS[primitive](schedule, dtype.name, data_format == "NHWC")
    launch = (grid(primitive, g, schedule), schedule.threads, stream)
    arguments = (geometry_tuple(g), rows, columns, depth, reduction_chunk(primitive, g, schedule))
    if primitive != "backward_filter":
        out = cuda.device_array(result_shape, dtype=dtype, stream=stream)
        kernel[launch](first, second, out, *arguments)
        return out
    every_column = columns * g.groups  # the filter's K
    if schedule.split_k == 1 or schedule.reduction == "atomic":
        out = (zeros if schedule.split_k > 1 else cuda.device_array)(
            result_shape, dtype=dtype, stream=stream)
        kernel[launch](first, second, out.reshape(1, rows, every_column), *arguments)
        return out
    partials = cuda.device_array((schedule.split_k, rows, every_column), dtype=dtype,
                                 stream=stream)
    kernel[launch](first, second, partials, *arguments)
    out = cuda.device_array(result_shape, dtype=dtype, stream=stream)
    _split_sum(partials.reshape(schedule.split_k, rows * every_column),
               out.reshape(rows * every_column), stream)
    return out


def run_family(primitive: str, operands, g: ConvGeometry, schedule: CudaSchedule,
               data_format: str = "NHWC", stream=0):
    """The family interface's ``run``: the result shape from the primitive table."""
    p = primitive_named(primitive)
    shape = p.result_shape(g)
    if p.result != "filter":
        shape = from_nhwc_shape(shape, data_format)
    return run(primitive, *operands, g, schedule, shape, data_format, stream)


def _split_sum(partials, flat_out, stream):
    size = flat_out.shape[0]
    split_sum_kernel()[-(-size // SUM_THREADS), SUM_THREADS, stream](partials, flat_out)


def bias_add_grad(dy3, stream):
    """``dy3`` (rows, channels, inner) -> [channels], summed over rows and inner."""
    rows, channels, _ = dy3.shape
    chunks = max(1, min(bias.ROW_CHUNKS, rows))
    rows_per_chunk = -(-rows // chunks)
    chunks = -(-rows // rows_per_chunk)
    partials = cuda.device_array((chunks, channels), dtype=dy3.dtype, stream=stream)
    bias.kernel(np.dtype(dy3.dtype).name)[(-(-channels // bias.THREADS), chunks), bias.THREADS, stream](
        dy3, partials, rows_per_chunk)
    out = cuda.device_array(channels, dtype=dy3.dtype, stream=stream)
    _split_sum(partials, out, stream)
    return out
