"""``python -m numbaconv.info``: what a bug report needs — versions, the threading layer
and its safety, the CPU device key, config files and cache directories, CUDA."""

from __future__ import annotations

import platform
import sys

import numba
import numpy as np

import numbaconv

from . import configs, memory, paths, threads
from .cpu import disk_cache
from .cpu.direct import forward
from .cpu.rule import calibrated_half_panels, calibrated_winograd_backward_filter
from .cpu.winograd import filter_cache
from .machine import this_machine


def report() -> str:
    # Run one tiny parallel kernel so that Numba picks (and reports) its layer.
    numbaconv.bias_add_grad(np.ones((2, 2), np.float32))
    layer = threads.threading_layer()
    device = this_machine()
    lines = [
        f"numbaconv {numbaconv.__version__}, numba {numba.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()} ({sys.executable})",
        f"threading layer: {layer} (thread-safe: {threads.is_thread_safe(layer)}, "
        f"fork-safe: {threads.is_fork_safe(layer)}; forked children of this process run "
        f"{'parallel' if threads.is_fork_safe(layer) else 'serial'} kernels); "
        f"{numba.get_num_threads()} threads; GNU OpenMP waits: "
        f"{threads.openmp_wait(configs.openmp_spin_count())}",
        f"CPU device key: {device.key} ({device.cpu}, LLVM CPU {device.llvm_cpu}, "
        f"SIMD {', '.join(device.simd) or 'none'}, {device.cores} cores)",
        f"machine model: {device.vector_bits}-bit vectors, {device.vector_registers} vector "
        f"registers, {device.fma_units} FMA/cycle × {device.fma_latency} cycles latency (table) "
        f"-> {device.accumulators_needed} accumulators",
        f"calibration: {calibration_status()}",
        "config files (first match wins):",
    ]
    for path in configs.config_files():
        state = f"{configs.entry_count(path)} entries" if path.exists() else "absent"
        lines.append(f"  {path}: {state}")
    lines.append(f"memory: {memory.total_bytes() / 2**30:.1f} GiB; workspace cap per call "
                 f"{memory.WORKSPACE_BYTES_CAP / 2**20:.0f} MiB (${memory.WORKSPACE_ENV}); "
                 f"Winograd's kept filter transforms per thread "
                 f"{filter_cache.cache_bytes() / 2**20:.0f} MiB (${filter_cache.CACHE_ENV})")
    lines.append(f"cache root (${paths.CACHE_ENV}): {paths.cache_root()}")
    lines.append(f"generated kernels: {disk_cache.kernel_dir()}")
    compiled = disk_cache.numba_cache_dir(forward.forward_direct.parallel)
    lines.append(f"Numba's compiled-kernel cache: {compiled or 'none (no writable folder)'}")
    lines.append(f"CUDA: {cuda_status()}")
    return "\n".join(lines)


def calibration_status() -> str:
    found = configs.calibration()
    if not found:
        return "none (python -m numbaconv.tune --calibrate)"
    fma = found.get("fma", {})
    tiles = found.get("tiles", {}).get("float32", {})
    status = (f"FMA peak {fma.get('peak_gflops')} GFLOP/s float32 "
              f"({fma.get('vector_bits')}-bit, {fma.get('threads')} threads), "
              f"{fma.get('chains_needed')} chains reach it; tiles {tiles}")
    panels = {storage: "panels" if calibrated_half_panels(found, storage) else "rows"
              for storage in found.get("half_panels") or {}}
    if panels:
        status += f"; half types' 1x1 backward-filter {panels}"
    winograd = found.get("winograd_backward_filter") or {}
    if winograd:
        taken = "taken" if calibrated_winograd_backward_filter(found) else "not taken"
        status += (f"; Winograd backward-filter {winograd.get('winograd_over_tiles')} of the "
                   f"tiles' time ({taken})")
    return f"{status} ({found.get('date')})"


def cuda_status() -> str:
    from .cuda import resources, runtime

    reason = runtime.unavailable_reason()
    if reason:
        status = f"unavailable ({reason})"
    else:
        device = runtime.device_info()
        status = f"available: {device['gpu']} (device key {device['key']})"
        status += "; config files: " + ", ".join(
            f"{path} ({configs.entry_count(path, 'cuda')} entries)" if path.exists()
            else f"{path} (absent)" for path in configs.config_files("cuda"))
    try:
        compiler = resources.unavailable_reason() or f"ready (ptxas {resources.ptxas()})"
    except Exception as error:  # a broken toolkit must not break the diagnostic
        compiler = f"unavailable ({type(error).__name__}: {error})"
    return f"{status}\nCUDA compile-only checks: {compiler}"

if __name__ == "__main__":
    print(report())
