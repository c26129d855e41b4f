"""``python -m numbaconv.info`` prints what a bug report needs."""

import subprocess
import sys

import numba


def test_info_reports_versions_layer_device_configs_and_cuda():
    result = subprocess.run([sys.executable, "-m", "numbaconv.info"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"numba {numba.__version__}" in out
    assert "threading layer: " in out and "thread-safe: " in out and "fork-safe: " in out
    assert "CPU device key: " in out
    assert "config files (first match wins):" in out
    assert "generated kernels: " in out and "workspace cap per call" in out
    assert "kept filter transforms per thread" in out and "NUMBACONV_FILTER_CACHE_MB" in out
    assert "CUDA: " in out
