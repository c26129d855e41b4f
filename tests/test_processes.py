"""Worker processes: after the parent has run every op, children made by each
multiprocessing start method run every op and get the parent's numbers, under each Numba
threading layer that loads here. Under GNU OpenMP a forked child would be terminated on
its first parallel region; it runs the serial builds of the kernels instead, silently."""

import pytest
from scenarios import EVERY_OP, run_under_layer

WORKERS = EVERY_OP + """
import multiprocessing, numba
from numbaconv import threads

def child(index):
    return every_op(*cases[index]), threads.serial_only()

if __name__ == "__main__":
    expected = [every_op(*case) for case in cases]
    with multiprocessing.get_context("{method}").Pool(2) as pool:
        answers = pool.map(child, range(len(cases)), chunksize=1)
    mismatches = sum(not np.array_equal(got, want)
                     for (results, _), wanted in zip(answers, expected)
                     for got, want in zip(results, wanted))
    print("layer", numba.threading_layer(), "mismatches", mismatches,
          "serial children", sum(serial for _, serial in answers))
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("layer", ["omp", "workqueue", "tbb"])
def test_worker_processes_get_the_parents_results(layer, method):
    result = run_under_layer(layer, WORKERS.replace("{method}", method), timeout=240)
    assert f"layer {layer} mismatches 0" in result.stdout, result.stdout
    assert "Terminating" not in result.stderr and "numbaconv" not in result.stderr
    # Only the forked children of a GNU OpenMP parent fall back to the serial kernels.
    serial = 4 if (layer, method) == ("omp", "fork") else 0
    assert f"serial children {serial}" in result.stdout, result.stdout
