"""Finding CUDA, wrapping foreign device arrays, and the stream a call runs on.

numba-cuda is optional: nothing here imports ``numba.cuda`` until a call needs it, so a
CPU-only install never pays for it. Under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``) the same kernels run as Python threads on the CPU; its device
arrays have no ``__cuda_array_interface__`` and are recognised by type instead.
"""

from __future__ import annotations

import functools
import re

import numpy as np

INSTALL_HINT = 'pip install "numbaconv[cuda]" (numba-cuda)'


def cuda():
    """``numba.cuda``, or a RuntimeError saying how to get it."""
    try:
        from numba import cuda as module
    except ImportError as error:  # numba without its CUDA target
        raise RuntimeError(f"the CUDA backend needs numba-cuda: {INSTALL_HINT} ({error})") from error
    return module


def simulated() -> bool:
    import numba.core.config

    return bool(numba.core.config.ENABLE_CUDASIM)


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """Why CUDA cannot run here, or None when it can (a GPU or the simulator)."""
    try:
        module = cuda()
    except RuntimeError as error:
        return str(error)
    try:
        if module.is_available():
            return None
    except Exception as error:  # a broken driver install must not crash the CPU path
        return f"numba.cuda failed to initialise ({type(error).__name__}: {error})"
    return ("numba.cuda.is_available() is False: no CUDA GPU or driver was found "
            "(set NUMBA_ENABLE_CUDASIM=1 to run the kernels on Numba's CUDA simulator)")


def require():
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(f"device='cuda' was requested but CUDA is not available: {reason}")


def is_device_array(value) -> bool:
    """True for an object living on the GPU: anything exposing
    ``__cuda_array_interface__``, or a simulator device array."""
    if isinstance(value, np.ndarray):
        return False
    if hasattr(value, "__cuda_array_interface__"):
        return True
    return type(value).__name__ == "FakeCUDAArray" and simulated()


def as_device_array(value):
    """A numba device array viewing ``value`` without a copy (PyTorch tensors that
    require grad are detached first, as PyTorch refuses to export them)."""
    if type(value).__name__ == "FakeCUDAArray":
        return value
    if getattr(value, "requires_grad", False) and hasattr(value, "detach"):
        value = value.detach()
    module = cuda()
    if module.is_cuda_array(value) and type(value).__module__.startswith("numba"):
        return value
    # Ordering with the producer is kept by launching on its stream (see launch_stream),
    # so numba need not synchronise that stream here.
    return module.as_cuda_array(value, sync=False)


def to_device(array, stream):
    """``array`` on the GPU: device arrays as they are, NumPy arrays copied in."""
    if is_device_array(array):
        return array
    return cuda().to_device(np.ascontiguousarray(array), stream=stream)


def to_host(device_array, stream) -> np.ndarray:
    host = device_array.copy_to_host(stream=stream)
    stream.synchronize()
    return host


def stream_handle(value) -> int | None:
    """The CUDA stream a foreign array's producer works on: PyTorch's current stream for
    a torch tensor (its interface exports none), else the interface's ``stream`` entry
    (version 3, e.g. CuPy); None for the default stream."""
    module_name = type(value).__module__
    if module_name.startswith("torch"):
        import torch

        return int(torch.cuda.current_stream(value.device).cuda_stream) or None
    interface = getattr(value, "__cuda_array_interface__", None)
    if isinstance(interface, dict):
        return interface.get("stream") or None
    return None


def launch_stream(values):
    """The stream to launch on so that the kernels run after whatever produced
    ``values`` (the first foreign stream found), or numba's default stream."""
    module = cuda()
    for value in values:
        handle = stream_handle(value)
        if handle is None:
            continue
        if simulated():
            break
        if handle == 1:
            return module.legacy_default_stream()
        if handle == 2:
            return module.per_thread_default_stream()
        return module.external_stream(handle)
    return module.default_stream()


@functools.lru_cache(maxsize=1)
def device_info() -> dict:
    """What identifies this GPU for tuning: name and compute capability."""
    module = cuda()
    if simulated():
        return {"key": "cudasim", "gpu": "Numba CUDA simulator", "compute_capability": [5, 0],
                "multiprocessors": 1}
    device = module.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
    major, minor = device.compute_capability
    key = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{name}-sm{major}{minor}")
    return {"key": key, "gpu": name, "compute_capability": [major, minor],
            "multiprocessors": int(device.MULTIPROCESSOR_COUNT)}
