"""How much memory a call may use: the machine's memory, the workspace cap, and the check
that a result fits before any kernel runs (a result that cannot fit would otherwise end in
an out-of-memory kill midway, not an exception)."""

from __future__ import annotations

import functools
import math
import os

import numpy as np

WORKSPACE_ENV = "NUMBACONV_WORKSPACE_MB"
#: The default workspace cap: this fraction of the memory, at most DEFAULT_WORKSPACE_MB.
WORKSPACE_FRACTION = 1 / 8
DEFAULT_WORKSPACE_MB = 512


@functools.lru_cache(maxsize=1)
def total_bytes() -> int:
    """The memory this process can have: physical memory, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max",  # cgroup v2
                       "/sys/fs/cgroup/memory/memory.limit_in_bytes"):  # cgroup v1
        try:
            with open(limit_file) as handle:
                text = handle.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def workspace_cap() -> int:
    """Bytes of workspace (padded copies, im2col matrices, partial sums) one call may
    allocate: ``$NUMBACONV_WORKSPACE_MB``, else 1/8 of the memory up to 512 MiB."""
    if os.environ.get(WORKSPACE_ENV):
        return int(float(os.environ[WORKSPACE_ENV]) * 2**20)
    return int(min(DEFAULT_WORKSPACE_MB * 2**20, total_bytes() * WORKSPACE_FRACTION))


#: The cap in force (:func:`workspace_cap` at import): a schedule that needs more is not legal.
WORKSPACE_BYTES_CAP = workspace_cap()


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.1f} {unit}"
        count /= 1024


def check_result_fits(op: str, shape: tuple, dtype: np.dtype):
    """Raise ``MemoryError`` naming ``op`` and the shape when the result alone is larger
    than the memory."""
    dtype = np.dtype(dtype)
    needed = math.prod(shape) * dtype.itemsize  # exact: Python ints do not overflow
    if needed > total_bytes():
        raise MemoryError(f"{op}: the result of shape {tuple(shape)} ({dtype.name}) "
                          f"needs {_size(needed)}, more than this machine's {_size(total_bytes())}"
                          f" of memory")
