"""Scenarios run in a fresh Python process under a chosen Numba threading layer: the layer
is process-wide and a crash or hang must fail a test, not the suite."""

import os
import subprocess
import sys
import tempfile
import textwrap
from functools import lru_cache

import pytest

#: Defines ``cases`` (mixing direct, register-tiled and im2col schedules, tuned and
#: untuned shapes) and ``every_op(x, w, dy, stride, padding)``.
EVERY_OP = textwrap.dedent("""
    import numpy as np, numbaconv as nc

    rng = np.random.default_rng(0)
    shapes = [((2, 9, 10, 8), (3, 3, 8, 16), 1, "SAME"), ((1, 7, 6, 3), (2, 3, 3, 5), 2, "VALID"),
              ((2, 8, 8, 16), (1, 1, 16, 8), 1, "VALID"), ((2, 12, 12, 16), (3, 3, 16, 32), 1, "SAME")]
    cases = []
    for x_shape, w_shape, stride, padding in shapes:
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        dy = rng.standard_normal(nc.conv2d(x, w, stride, padding).shape).astype(np.float32)
        cases.append((x, w, dy, stride, padding))

    def every_op(x, w, dy, stride, padding):
        return [nc.conv2d(x, w, stride, padding),
                nc.conv2d_backprop_input(x.shape, w, dy, stride, padding),
                nc.conv2d_transpose(dy, w, x.shape, stride, padding),
                nc.conv2d_backprop_filter(x, w.shape, dy, stride, padding),
                nc.bias_add_grad(dy)]
""")


@lru_cache(maxsize=None)
def layer_loads(layer: str) -> bool:
    probe = subprocess.run(
        [sys.executable, "-c", "import numba, numpy as np\n"
         "@numba.njit(parallel=True)\ndef f(a):\n    return a.sum()\n"
         "f(np.ones(10)); print(numba.threading_layer())"],
        env=dict(os.environ, NUMBA_THREADING_LAYER=layer), capture_output=True, text=True,
        timeout=120)
    return probe.returncode == 0 and probe.stdout.strip() == layer


def run_under_layer(layer: str, code: str, timeout: float) -> subprocess.CompletedProcess:
    """``code`` in a fresh process under ``layer`` (the test is skipped where the layer
    does not load); asserts a clean exit."""
    if not layer_loads(layer):
        pytest.skip(f"the {layer} threading layer does not load on this machine")
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "scenario.py")  # a file: spawned workers re-import it
        with open(script, "w") as handle:
            handle.write(code)
        result = subprocess.run([sys.executable, script],
                                env=dict(os.environ, NUMBA_THREADING_LAYER=layer),
                                capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    return result
