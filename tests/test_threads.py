"""Several Python threads calling every op at once, under each Numba threading layer that
loads here (each in its own process: the layer is process-wide)."""

import pytest
from scenarios import EVERY_OP, run_under_layer

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
