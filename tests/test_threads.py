"""Several Python threads calling every op at once, under each Numba threading layer that
loads here (each in its own process: the layer is process-wide)."""

import os
import subprocess
import sys

import pytest
from scenarios import EVERY_OP, run_under_layer

from numbaconv import configs, threads
from numbaconv.cpu import calibration

THREADS = EVERY_OP + """
import threading, time, numba

serial = [every_op(*case) for case in cases]
failures = []

def worker(seed):
    local = np.random.default_rng(seed)
    deadline = time.monotonic() + {seconds}
    while time.monotonic() < deadline:
        index = int(local.integers(len(cases)))
        for got, want in zip(every_op(*cases[index]), serial[index]):
            if not np.array_equal(got, want):
                failures.append(index)

threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("layer", numba.threading_layer(), "failures", len(failures))
"""


def run_threads(layer, seconds):
    result = run_under_layer(layer, THREADS.replace("{seconds}", str(seconds)),
                             timeout=600 + 10 * seconds)
    assert f"layer {layer} failures 0" in result.stdout


@pytest.mark.parametrize("layer", ["workqueue", "omp", "tbb"])
def test_eight_threads_get_the_serial_results(layer):
    run_threads(layer, seconds=3)


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["workqueue", "omp"])
def test_thread_soak_one_minute(layer):
    run_threads(layer, seconds=60)


# --- GNU OpenMP's waiting ------------------------------------------------------------------

WAIT_PROBE = """
import os, sys
before = dict(os.environ)
import numbaconv
print("loaded", "numba.np.ufunc.omppool" in sys.modules)
print("environment unchanged", dict(os.environ) == before)
"""


def _import_numbaconv(**settings):
    environment = {name: value for name, value in os.environ.items()
                   if name not in threads.WAIT_SETTINGS}
    environment.update(settings)
    done = subprocess.run([sys.executable, "-c", WAIT_PROBE], capture_output=True, text=True,
                          env=environment, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_importing_loads_gnu_openmp_with_the_short_spin_and_leaves_the_environment_as_it_was():
    out = _import_numbaconv()
    assert "loaded True" in out
    assert "environment unchanged True" in out


@pytest.mark.parametrize("setting", [{"GOMP_SPINCOUNT": "123"}, {"OMP_WAIT_POLICY": "active"}])
def test_a_users_own_openmp_wait_setting_is_left_alone(setting):
    out = _import_numbaconv(**setting)
    assert "loaded False" in out  # numbaconv did not load OpenMP to apply its own setting
    assert "environment unchanged True" in out


def test_the_spin_setting_is_applied_only_where_the_user_chose_none(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert threads.shorten_openmp_spin() is False
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    assert threads.shorten_openmp_spin() is True
    assert "GOMP_SPINCOUNT" not in os.environ


#: Records GOMP_SPINCOUNT as Numba's OpenMP pool (and so GNU OpenMP) is imported.
SPIN_SPY = """
import os, sys
seen = []
class Spy:
    def find_spec(self, name, path, target=None):
        if name == "numba.np.ufunc.omppool":
            seen.append(os.environ.get("GOMP_SPINCOUNT"))
sys.meta_path.insert(0, Spy())
import numbaconv
print(seen, "GOMP_SPINCOUNT" in os.environ)
"""


def test_a_calibrated_spin_count_is_the_one_numbaconv_loads_openmp_with(tmp_path):
    key = configs.device_info("cpu")["key"]
    configs.save_calibration(tmp_path / f"{key}.yaml", {"openmp": {"spin_count": "12345"}})
    env = {name: value for name, value in os.environ.items()
           if name not in threads.WAIT_SETTINGS}
    env[configs.CONFIG_ENV] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", SPIN_SPY], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    # Set while OpenMP loaded, taken out of the environment again after.
    assert out.stdout.split("\n")[-2] == "['12345'] False"


@pytest.mark.parametrize("after_pause, chosen", [
    ({"10000": 270.0, "300000": 17.0}, "300000"),   # the Zen 4 KVM guest of 2026-12-06
    ({"10000": 17.0, "300000": 15.0}, "10000"),     # no clear gain: the shorter spin
    ({"10000": 1800.0, "300000": 7700.0}, "10000")])
def test_the_calibration_keeps_the_short_spin_unless_another_is_clearly_faster(after_pause,
                                                                                 chosen):
    assert calibration.choose_spin_count(after_pause) == chosen
