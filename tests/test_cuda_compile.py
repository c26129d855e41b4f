"""The CUDA kernels on the real compiler, without a GPU: NVVM to PTX, ptxas for sm_90.

The simulator (test_cuda.py) checks results; these check that every kernel compiles, keeps
its accumulators in registers (no spills, no local-memory stack) and fits the shared
memory numba.cuda can give a block. They run in a subprocess without
NUMBA_ENABLE_CUDASIM (conftest sets it for this process) and skip, saying how to install
the compiler, where the CUDA 13 compiler wheels are absent (the test extra installs them).
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys
    from numbaconv.cuda import resources
    from numbaconv.cuda.schedule import CudaSchedule, default_schedule
    from numbaconv.geometry import conv_geometry

    reason = resources.unavailable_reason()
    if reason:
        print(json.dumps({"unavailable": reason}))
        sys.exit(0)
    rows = []
    # Defaults on a ResNet-50 3x3 layer at batch 32, plus a sample of the search space.
    g = conv_geometry((32, 28, 28, 128), (3, 3, 128, 128), (1, 1), (1, 1), "SAME")
    cases = [(p, default_schedule(p, g, size), dtype)
             for p in ("forward", "backward_data", "backward_filter")
             for dtype, size in (("float32", 4), ("float64", 8))]
    cases += [("forward", CudaSchedule((64, 128), (4, 8), 16), "float32"),
              ("backward_filter", CudaSchedule((64, 64), (8, 8), 8, split_k=4,
                                               reduction="atomic"), "float32")]
    cases = [case + (True,) for case in cases]
    # NCHW activations are read in place by their own kernel variants.
    cases += [(p, default_schedule(p, g, 4), "float32", False)
              for p in ("forward", "backward_data", "backward_filter")]
    for primitive, schedule, dtype, channels_last in cases:
        found = resources.tile_resources(primitive, schedule, dtype, (9, 0), channels_last)
        rows.append([primitive, str(schedule), dtype, found.to_dict()])
    for name, found in resources.helper_resources("float32", (9, 0)).items():
        rows.append([name, "helper", "float32", found.to_dict()])

    from numba import cuda, float32

    def too_much_shared(out):
        tile = cuda.shared.array(20000, float32)  # 80 KB: over the 48 KB static limit
        tile[cuda.threadIdx.x] = 1
        cuda.syncthreads()
        out[0] = tile[5]

    try:
        resources.measure(too_much_shared, "void(float32[::1])", 128, (9, 0))
        refused = None
    except RuntimeError as error:
        refused = str(error)
    print(json.dumps({"rows": rows, "refused": refused}))
""")


@pytest.fixture(scope="module")
def compiled():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if "unavailable" in result:
        pytest.skip(f"CUDA compiler not installed: {result['unavailable']}")
    return result


def test_every_default_schedule_compiles_for_sm90_without_spills(compiled):
    tiles = [row for row in compiled["rows"] if row[1] != "helper"]
    assert {row[0] for row in tiles} == {"forward", "backward_data", "backward_filter"}
    assert {row[2] for row in tiles} == {"float32", "float64"}
    for primitive, schedule, dtype, found in tiles:
        assert found["spill_stores"] == found["spill_loads"] == 0, (primitive, schedule, dtype)
        assert found["stack_bytes"] == 0, (primitive, schedule, dtype, found)


def test_every_kernel_fits_shared_memory_and_an_sm(compiled):
    for primitive, schedule, dtype, found in compiled["rows"]:
        assert found["shared_bytes"] <= 48 * 1024, (primitive, schedule)
        assert found["blocks_per_sm"] >= 1, (primitive, schedule, found)
        assert 0 < found["registers"] <= 255


def test_helper_kernels_compile(compiled):
    names = {row[0] for row in compiled["rows"] if row[1] == "helper"}
    assert names == {"split_sum", "bias_partial_sums", "zero_fill", "cast_from_float16",
                     "cast_to_float16"}


def test_a_kernel_with_too_much_shared_memory_is_refused_clearly(compiled):
    assert compiled["refused"] is not None
    assert "too much shared data" in compiled["refused"]
    assert "sm_90" in compiled["refused"]


def test_occupancy_arithmetic():
    from numbaconv.cuda.resources import occupancy

    # 256 threads at 128 registers: 8 warps × 4096 registers = 32768 per block -> 2 blocks.
    assert occupancy(128, 4096, 256, (9, 0)) == (2, 16)
    # 64 threads at 32 registers: limited by the 32-block ceiling (64 warps / 2 = 32).
    assert occupancy(32, 0, 64, (9, 0)) == (32, 64)
    # 40 KB of shared memory per block: 228 KB / 41 KB -> 5 blocks.
    assert occupancy(32, 40 * 1024, 32, (9, 0))[0] == 5
