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


def test_info_shows_the_calibrations_choices(monkeypatch):
    """The half types' 1×1 backward-filter and Winograd's backward-filter gate, as the rule
    reads them."""
    from numbaconv import configs, info
    found = {"fma": {"peak_gflops": 500.0, "vector_bits": 512, "threads": 2,
                     "chains_needed": 8},
             "half_panels": {"float16": {"panels_pay": True},
                             "bfloat16": {"panels_pay": False}},
             "winograd_backward_filter": {"winograd_over_tiles": 0.55, "pays": True}}
    monkeypatch.setattr(configs, "calibration", lambda device="cpu": found)
    status = info.calibration_status()
    assert "{'float16': 'panels', 'bfloat16': 'rows'}" in status
    assert "Winograd backward-filter 0.55 of the tiles' time (taken)" in status
    found["winograd_backward_filter"] = {"winograd_over_tiles": 0.9, "pays": False}
    assert "0.9 of the tiles' time (not taken)" in info.calibration_status()
