"""The compile options every CPU kernel uses, and the parallel/serial pair behind each driver."""

from __future__ import annotations

import contextlib
import types

from numba import njit

from .. import threads
from . import disk_cache

#: ``contract`` lets LLVM fuse multiply + add into FMA. No ``nnan``/``ninf`` (NaN and Inf
#: must propagate as in TensorFlow) and no ``reassoc`` (it changes the summation order,
#: which schedules promise not to do).
FASTMATH = frozenset({"contract"})

_parallel_jit = njit(parallel=True, fastmath=set(FASTMATH), nogil=True)
_serial_jit = njit(fastmath=set(FASTMATH), nogil=True)
_lock = threads.ProcessLock()


def _renamed_copy(func):
    """``func`` under another qualified name: Numba's cache index does not tell a parallel
    build from a serial one, so the serial twin needs its own cache files."""
    copy = types.FunctionType(func.__code__, func.__globals__, func.__name__, func.__defaults__,
                              func.__closure__)
    copy.__qualname__ = f"{func.__qualname__}__serial"
    copy.__doc__ = func.__doc__
    return copy


class ParallelKernel:
    """A ``parallel=True`` kernel and its serial twin, made on first need, for processes
    that cannot run parallel code (:func:`numbaconv.threads.serial_only`: a child forked
    from a GNU OpenMP process). Both variants compute the same numbers: no kernel's
    summation order depends on its threads.

    ``signature``: compile each variant for exactly these types (a call with others is a
    bug, not a new variant); ``compiling``: a context manager around each compilation.
    """

    def __init__(self, parallel, signature=None, compiling=contextlib.nullcontext):
        self.parallel = parallel
        self.__doc__ = parallel.__doc__
        self._signature = signature
        self._compiling = compiling
        self._variants: dict[bool, object] = {}

    def variant(self):
        """The dispatcher this process runs."""
        return self._variant(threads.serial_only())

    def serial(self):
        """The serial twin, for work too small to pay for waking the threads."""
        return self._variant(True)

    def _variant(self, serial: bool):
        dispatcher = self._variants.get(serial)
        if dispatcher is None:
            with _lock:
                dispatcher = self._variants.get(serial) or self._make(serial)
                self._variants[serial] = dispatcher
        return dispatcher

    def _make(self, serial: bool):
        dispatcher = self.parallel
        if serial:
            dispatcher = disk_cache.enable(_serial_jit(_renamed_copy(self.parallel.py_func)))
        if self._signature is not None:
            with self._compiling():
                dispatcher.compile(self._signature)
            dispatcher.disable_compile()
        return dispatcher

    def __call__(self, *args):
        return self.variant()(*args)

    def __getattr__(self, name):  # signatures, py_func, inspect_*: the parallel build's
        return getattr(self.parallel, name)


def parallel_kernel(func) -> ParallelKernel:
    """Decorator for the drivers: one compiled variant per dtype, cached on disk."""
    return ParallelKernel(disk_cache.enable(_parallel_jit(func)))


def helper(func):
    """Decorator for serial helpers, inlined into the drivers."""
    return disk_cache.enable(njit(fastmath=set(FASTMATH), inline="always")(func))


@helper
def valid_range(offset, stride, in_size, out_size):
    """The output positions ``o`` in ``[0, out_size)`` whose input position
    ``o * stride + offset`` lies in ``[0, in_size)``, as ``(first, stop)``."""
    first = 0 if offset >= 0 else (-offset + stride - 1) // stride
    stop = (in_size - 1 - offset) // stride + 1
    if stop > out_size:
        stop = out_size
    if stop < first:
        stop = first
    return first, stop


@helper
def reader_of(position, pad, tap, dilation, stride, out_size):
    """The output position whose filter tap ``tap`` reads input ``position``
    (``o · stride + tap · dilation − pad = position``), or −1 when there is none."""
    shifted = position + pad - tap * dilation
    if shifted < 0 or shifted % stride != 0 or shifted // stride >= out_size:
        return -1
    return shifted // stride


@helper
def axpy(acc, a, row):
    """acc[j] += a · row[j]."""
    for j in range(acc.shape[0]):
        acc[j] += a * row[j]


@helper
def axpy4(acc, a0, row0, a1, row1, a2, row2, a3, row3):
    """Four axpys in one pass: acc is loaded and stored once instead of four times, and the
    sum is still taken left to right, so the result is bit-identical to four ``axpy``."""
    for j in range(acc.shape[0]):
        acc[j] = (((acc[j] + a0 * row0[j]) + a1 * row1[j]) + a2 * row2[j]) + a3 * row3[j]
