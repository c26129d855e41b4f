import os
import sys
import tempfile
import zlib

import numpy as np
import pytest

# CUDA kernels run on Numba's simulator unless a GPU run is asked for with
# NUMBA_ENABLE_CUDASIM=0; it runs one Python thread per CUDA thread, and a short switch
# interval makes its barriers ~10x cheaper.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
sys.setswitchinterval(1e-4)

# Tests never read or write the user's tuned configs.
os.environ["NUMBACONV_CONFIG_DIR"] = tempfile.mkdtemp(prefix="numbaconv-test-configs-")

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


@pytest.fixture(autouse=True)
def no_shipped_configs(tmp_path_factory, monkeypatch):
    """Tests see only the configs they write, not the project's shipped ones."""
    from numbaconv import configs

    monkeypatch.setattr(configs, "SHIPPED_DIR", tmp_path_factory.mktemp("shipped"))
    configs.forget()
