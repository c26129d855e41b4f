"""Calling the ops from several Python threads and from forked worker processes, whatever
Numba threading layer is in force.

The threading layer is process-wide and belongs to the user (``NUMBA_THREADING_LAYER``);
numbaconv never changes it, it adapts:

- Threads: Numba's ``workqueue`` layer aborts the whole process ("Concurrent access has
  been detected") when two Python threads run parallel code at once, so under it every
  kernel launch takes one process-wide lock. ``tbb`` and ``omp`` are safe to enter from
  several threads, and launches run concurrently. Numba only says which layer it picked
  after the first parallel launch; until then the lock is taken, so the first launches are
  safe whichever layer it turns out to be.
- Forks: a child forked from a process whose GNU OpenMP pool has started is terminated on
  its first parallel region ("fork() called from a process already using GNU OpenMP").
  Such a child runs serial builds of the same kernels (:func:`serial_only`): the same
  numbers, one core. ``workqueue`` and ``tbb`` survive a fork and keep running in parallel.
"""

from __future__ import annotations

import os
import threading

import numba

#: Layers that may be entered from several Python threads at once.
THREAD_SAFE_LAYERS = ("tbb", "omp")


class ProcessLock:
    """A re-entrant lock that a forked child gets anew: a thread of the parent may have held
    it at the fork, and that thread does not exist in the child to release it."""

    def __init__(self):
        self._lock = threading.RLock()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self):
        self._lock = threading.RLock()

    def __enter__(self):
        self._lock.acquire()
        return self

    def __exit__(self, *exc):
        self._lock.release()


_launch_lock = ProcessLock()
_layer: str | None = None
_serial_only = False


#: GNU OpenMP's busy-wait rounds before a waiting thread sleeps, where the user set none and
#: the device's calibration measured none: long enough that a network's calls back to back
#: find the threads awake, short enough that a call after a pause does not wait out a whole
#: default spin (on some hosts; on others the default is better: hence the calibration).
SPIN_COUNT = "10000"
#: The settings by which a user chooses GNU OpenMP's waiting; any of them set: left alone.
WAIT_SETTINGS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def shorten_openmp_spin(calibrated: str | None = None) -> bool:
    """Load Numba's OpenMP pool (and so GNU OpenMP, which reads its settings once, as it
    loads) with ``GOMP_SPINCOUNT`` = the device's ``calibrated`` count
    (:func:`numbaconv.configs.openmp_spin_count`), else :data:`SPIN_COUNT`, then take the
    variable out of the environment again. Does nothing where the user set a
    :data:`WAIT_SETTINGS` variable or Numba's OpenMP pool is not installed; no effect
    where GNU OpenMP had loaded already. Starts no thread and selects no threading layer.
    True when the pool was loaded with the setting."""
    if any(name in os.environ for name in WAIT_SETTINGS):
        return False
    os.environ["GOMP_SPINCOUNT"] = calibrated or SPIN_COUNT
    try:
        from numba.np.ufunc import omppool  # noqa: F401  (loading it is the point)
    except ImportError:
        return False
    finally:
        del os.environ["GOMP_SPINCOUNT"]
    return True


def openmp_wait(calibrated: str | None = None) -> str:
    """How GNU OpenMP's threads wait in this process (``calibrated``: the device's count),
    for ``python -m numbaconv.info``."""
    chosen = [f"{name}={os.environ[name]}" for name in WAIT_SETTINGS if name in os.environ]
    if chosen:
        return f"{', '.join(chosen)} (yours)"
    source = "calibrated" if calibrated else "numbaconv's default"
    return (f"GOMP_SPINCOUNT={calibrated or SPIN_COUNT} ({source}, unless GNU OpenMP had "
            "loaded before numbaconv)")


def threading_layer() -> str | None:
    """The layer Numba uses, or None before the first parallel launch of the process."""
    global _layer
    if _layer is None:
        try:
            _layer = numba.threading_layer()
        except ValueError:  # "Threading layer is not initialized."
            return None
    return _layer


def is_thread_safe(layer: str | None) -> bool:
    return layer in THREAD_SAFE_LAYERS


def is_fork_safe(layer: str | None) -> bool:
    """Whether a child forked after ``layer`` started can run parallel code (Intel's and
    LLVM's OpenMP can, GNU's cannot)."""
    if layer != "omp":
        return True
    from numba.np.ufunc import omppool

    return omppool.openmp_vendor != "GNU"


def serial_only() -> bool:
    """True in a forked child of a process whose fork-unsafe layer had started."""
    return _serial_only


def _after_fork_in_child():
    global _serial_only
    if not is_fork_safe(threading_layer()):
        _serial_only = True


os.register_at_fork(after_in_child=_after_fork_in_child)


def launched(kernel, *arguments):
    """``kernel(*arguments)``, the guard of every kernel launch: serialised only where the
    layer requires it (a plain call, not a context manager: the per-call path of a small
    layer counts microseconds)."""
    if is_thread_safe(threading_layer()):
        return kernel(*arguments)
    with _launch_lock:
        return kernel(*arguments)
