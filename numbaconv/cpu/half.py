"""float16 and bfloat16, the storage types: conversion to and from float32 as parallel
kernels on their bits (Numba has no half types; NumPy's and ml_dtypes' casts run on one
core), rounding to nearest even, NaN and Inf kept, overflow to Inf, as NumPy's and
ml_dtypes' casts do. float16 goes through LLVM's own conversions (``fpext`` / ``fptrunc``
of ``half``: the F16C instructions, or ARM's) where the CPU has them — at memory speed,
2.5-3.4× the bit arithmetic below, which remains for CPUs without them (the one difference:
a signaling NaN comes out quiet, as any arithmetic on it would make it).

The arrays arrive as any dtype named ``float16`` or ``bfloat16`` (``ml_dtypes.bfloat16``
is never imported here): the kernels read and write them as ``uint16``.
"""

from __future__ import annotations

import functools
import platform

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types, uint32
from numba.extending import intrinsic, overload

from ..arguments import dtype_name
from .jit import helper, parallel_kernel
from .simd import storage_value

#: About how many elements one task converts.
CHUNK = 1 << 15
#: Up to this many elements a conversion runs on the calling thread, in one task: waking
#: the other threads costs more than converting them.
SERIAL_ELEMENTS = 1 << 16


@intrinsic
def _as_float32(typingctx, bits):
    """The float32 whose bits are the uint32 ``bits``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@intrinsic
def _float32_bits(typingctx, value):
    """The bits of the float32 ``value``, as a uint32."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def _float16_bits_as_float32(typingctx, bits):
    """The float32 value of the float16 whose bits are the uint16 ``bits``."""
    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


@intrinsic
def _float32_as_float16_bits(typingctx, value):
    """The bits (a uint16) of the float32 ``value`` rounded to float16, nearest even."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.uint16(types.float32), codegen


@functools.lru_cache(maxsize=1)
def hardware_float16() -> bool:
    """Whether LLVM converts float16 in instructions here (x86's F16C, any 64-bit ARM),
    not in calls to a runtime library that Numba's JIT may not link."""
    import llvmlite.binding as llvm

    return bool(llvm.get_host_cpu_features().get("f16c")) or platform.machine() in (
        "aarch64", "arm64")


#: 2**112: moves a half's exponent (bias 15) to float32's (bias 127), subnormals included.
_EXPONENT_SHIFT = np.float32(2.0 ** 112)


@helper
def float16_bits_to_float32_bits(h):
    """Branch-free (the loop vectorises): the half's exponent and mantissa placed as a
    float32's, scaled by 2**112 (exact for normals and subnormals alike; float32
    subnormals are not flushed here), Inf and NaN given float32's top exponent."""
    magnitude = (h & 0x7FFF) << 13
    scaled = _float32_bits(_as_float32(magnitude) * _EXPONENT_SHIFT)
    special = magnitude | 0x7F800000
    value = special if (h & 0x7C00) == 0x7C00 else scaled
    return value | ((h & 0x8000) << 16)


@helper
def float32_bits_to_float16_bits(f):
    """NumPy's ``npy_floatbits_to_halfbits``: round to nearest even."""
    sign = (f >> 16) & 0x8000
    exponent = f & 0x7F800000
    if exponent >= 0x47800000:  # beyond the half range: Inf, or NaN kept a NaN
        significand = f & 0x007FFFFF
        if exponent == 0x7F800000 and significand != 0:
            half = 0x7C00 + (significand >> 13)
            return sign + (half + 1 if half == 0x7C00 else half)
        return sign + 0x7C00
    if exponent <= 0x38000000:  # a half subnormal, or zero
        if exponent < 0x33000000:
            return sign
        significand = 0x00800000 + (f & 0x007FFFFF)
        significand >>= 113 - (exponent >> 23)
        if (significand & 0x3FFF) != 0x1000 or (f & 0x7FF) != 0:
            significand += 0x1000
        return sign + (significand >> 13)
    significand = f & 0x007FFFFF
    if (significand & 0x3FFF) != 0x1000:
        significand += 0x1000
    # A carry out of the significand bumps the exponent (to Inf at the top): correct.
    return sign + (((exponent - 0x38000000) >> 13) + (significand >> 13))


@helper
def float32_bits_to_bfloat16_bits(f):
    """Round to nearest even, a NaN kept one; in 32-bit arithmetic (each step cast back:
    Numba's integer arithmetic is 64-bit, and the loop's vectors would hold half as many)."""
    high = uint32(f >> 16)
    rounded = uint32(uint32(f + uint32(0x7FFF)) + (high & uint32(1))) >> 16
    return high | uint32(0x0040) if uint32(f & uint32(0x7FFFFFFF)) > uint32(0x7F800000) else rounded


def task_count(size: int) -> int:
    """Tasks for ``size`` elements: about CHUNK each, a multiple of the thread count, so
    that (Numba handing each thread an equal, contiguous run of tasks) thread t converts
    exactly the t-th of ``threads`` equal parts of the array. The kernels that read the
    result split their pixels between the threads the same way, so each thread reads what
    it wrote itself, not lines another core just wrote (markedly slower to read). Counted
    here, not in the kernels: Numba's disk cache refuses a kernel that asks for the thread
    count (a compilation per process, 1-2 s)."""
    threads = numba.get_num_threads()
    return max(1, -(-size // (CHUNK * threads))) * threads


@helper
def chunk(array, task, tasks):
    """Task ``task`` of ``tasks``'s elements of ``array``, a view that starts at 0: an index
    LLVM cannot prove non-negative keeps Numba's negative-index wrap-around in the loop,
    and the loop scalar (~10x slower)."""
    size = array.shape[0]
    return array[task * size // tasks:(task + 1) * size // tasks]


@parallel_kernel
def widen_kernel(bits, out, brain, tasks):
    """out (uint32 view of float32) <- bits (uint16 of float16, or bfloat16 if ``brain``),
    in ``tasks`` equal parts."""
    for task in prange(tasks):
        source, target = chunk(bits, task, tasks), chunk(out, task, tasks)
        if brain:
            for i in range(source.shape[0]):
                target[i] = np.uint32(source[i]) << 16
        else:
            for i in range(source.shape[0]):
                target[i] = float16_bits_to_float32_bits(np.uint32(source[i]))


@parallel_kernel
def narrow_kernel(values, out, brain, tasks):
    """out (uint16 of bfloat16 if ``brain``, else of float16) <- values (float32), rounded
    as :func:`copy_rounded` rounds, in ``tasks`` equal parts."""
    for task in prange(tasks):
        copy_rounded(chunk(out, task, tasks), chunk(values, task, tasks), brain)


@parallel_kernel
def widen_float16_kernel(bits, out, tasks):
    """out (float32) <- bits (uint16 of float16), by the CPU's conversion."""
    for task in prange(tasks):
        source, target = chunk(bits, task, tasks), chunk(out, task, tasks)
        for i in range(source.shape[0]):
            target[i] = _float16_bits_as_float32(source[i])


@helper
def _padded_row(bits, xp, row, pad_top, pad_left):
    """Row ``row`` (of batch × padded height) of ``xp``, its padding zeroed: the run of
    its values that come from ``bits`` (uint16 [N, H, W, C]) as flat views, target and
    source (both empty for a row of padding)."""
    batch, in_height, in_width, channels = bits.shape
    padded_height, padded_width = xp.shape[1], xp.shape[2]
    n = row // padded_height
    ih = row % padded_height - pad_top
    target = xp[n, row % padded_height].reshape(-1)
    if ih < 0 or ih >= in_height:
        target[:] = 0
        return target[:0], bits[n, 0].reshape(-1)[:0]
    start, end = pad_left * channels, (pad_left + in_width) * channels
    target[:start] = 0
    target[end:] = 0
    return target[start:end], bits[n, ih].reshape(-1)


@parallel_kernel
def pad_widen_float16_kernel(bits, xp, pad_top, pad_left):
    """xp [N, Hp, Wp, C] (float32) <- bits [N, H, W, C] (uint16 of float16) placed at
    (pad_top, pad_left), zeros around, by the CPU's conversion."""
    for row in prange(xp.shape[0] * xp.shape[1]):
        target, source = _padded_row(bits, xp, row, pad_top, pad_left)
        for i in range(source.shape[0]):
            target[i] = _float16_bits_as_float32(source[i])


@parallel_kernel
def pad_widen_bfloat16_kernel(bits, xp, pad_top, pad_left):
    """As :func:`pad_widen_float16_kernel`, from bfloat16's bits."""
    for row in prange(xp.shape[0] * xp.shape[1]):
        target, source = _padded_row(bits, xp, row, pad_top, pad_left)
        for i in range(source.shape[0]):
            target[i] = _as_float32(np.uint32(source[i]) << 16)


@helper
def _float16_by_bits(bits):
    """The float32 value of the float16 whose bits are the uint16 ``bits``, in arithmetic."""
    return _as_float32(uint32(float16_bits_to_float32_bits(np.uint32(bits))))


def _element_widenings() -> tuple:
    """(bfloat16's, float16's) float32 value of one element's bits, for kernels. Without
    F16C, LLVM's fpext of half is a call Numba's JIT may not link: float16 the bits' way."""
    return (storage_value("bfloat16"),
            storage_value("float16") if hardware_float16() else _float16_by_bits)


def copy_widened(target, source, brain):
    """target[i] = source[i] as float32, in a kernel: a float ``source`` as it is, uint16 bits
    widened (bfloat16's if ``brain``, else float16's). A row copy: the branch stays outside
    the loops, where LLVM vectorises each."""
    raise NotImplementedError("for kernels only")


@overload(copy_widened, inline="always")
def _copy_widened(target, source, brain):
    if isinstance(source.dtype, types.Float):
        def copy(target, source, brain):
            for i in range(source.shape[0]):
                target[i] = source[i]
        return copy
    if source.dtype != types.uint16:
        return None
    bfloat16_value, float16_value = _element_widenings()

    def widen(target, source, brain):
        if brain:
            for i in range(source.shape[0]):
                target[i] = bfloat16_value(source[i])
        else:
            for i in range(source.shape[0]):
                target[i] = float16_value(source[i])
    return widen


def element_value(element, brain):
    """An element's value, in a kernel: any but uint16 as it is, uint16 bits widened to
    float32 (bfloat16's if ``brain``, else float16's). Not inlined by Numba (its inlining
    of the branch trips its own SSA check); LLVM inlines it and vectorises the loop."""
    raise NotImplementedError("for kernels only")


@overload(element_value)
def _element_value(element, brain):
    if element != types.uint16:  # floats, and the integer ops' int64
        return lambda element, brain: element
    bfloat16_value, float16_value = _element_widenings()

    def value(element, brain):
        if brain:
            return bfloat16_value(element)
        return float16_value(element)
    return value


def sums_for(values, length):
    """A fresh array of ``length`` sums for products of ``values``, in a kernel: of
    ``values``' dtype, float32 for a half type's bits (uint16)."""
    raise NotImplementedError("for kernels only")


@overload(sums_for, inline="always")
def _sums_for(values, length):
    dtype = np.float32 if values.dtype == types.uint16 else values.dtype
    return lambda values, length: np.empty(length, dtype)


def copy_rounded(target, source, brain):
    """target[i] = source[i] in ``target``'s type, in a kernel: any but uint16 as it is,
    uint16 bits (of float32 sums) rounded once to nearest even (bfloat16's if ``brain``, else
    float16's), as :func:`from_float32`."""
    raise NotImplementedError("for kernels only")


@overload(copy_rounded, inline="always")
def _copy_rounded(target, source, brain):
    if target.dtype != types.uint16:  # floats, and the integer ops' int64
        def copy(target, source, brain):
            for i in range(source.shape[0]):
                target[i] = source[i]
        return copy
    hardware = hardware_float16()

    def round_(target, source, brain):
        if brain:
            for i in range(source.shape[0]):
                target[i] = np.uint16(float32_bits_to_bfloat16_bits(_float32_bits(source[i])))
        elif hardware:
            for i in range(source.shape[0]):
                target[i] = _float32_as_float16_bits(source[i])
        else:
            for i in range(source.shape[0]):
                target[i] = np.uint16(float32_bits_to_float16_bits(_float32_bits(source[i])))
    return round_


def widened_rows(source, brain):
    """A 2-D ``source`` as float32, in a kernel: a float one itself (no copy), uint16 bits
    widened row by row (:func:`copy_widened`) into a fresh array."""
    raise NotImplementedError("for kernels only")


@overload(widened_rows, inline="always")
def _widened_rows(source, brain):
    if isinstance(source.dtype, types.Float):
        return lambda source, brain: source
    if source.dtype != types.uint16:
        return None

    def widen(source, brain):
        rows = np.empty(source.shape, np.float32)
        for row in range(source.shape[0]):
            copy_widened(rows[row], source[row], brain)
        return rows
    return widen


def _convert(kernel, size: int, *arrays):
    """``kernel`` (one of the conversions above) on ``arrays`` of ``size`` elements."""
    if size <= SERIAL_ELEMENTS:
        kernel.serial()(*arrays, 1)
    else:
        kernel(*arrays, task_count(size))


def available_types() -> dict:
    """The half types this process can make arrays of: float16, and bfloat16 where
    ml_dtypes is installed (never a dependency)."""
    found = {"float16": np.dtype(np.float16)}
    try:
        import ml_dtypes
    except ImportError:
        return found
    return {**found, "bfloat16": np.dtype(ml_dtypes.bfloat16)}


def converts_in_kernels(storage: str) -> bool:
    """Whether kernels may widen and round the half type ``storage`` in their own loops
    (:func:`numbaconv.cpu.simd.storage_operations`, :func:`padded_float32`): bfloat16
    always, float16 where the CPU converts it in instructions."""
    return storage == "bfloat16" or hardware_float16()


def padded_float32(bits: np.ndarray, storage: str, pads: tuple) -> np.ndarray:
    """A fresh float32 NHWC array: the values of the half type ``storage`` whose bits
    ``bits`` (uint16, C-contiguous NHWC) holds, zero-padded by ``pads`` = (top, bottom,
    left, right), each ≥ 0: widened and padded in one pass (where
    :func:`converts_in_kernels`)."""
    pad_top, pad_bottom, pad_left, pad_right = pads
    batch, height, width, channels = bits.shape
    xp = np.empty((batch, height + pad_top + pad_bottom, width + pad_left + pad_right,
                   channels), np.float32)
    kernel = pad_widen_float16_kernel if storage == "float16" else pad_widen_bfloat16_kernel
    (kernel.serial() if xp.size <= SERIAL_ELEMENTS else kernel)(bits, xp, pad_top, pad_left)
    return xp


def widened(bits: np.ndarray, storage: str) -> np.ndarray:
    """A fresh float32 array of ``bits``' shape: the values of the half type ``storage``
    whose bits ``bits`` (uint16, C-contiguous) holds."""
    out = np.empty(bits.shape, np.float32)
    brain = storage == "bfloat16"
    if not brain and hardware_float16():
        _convert(widen_float16_kernel, bits.size, bits.reshape(-1), out.reshape(-1))
    else:
        _convert(widen_kernel, bits.size, bits.reshape(-1), out.reshape(-1).view(np.uint32),
                 brain)
    return out


def to_float32(array: np.ndarray) -> np.ndarray:
    """A fresh C-contiguous float32 array with ``array``'s values (a half type)."""
    source = np.ascontiguousarray(array)
    return widened(source.view(np.uint16), dtype_name(source.dtype))


def from_float32(array: np.ndarray, dtype) -> np.ndarray:
    """``array`` (C-contiguous float32) rounded once to ``dtype`` (a half type)."""
    dtype = np.dtype(dtype)
    out = np.empty(array.shape, dtype)
    values = np.ascontiguousarray(array).reshape(-1)
    _convert(narrow_kernel, values.size, values, out.reshape(-1).view(np.uint16),
             dtype_name(dtype) == "bfloat16")
    return out
