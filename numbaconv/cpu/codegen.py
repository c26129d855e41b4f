"""Generated register-tile kernels: source rendered per tile shape and dtype, written to a
real file, imported and compiled once.

Why generated: the accumulators of a register tile must be scalar variables (Numba keeps
even tiny local arrays on the heap), one per (pixel, channel), so each tile shape is its
own source. Why a file: Numba cannot disk-cache code made with ``exec``. Each file is named
after a hash of its source, so variants never collide in Numba's cache (keyed by file and
function) and a change of the generator gives new files, never stale hits.

The kernels are compiled with LLVM's SLP vectoriser on and the loop vectoriser off (set
around their compilation only): the SLP vectoriser packs the scalar accumulators into
256-bit registers, the loop vectoriser would turn the reduction into gathers. Measured on
a 4×16 tile: 105 GFLOP/s against 7. Any pixel count vectorises over the channels (3×32
and 5×16 float32 tiles: 12 and 10 accumulator registers, no spill in the hot loop); tiles
past 16 registers (6×16: 12 accumulators, 2 filter vectors, 6 broadcasts) spill.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

from numba import config, types

from ..threads import ProcessLock
from ._jit import ParallelKernel
from .disk_cache import kernel_dir

_lock = ProcessLock()
_kernels: dict[str, object] = {}

NUMBA_DTYPES = {"float32": types.float32, "float64": types.float64}


@contextlib.contextmanager
def slp_vectoriser():
    """SLP vectoriser on, loop vectoriser off, for the compilations inside (process-wide
    settings, read by Numba at compile time: held under the lock, restored after)."""
    with _lock:
        saved = config.SLP_VECTORIZE, config.LOOP_VECTORIZE
        config.SLP_VECTORIZE, config.LOOP_VECTORIZE = True, False
        try:
            yield
        finally:
            config.SLP_VECTORIZE, config.LOOP_VECTORIZE = saved


def _write_atomically(path: Path, text: str):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def flat_array(dtype: str, readonly: bool):
    return types.Array(NUMBA_DTYPES[dtype], 1, "C", readonly=readonly)


def load_kernel(family: str, render: Callable[[], str], signature: Callable[[], object]):
    """The compiled ``kernel`` function of the source ``render()`` gives for ``family`` (a
    name that fixes the tile shape and dtype), memoised per process by family: a call
    costs one dict lookup, not a render (measured: rendering and hashing a 4×16 source on
    every call took 0.3-0.5 ms, more than a small layer's convolution)."""
    kernel = _kernels.get(family)
    if kernel is not None:
        return kernel
    with _lock:
        if family in _kernels:
            return _kernels[family]
        source = render()
        digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        module_name = f"numbaconv_{family}_{digest}"
        path = kernel_dir() / f"{module_name}.py"
        if not path.exists() or path.read_text() != source:
            _write_atomically(path, source)
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        kernel = ParallelKernel(module.kernel, signature(), compiling=slp_vectoriser)
        kernel.variant()  # compile now, under the lock
        _kernels[family] = kernel
        return kernel


def compiled_variants() -> int:
    """How many generated kernels this process has compiled or loaded."""
    return len(_kernels)


class Source:
    """A tiny line-oriented writer for kernel templates."""

    def __init__(self):
        self.lines: list[str] = []
        self.depth = 0

    def __call__(self, *lines: str):
        for line in lines:
            self.lines.append("    " * self.depth + line if line else "")
        return self

    @contextlib.contextmanager
    def block(self, header: str):
        self(header)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
