"""The CPU's caches as a network's pass leaves them for a layer: holding other layers'
data, not the layer's own from the call before.

Why: a schedule whose intermediates stay cached from one call to the next (Winograd's
transformed filter and tiles) wins by more on repeated calls than within a pass, and the
tuner picked one that lost there (``docs/measurements.md``, 2026-12-06, sixth session). Its
finalists are timed after a sweep (:func:`sweeper`), which ordered them as the passes did.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numba import prange

from .jit import parallel_kernel

#: Where sysfs says how large CPU 0's caches are (Linux).
CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")
#: The last-level cache assumed where its size cannot be read.
UNKNOWN_CACHE_BYTES = 32 * 2**20
#: A sweep writes this many times the last-level cache: its replacement is not exactly
#: least-recently-used, so once its size leaves some of the layer's lines in place.
SWEEP_FACTOR = 2
_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30}


def size_bytes(text: str) -> int | None:
    """sysfs's cache size (``32768K``, ``1M``, ``512``) in bytes, or None if unreadable."""
    text = text.strip().upper()
    number, unit = (text[:-1], _UNITS.get(text[-1])) if text[-1:].isalpha() else (text, 1)
    return int(number) * unit if unit and number.isdigit() else None


def last_level_cache_bytes(cache_dir: Path = CACHE_DIR) -> int | None:
    """The size of CPU 0's highest-level data or unified cache, or None where sysfs does
    not say."""
    found = {}
    for index in cache_dir.glob("index*"):
        try:
            if (index / "type").read_text().strip() == "Instruction":
                continue
            level = int((index / "level").read_text())
            size = size_bytes((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if size:
            found[level] = size
    return found[max(found)] if found else None


@functools.lru_cache(maxsize=1)
def last_level_cache_size() -> int:
    """The last-level cache's size (:func:`last_level_cache_bytes`), or
    :data:`UNKNOWN_CACHE_BYTES` where sysfs does not say; read once."""
    return last_level_cache_bytes() or UNKNOWN_CACHE_BYTES


@parallel_kernel
def _sweep(buffer):
    for i in prange(buffer.shape[0]):
        buffer[i] += 1.0


def sweeper(cache_bytes: int | None = None) -> Callable[[], None]:
    """A function that writes :data:`SWEEP_FACTOR` × the last-level cache
    (``cache_bytes``, by default as sysfs says) from every thread: its dirty lines replace
    whatever a timed call had left in the caches."""
    size = SWEEP_FACTOR * (cache_bytes or last_level_cache_size())
    buffer = np.zeros(size // 4, np.float32)
    return lambda: _sweep(buffer)
