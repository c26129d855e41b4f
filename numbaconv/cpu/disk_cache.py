"""Where compiled CPU kernels and generated kernel sources are kept on disk.

Numba's own rule for ``cache=True`` is: ``$NUMBA_CACHE_DIR`` if the user set it, else the
``__pycache__`` folder next to the source, else a user-wide cache folder, else fail with a
``RuntimeError`` when the function is *decorated*, i.e. when numbaconv is imported. In a
read-only install with a read-only home that would make ``import numbaconv`` fail, so
numbaconv's kernels use Numba's rule with two changes: the user-wide folder is under
numbaconv's cache root (:func:`numbaconv.paths.cache_root`, which ``$NUMBACONV_CACHE_DIR``
moves), and when no folder is writable the kernels run uncached (compiled anew in each
process), logged once.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from numba.core import caching

from ..paths import CACHE_ENV, cache_root
from ..threads import ProcessLock

log = logging.getLogger("numbaconv")

_lock = ProcessLock()
_kernel_dir: Path | None = None
_told_uncached = False


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
        return True
    except OSError:
        return False


def kernel_dir() -> Path:
    """Where generated sources go; a private temporary folder if the cache is not writable
    (they must be real files: Numba compiles from a module's source file)."""
    global _kernel_dir
    with _lock:
        if _kernel_dir is None:
            wanted = cache_root() / "kernels"
            if _writable(wanted):
                _kernel_dir = wanted
            else:
                _kernel_dir = Path(tempfile.mkdtemp(prefix="numbaconv-kernels-"))
                log.warning("numbaconv: cache directory %s is not writable; generated kernels "
                            "go to %s and are compiled anew in each process", wanted, _kernel_dir)
        return _kernel_dir


# Numba ≥ 0.61 names its locators without the leading underscore.
_UserWideLocator = getattr(caching, "UserWideCacheLocator", None) or caching._UserWideCacheLocator


class _NumbaconvCacheLocator(_UserWideLocator):
    """Numba's user-wide locator, rooted in ``cache_root()/numba``."""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        self._cache_path = str(cache_root() / "numba" / self.get_suitable_cache_subpath(py_file))


class _CacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = [_NumbaconvCacheLocator if locator is _UserWideLocator else locator
                        for locator in caching.CompileResultCacheImpl._locator_classes]


class _FunctionCache(caching.FunctionCache):
    _impl_class = _CacheImpl


def numba_cache_dir(dispatcher) -> str | None:
    """The folder ``dispatcher``'s compiled code is cached in, or None when uncached."""
    cache = getattr(dispatcher, "_cache", None)
    return cache.cache_path if isinstance(cache, caching.FunctionCache) else None


def enable(dispatcher):
    """Give an uncached ``njit`` dispatcher an on-disk cache where a folder is writable."""
    global _told_uncached
    try:
        dispatcher._cache = _FunctionCache(dispatcher.py_func)
    except RuntimeError as error:  # "no locator available": nothing writable
        with _lock:
            if not _told_uncached:
                _told_uncached = True
                log.warning("numbaconv: no writable folder for Numba's kernel cache (%s; set %s "
                            "to one): kernels are compiled anew in each process", error, CACHE_ENV)
    return dispatcher
