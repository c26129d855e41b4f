import fcntl
import os
import sys
import tempfile
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

# CUDA kernels run on Numba's simulator unless a GPU run is asked for with
# NUMBA_ENABLE_CUDASIM=0; it runs one Python thread per CUDA thread, and a short switch
# interval makes its barriers ~10x cheaper.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
sys.setswitchinterval(1e-4)


def _make_simulated_shared_arrays_atomic():
    """The simulator gives a block's threads one ``cuda.shared.array`` per source line by
    check-then-set (``FakeCUDAShared.array``): two threads that switch between the check
    and the set get different arrays, and the kernel reads uninitialised memory (seen once
    in CI: a 2e32 in a simulated conv2d). The same lookup, under a lock."""
    import threading
    import traceback

    from numba.core import types
    from numba.np import numpy_support
    from numba.cuda.simulator import kernelapi

    lock = threading.Lock()
    dynamic = kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:
            return dynamic(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]
        with lock:
            found = self._allocations.get(caller)
            if found is None:
                found = self._allocations[caller] = np.empty(shape, dtype)
        return found

    kernelapi.FakeCUDAShared.array = array


if os.environ["NUMBA_ENABLE_CUDASIM"] == "1":
    _make_simulated_shared_arrays_atomic()

# Tests never read or write the user's tuned configs.
os.environ["NUMBACONV_CONFIG_DIR"] = tempfile.mkdtemp(prefix="numbaconv-test-configs-")
# Calls build their kernels themselves (tests/test_cold_start.py turns background builds on).
os.environ["NUMBACONV_BACKGROUND_BUILDS"] = "0"

#: Worst error allowed, relative to the largest magnitude of the float64 reference.
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.fixture
def rng(request):
    """Fresh random data per test, reproducible from the test's name."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


def random(rng, shape, dtype=np.float64):
    """Standard-normal data: never all zeros, so unwritten outputs show."""
    return rng.standard_normal(shape).astype(dtype)


def assert_matches(actual, expected, dtype):
    """``actual`` has ``expected``'s shape, ``dtype``, and its values within tolerance."""
    assert actual.shape == expected.shape
    assert actual.dtype == np.dtype(dtype)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1.0)
    error = float(np.max(np.abs(actual.astype(np.float64) - expected), initial=0.0))
    assert error <= TOLERANCE[dtype] * scale, f"max error {error:.3g} (scale {scale:.3g})"


@pytest.fixture
def small_space(tmp_path):
    """A search space file of one schedule, the direct loops, beside the default rule's
    (which the tuner times first anyway): for tests of the tuner's command line, saving
    and interruption, whose subject is not the search."""
    path = tmp_path / "small_space.yaml"
    path.write_text("cpu:\n  direct:\n    loop_order: [pixel_tap_channel]\n")
    return path


@contextmanager
def _locked(path: Path, mode: int):
    with open(path, "a") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Under pytest-xdist, a test marked ``quiet`` (it times calls against the machine's
    load) runs with no other worker's test beside it: every other test holds a shared
    lock, a quiet one the exclusive lock, each over its whole run (setup of module
    fixtures included). The turnstile lets no test start while a quiet one waits, so that
    back-to-back tests on another worker cannot starve it."""
    basetemp = item.config.option.basetemp
    if "PYTEST_XDIST_WORKER" not in os.environ or not basetemp:  # nothing runs beside it
        yield
        return
    folder = Path(basetemp).parent  # the run's, shared by its workers
    turnstile, tests = folder / "quiet-turnstile.lock", folder / "tests-running.lock"
    if item.get_closest_marker("quiet"):
        with _locked(turnstile, fcntl.LOCK_EX), _locked(tests, fcntl.LOCK_EX):
            yield
        return
    with _locked(turnstile, fcntl.LOCK_SH):
        pass
    with _locked(tests, fcntl.LOCK_SH):
        yield


@pytest.fixture(autouse=True)
def no_shipped_configs(tmp_path_factory, monkeypatch):
    """Tests see only the configs they write, not the project's shipped ones."""
    from numbaconv import configs

    monkeypatch.setattr(configs, "SHIPPED_DIR", tmp_path_factory.mktemp("shipped"))
    configs.forget()
