"""Scratch buffers: a run's intermediate arrays (never its result), reused from call to call.

Why: a fresh allocation of a few MB per call comes from the operating system again each
time glibc has handed the last one back (a page fault per 4 KB page, the pages zeroed):
Winograd's transform buffers ran 2.5× slower that way on 56×56×64 at batch 1
(``docs/measurements.md``). Each thread keeps one buffer per role and dtype, grown to the
largest size asked for, so concurrent calls from other threads never share one and the
memory held stays bounded by the largest call's.
"""

from __future__ import annotations

import threading

import numpy as np

_local = threading.local()


def scratch(role: str, size: int, dtype) -> np.ndarray:
    """A flat array of ``size`` elements of ``dtype``, its values undefined: this thread's
    buffer for ``role``. The caller must be done with it before its call returns, and
    ask for the same role again only once done with what it had (a chunk's sums added to
    their total, say): both are the same memory."""
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    key = (role, np.dtype(dtype))
    found = buffers.get(key)
    if found is None or found.size < size:
        found = buffers[key] = np.empty(size, key[1])
    return found[:size]
