"""A read-only install: the package, the home folder and every cache folder unwritable.
The ops still run and give correct results, and the missing caches are logged once.

Folders are made unwritable in a way that binds root too (CI may run as root, which
ignores permission bits): a regular file stands where each folder would be created.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_matches

import numbaconv
import reference as ref

CASES = [((2, 12, 12, 16), (3, 3, 16, 32), 1, "SAME"),  # register-tiled kernels
         ((1, 7, 6, 3), (2, 3, 3, 5), 2, "VALID")]      # direct loops

SCRIPT = """
import sys, numpy as np, numbaconv as nc
assert nc.__file__.startswith({site!r}), nc.__file__
cases = {cases!r}
rng = np.random.default_rng(0)
results = {{}}
for i, (x_shape, w_shape, stride, padding) in enumerate(cases):
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    dy = rng.standard_normal(nc.conv2d(x, w, stride, padding).shape).astype(np.float32)
    results.update({{f"x{{i}}": x, f"w{{i}}": w, f"dy{{i}}": dy,
                    f"forward{{i}}": nc.conv2d(x, w, stride, padding),
                    f"data{{i}}": nc.conv2d_backprop_input(x.shape, w, dy, stride, padding),
                    f"filter{{i}}": nc.conv2d_backprop_filter(x, w.shape, dy, stride, padding),
                    f"bias{{i}}": nc.bias_add_grad(dy)}})
np.savez(sys.argv[1], **results)
"""


def read_only_copy(tmp_path: Path) -> Path:
    """numbaconv copied into a site folder where no ``__pycache__`` can be made."""
    site = tmp_path / "site"
    shutil.copytree(Path(numbaconv.__file__).parent, site / "numbaconv",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for folder in [site, *site.rglob("*")]:
        if folder.is_dir():
            (folder / "__pycache__").write_text("")  # a file: no folder of that name
    for path in site.rglob("*"):
        path.chmod(0o444 if path.is_file() else 0o555)
    return site


def run_installed(tmp_path: Path, cache_dir: Path | None, cases) -> subprocess.CompletedProcess:
    site = read_only_copy(tmp_path)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    env = {key: value for key, value in os.environ.items()
           if key not in ("NUMBACONV_CACHE_DIR", "NUMBA_CACHE_DIR", "PYTHONPATH")}
    env.update(HOME=str(blocker / "home"), XDG_CACHE_HOME=str(blocker / "cache"),
               PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1")
    if cache_dir is not None:
        env["NUMBACONV_CACHE_DIR"] = str(cache_dir)
    script = tmp_path / "scenario.py"
    script.write_text(SCRIPT.format(site=str(site), cases=cases))
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "results.npz")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_results_correct(path: Path, cases):
    got = np.load(path)
    for i, (_, _, stride, padding) in enumerate(cases):
        x, w, dy = (got[f"{name}{i}"].astype(np.float64) for name in ("x", "w", "dy"))
        pads = ref.pads_for(padding, x.shape[1:3], w.shape[:2], (stride, stride), (1, 1))
        args = ((stride, stride), (1, 1), pads)
        assert_matches(got[f"forward{i}"], ref.conv2d(x, w, *args), np.float32)
        assert_matches(got[f"data{i}"], ref.conv2d_backprop_input(x.shape, w, dy, *args),
                       np.float32)
        assert_matches(got[f"filter{i}"], ref.conv2d_backprop_filter(x, w.shape, dy, *args),
                       np.float32)
        assert_matches(got[f"bias{i}"], ref.bias_add_grad(dy, -1), np.float32)


def run_installed_once(tmp_path: Path, cache_dir: Path | None, cases) -> subprocess.CompletedProcess:
    try:
        return run_installed(tmp_path, cache_dir, cases)
    finally:
        for path in tmp_path.rglob("*"):  # writable again, so that pytest can remove it
            path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture(scope="module")
def uncached(tmp_path_factory):
    """Every op run with no writable cache folder at all: (results file, stderr)."""
    folder = tmp_path_factory.mktemp("uncached")
    result = run_installed_once(folder, None, CASES)
    return folder / "results.npz", result.stderr


def test_without_any_writable_cache_the_ops_are_correct(uncached):
    assert_results_correct(uncached[0], CASES)


def test_without_any_writable_cache_each_missing_cache_is_logged_once(uncached):
    log = uncached[1]
    assert log.count("no writable folder for Numba's kernel cache") == 1, log
    assert log.count("generated kernels go to") == 1, log


def test_numbaconv_cache_dir_holds_every_cache_of_a_read_only_install(tmp_path):
    cache_dir = tmp_path / "cache"
    result = run_installed_once(tmp_path, cache_dir, CASES[:1])
    assert "numbaconv:" not in result.stderr, result.stderr
    assert_results_correct(tmp_path / "results.npz", CASES[:1])
    assert list((cache_dir / "numba").rglob("*.nbi"))  # the loop-nest kernels compiled code
    assert list((cache_dir / "kernels").glob("numbaconv_forward_*.py"))
