"""What a CUDA kernel costs on the real compiler, without a GPU: PTX from NVVM
(``cuda.compile_ptx``), then ``ptxas -v`` for registers, spills and shared memory, and
the occupancy those allow.

Needs numba-cuda with the CUDA 13 compiler wheels (``pip install "numba-cuda[cu13]"``) and
a ``ptxas`` that reads their PTX (``pip install "nvidia-cuda-nvcc==13.5.*"``); both come
with numbaconv's ``test`` extra. Runs in a process *without* ``NUMBA_ENABLE_CUDASIM``
(under the simulator ``cuda.compile_ptx`` does not exist).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass

from . import backward_data, backward_filter, bias, forward, launch
from .runtime import simulated
from .schedule import CudaSchedule
from .tiles import GEOMETRY_FIELDS, split_sum_kernel

INSTALL_HINT = 'pip install "numba-cuda[cu13]" "nvidia-cuda-nvcc==13.5.*"'
_LOCK = threading.Lock()  # compile_ptx swaps a module attribute: one compilation at a time
TILE_KERNELS = {"forward": forward.kernel, "backward_data": backward_data.kernel,
                "backward_filter": backward_filter.kernel}


@dataclass(frozen=True)
class Limits:
    """Per-SM limits of a compute capability (CUDA C Programming Guide, table 21)."""

    registers: int = 65536
    max_warps: int = 64
    max_blocks: int = 32
    shared_bytes: int = 233472       # usable shared memory per SM
    reserved_shared_bytes: int = 1024  # per block, taken by the driver


LIMITS = {(8, 0): Limits(shared_bytes=167936), (8, 6): Limits(max_warps=48, max_blocks=16,
                                                               shared_bytes=102400),
          (9, 0): Limits()}


@dataclass(frozen=True)
class Resources:
    """One compiled kernel: what ptxas reports and the occupancy it allows."""

    registers: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int
    shared_bytes: int
    threads: int
    blocks_per_sm: int
    warps_per_sm: int
    compile_seconds: float

    @property
    def spills(self) -> int:
        return self.spill_stores + self.spill_loads

    def occupancy(self, cc=(9, 0)) -> float:
        return self.warps_per_sm / LIMITS[tuple(cc)].max_warps

    def to_dict(self) -> dict:
        data = asdict(self)
        data["compile_seconds"] = round(self.compile_seconds, 3)
        return data


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """Why compile-only reports cannot be made here, or None (checked once: it compiles a
    trivial kernel)."""
    if simulated():
        return "the CUDA simulator is enabled (NUMBA_ENABLE_CUDASIM=1): run without it"
    try:
        from numba import cuda

        cuda.compile_ptx(lambda a: None, "void(float32[:])", cc=(9, 0))
    except Exception as error:
        return f"NVVM is not usable ({type(error).__name__}: {str(error)[:200]}): {INSTALL_HINT}"
    if ptxas() is None:
        return f"no ptxas found: {INSTALL_HINT}"
    return None


@functools.lru_cache(maxsize=1)
def ptxas() -> str | None:
    """The ptxas of the ``nvidia-cuda-nvcc`` wheel (it matches NVVM's PTX version; an older
    system ptxas rejects it), else one on PATH."""
    try:
        import nvidia
    except ImportError:
        nvidia = None
    for root in getattr(nvidia, "__path__", []):
        found = sorted(glob.glob(os.path.join(root, "*", "bin", "ptxas")))
        if found:
            return found[-1]
    return shutil.which("ptxas")


def _array(dtype: str, ndim: int):
    from numba import types

    return types.Array(getattr(types, dtype), ndim, "C")


def tile_signature(primitive: str, dtype: str) -> tuple:
    """Argument types of a tile kernel on C-contiguous arrays."""
    from numba import types

    out_ndim = 3 if primitive == "backward_filter" else 4
    return (_array(dtype, 4), _array(dtype, 4), _array(dtype, out_ndim),
            types.UniTuple(types.int64, len(GEOMETRY_FIELDS)), types.int64, types.int64,
            types.int64, types.int64)


class _TargetDevice:
    """Stands in for the current device while compiling without a GPU."""

    def __init__(self, cc):
        self.compute_capability = tuple(cc)


@contextlib.contextmanager
def _compiling_for(cc):
    """numba-cuda compiles device functions for ``get_current_device()``'s compute
    capability, which needs a driver even under ``compile_ptx(cc=...)``: name the target
    instead while compiling (numba-cuda 0.30, ``dispatcher.compile_device``)."""
    from numba.cuda import dispatcher

    original = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: _TargetDevice(cc)
    try:
        yield
    finally:
        dispatcher.get_current_device = original


def compile_ptx(function, signature, cc) -> tuple[str, float]:
    from numba import cuda

    start = time.perf_counter()
    with _LOCK, _compiling_for(cc):
        ptx, _ = cuda.compile_ptx(function, signature, cc=tuple(cc))
    return ptx, time.perf_counter() - start


_REGISTERS = re.compile(r"Used (\d+) registers")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_SMEM = re.compile(r"(\d+) bytes smem")


def assemble(ptx: str, cc) -> tuple[dict, float]:
    """``ptxas -v`` on ``ptx`` for ``sm_<cc>``: registers, stack, spills, shared memory."""
    path = ptxas()
    if path is None:
        raise RuntimeError(f"no ptxas found: {INSTALL_HINT}")
    arch = f"sm_{cc[0]}{cc[1]}"
    with tempfile.TemporaryDirectory() as directory:
        source = os.path.join(directory, "kernel.ptx")
        with open(source, "w") as handle:
            handle.write(ptx)
        start = time.perf_counter()
        done = subprocess.run([path, f"-arch={arch}", "-v", source, "-o", os.devnull],
                              capture_output=True, text=True, timeout=300)
        seconds = time.perf_counter() - start
    report = done.stdout + done.stderr
    if done.returncode != 0:
        raise RuntimeError(f"ptxas failed for {arch}: {report.strip()[:500]}")
    used = _REGISTERS.search(report)
    frame = _FRAME.search(report)
    smem = _SMEM.search(report[used.start():] if used else report)
    return ({"registers": int(used.group(1)) if used else 0,
             "stack_bytes": int(frame.group(1)) if frame else 0,
             "spill_stores": int(frame.group(2)) if frame else 0,
             "spill_loads": int(frame.group(3)) if frame else 0,
             "shared_bytes": int(smem.group(1)) if smem else 0}, seconds)


def occupancy(registers: int, shared_bytes: int, threads: int, cc) -> tuple[int, int]:
    """(blocks, warps) resident per SM, as the CUDA occupancy calculator counts them."""
    limits = LIMITS[tuple(cc)]
    warps = -(-threads // 32)
    registers_per_warp = -(-max(registers, 1) * 32 // 256) * 256
    by_registers = (limits.registers // registers_per_warp) // warps
    by_warps = limits.max_warps // warps
    by_shared = limits.shared_bytes // (shared_bytes + limits.reserved_shared_bytes)
    blocks = max(0, min(limits.max_blocks, by_registers, by_warps, by_shared))
    return blocks, blocks * warps


def measure(function, signature, threads: int, cc) -> Resources:
    ptx, nvvm_seconds = compile_ptx(function, signature, cc)
    found, ptxas_seconds = assemble(ptx, cc)
    blocks, warps = occupancy(found["registers"], found["shared_bytes"], threads, cc)
    return Resources(**found, threads=threads, blocks_per_sm=blocks, warps_per_sm=warps,
                     compile_seconds=nvvm_seconds + ptxas_seconds)


@functools.lru_cache(maxsize=None)
def tile_resources(primitive: str, schedule: CudaSchedule, dtype: str, cc=(9, 0),
                   channels_last: bool = True) -> Resources:
    """Resources of one primitive's tile kernel under ``schedule``."""
    function = TILE_KERNELS[primitive](schedule, dtype, channels_last, python=True)
    return measure(function, tile_signature(primitive, dtype), schedule.threads, cc)


def helper_resources(dtype: str, cc=(9, 0)) -> dict[str, Resources]:
    """The small kernels: split-K sum, bias partial sums, zero fill, float16 casts."""
    from numba import types

    return {
        "zero_fill": measure(launch.fill_zero_kernel(python=True), (_array(dtype, 1),),
                             launch.SUM_THREADS, cc),
        "split_sum": measure(split_sum_kernel(python=True),
                             (_array(dtype, 2), _array(dtype, 1)), launch.SUM_THREADS, cc),
        "bias_partial_sums": measure(bias.kernel(dtype, python=True),
                                     (_array(dtype, 3), _array(dtype, 2), types.int64),
                                     bias.THREADS, cc),
        "cast_from_float16": measure(launch.cast_kernel(python=True),
                                     (_array("float16", 1), _array(dtype, 1)),
                                     launch.SUM_THREADS, cc),
        "cast_to_float16": measure(launch.cast_kernel(python=True),
                                   (_array(dtype, 1), _array("float16", 1)),
                                   launch.SUM_THREADS, cc),
    }


def rejection(resources: Resources, cc=(9, 0)) -> str | None:
    """Why a compiled schedule must not be tuned, or None: spills, a local-memory stack
    frame (accumulators the compiler could not keep in registers), or no block fitting."""
    if resources.spills:
        return (f"spills ({resources.spill_stores} B stores, {resources.spill_loads} B loads "
                f"at {resources.registers} registers)")
    if resources.stack_bytes:
        return (f"{resources.stack_bytes} B of local-memory stack (accumulators not kept in "
                f"registers)")
    if resources.blocks_per_sm == 0:
        return (f"no block fits on an SM ({resources.registers} registers, "
                f"{resources.shared_bytes} B shared, {resources.threads} threads)")
    return None
