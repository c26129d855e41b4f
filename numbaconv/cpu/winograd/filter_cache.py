"""Transformed filters kept from call to call, for a filter passed again unchanged.

Why: inference calls each layer with the same filter, call after call, and every Winograd
call transformed it again: α²/9 times the filter's bytes written, and its products then
read lines just written, which cost more than the transform itself on 14×14 and 7×7
images (``docs/measurements.md``, 2026-12-07).

How it is keyed safely: a thread keeps, per filter array it was passed (the array object,
held by a weak reference: its entries go when it does), per transform (output tile,
column tile, rotation) and per shape and dtype of the array (both can be set in place), a
copy of the array's bits and the transform made from them. A call reuses the transform
only where every bit of the filter equals the copy's (:func:`refresh`: a parallel
comparison reading both); an array changed in place (an optimizer's step) keeps its
identity, address and shape, so nothing less decides.

Two uses: :func:`transformed` (a Winograd schedule: its transform made on every call where
the filter changed, into the kept buffers) and :func:`kept` (Winograd over another
family's schedule: the transform only for a filter that came again unchanged, else None).

Bounded: an array gets an entry from its second call on (one passed once, such as a
converted copy, costs nothing), and a thread holds at most :func:`cache_bytes` of them
(``$NUMBACONV_FILTER_CACHE_MB``, 0: none); beyond that :func:`transformed` works in
scratch and :func:`kept` returns None. :func:`forget` makes every entry count as changed
on its next call (the tuner's and the benchmark's training-like timing).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numba import prange

from ...memory import total_bytes
from ..jit import parallel_kernel
from ..scratch import scratch
from ..tasks import TARGET_TASKS

CACHE_ENV = "NUMBACONV_FILTER_CACHE_MB"
#: The default bound per thread: this fraction of the memory, at most DEFAULT_CACHE_MB.
CACHE_FRACTION = 1 / 16
DEFAULT_CACHE_MB = 256


def cache_bytes() -> int:
    """Bytes of transformed filters and their copies one thread may keep."""
    if os.environ.get(CACHE_ENV):
        return int(float(os.environ[CACHE_ENV]) * 2**20)
    return int(min(DEFAULT_CACHE_MB * 2**20, total_bytes() * CACHE_FRACTION))


@parallel_kernel
def refresh_kernel(source, kept, tasks, differs):
    """differs[t] = the OR of source[i] XOR kept[i] over task t's share of the flat arrays
    (0 where that share is equal bit for bit); a share that differs is copied into ``kept``.
    No early exit, and views from 0 (an offset index keeps Numba's wrap-around in the
    loop): the comparison vectorises."""
    size = source.size
    share = (size + tasks - 1) // tasks
    for task in prange(tasks):
        first = task * share
        stop = min(size, first + share)
        mine, theirs = source[first:stop], kept[first:stop]
        found = source[0] ^ source[0]
        for i in range(mine.size):
            found |= mine[i] ^ theirs[i]
        differs[task] = found
        if found:
            for i in range(mine.size):
                theirs[i] = mine[i]


def refresh(source: np.ndarray, kept: np.ndarray) -> bool:
    """Make ``kept`` equal ``source`` bit for bit (flat unsigned-integer arrays of one
    size); whether it was not already."""
    tasks = max(1, min(TARGET_TASKS, source.size))
    differs = np.empty(tasks, source.dtype)
    refresh_kernel(source, kept, tasks, differs)
    return bool(differs.any())


#: :func:`kept`'s mark of a filter that changed between two calls.
GIVEN_UP = "given up"


@dataclass
class _Entry:
    """One filter's transform and the bits it was made from (for :func:`kept`, the bits
    first, the transform once they came again unchanged)."""

    bits: np.ndarray
    transformed: np.ndarray | None
    current: bool = True  # False after forget(): transform again whatever the bits

    @property
    def nbytes(self) -> int:
        return self.bits.nbytes + (0 if self.transformed is None else self.transformed.nbytes)


@dataclass
class _ThreadCache:
    """A thread's entries: filter array id -> {transform: entry, None once seen, or
    GIVEN_UP}."""

    filters: dict = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def drop(self, array_id: int):
        """The array is gone: its entries with it (called by its weak reference, from
        whichever thread collects it; one dictionary operation, atomic)."""
        self.filters.pop(array_id, None)

    def variants(self, w: np.ndarray) -> dict:
        """w's entries by transform (watched from its first call on)."""
        found = self.filters.get(id(w))
        if found is None:
            found = self.filters[id(w)] = {}
            weakref.finalize(w, self.drop, id(w)).atexit = False
        return found

    def held_bytes(self) -> int:
        """Bytes of kept copies and transforms: summed when asked (on an entry's first
        keeping), not counted along, so that no other thread's drop() races an update."""
        return sum(entry.nbytes for variants in list(self.filters.values())
                   for entry in list(variants.values()) if isinstance(entry, _Entry))

    def fits(self, size: int) -> bool:
        return self.held_bytes() + size <= cache_bytes()


_local = threading.local()


def _cache() -> _ThreadCache:
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = _ThreadCache()
    return cache


def _bits(w: np.ndarray) -> np.ndarray:
    return w.reshape(-1).view(np.dtype(f"u{w.dtype.itemsize}"))


def _key(w: np.ndarray, transform_key: tuple) -> tuple:
    """An entry's key among w's: the transform, and w's shape and dtype, which an array's
    ``shape`` or ``dtype`` set in place changes with its bits and identity kept."""
    return transform_key, w.shape, w.dtype.str


def transformed(w: np.ndarray, transform_key: tuple, size: int,
                fill: Callable[[np.ndarray], None]) -> np.ndarray:
    """The flat transform of ``w`` (C-contiguous) that ``fill(out)`` writes into ``out``
    (``size`` elements of w's dtype; ``transform_key`` names which transform): this
    thread's kept one where w's bits are those it was made from, else made again (from w's
    second call on into buffers kept for it, if the bound allows; before, into scratch)."""
    cache = _cache()
    variants = cache.variants(w)
    key = _key(w, transform_key)
    entry = variants.get(key)
    bits = _bits(w)
    if entry is None:
        if key not in variants or not cache.fits((size + w.size) * w.dtype.itemsize):
            variants[key] = None  # seen: its next call keeps one
            return _into_scratch(size, w.dtype, fill)
        entry = variants[key] = _Entry(bits.copy(), None)
    elif not refresh(bits, entry.bits) and entry.current:  # refreshed whatever current is
        cache.hits += 1
        return entry.transformed
    return _made(cache, entry, size, w.dtype, fill)


def kept(w: np.ndarray, transform_key: tuple, size: int,
         fill: Callable[[np.ndarray], None]) -> np.ndarray | None:
    """:func:`transformed`'s transform only where w came unchanged since its last call (a
    filter in inference), else None. A filter's first call only watches it (an array passed
    once, such as a converted copy, costs nothing more), its second keeps a copy of its
    bits, a call that finds them unchanged transforms it (then reuses that), and the first
    that finds them changed (a filter in training) gives it up for good, so that its later
    calls cost nothing more."""
    cache = _cache()
    variants = cache.variants(w)
    key = ("kept", _key(w, transform_key))  # apart from transformed()'s entries
    entry = variants.get(key)
    if entry is GIVEN_UP:
        return None
    if key not in variants:
        variants[key] = None
        return None
    bits = _bits(w)
    if entry is None:
        if cache.fits(w.nbytes):
            variants[key] = _Entry(bits.copy(), None)
        else:
            variants[key] = GIVEN_UP
        return None
    if refresh(bits, entry.bits) or not entry.current:  # changed (or forget())
        variants[key] = GIVEN_UP
        return None
    if entry.transformed is not None:
        cache.hits += 1
        return entry.transformed
    if not cache.fits(size * w.dtype.itemsize):  # no room: no more comparisons either
        variants[key] = GIVEN_UP
        return None
    return _made(cache, entry, size, w.dtype, fill)


def _made(cache: _ThreadCache, entry: _Entry, size: int, dtype,
          fill: Callable[[np.ndarray], None]) -> np.ndarray:
    """Fill the entry's transform (made on first use)."""
    if entry.transformed is None:
        entry.transformed = np.empty(size, dtype)
    cache.misses += 1
    fill(entry.transformed)
    entry.current = True
    return entry.transformed


def _into_scratch(size: int, dtype, fill: Callable[[np.ndarray], None]) -> np.ndarray:
    # A reused buffer: 512 × 512 channels make 38 MB at m = 4, whose pages a fresh array
    # would fault in again on every call.
    out = scratch("winograd filter", size, dtype)
    fill(out)
    return out


def forget():
    """Every entry of this thread transforms again on its next call, as if its filter had
    changed (its buffers stay)."""
    for variants in _cache().filters.values():
        for entry in variants.values():
            if isinstance(entry, _Entry):
                entry.current = False


def statistics() -> dict:
    """This thread's cache: calls served from it (hits), transforms made into it (misses),
    filters watched and bytes held."""
    cache = _cache()
    return dict(hits=cache.hits, misses=cache.misses, filters=len(cache.filters),
                held_bytes=cache.held_bytes())
