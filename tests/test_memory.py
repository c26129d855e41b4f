"""Bounded memory: workspaces respect the cap, and a result that cannot fit in memory is
refused with a MemoryError naming the shape before any kernel runs."""

import re

import numpy as np
import pytest
from conftest import assert_matches, random

import numbaconv as nc
import reference as ref
from numbaconv import api, memory
from numbaconv.cpu import families, heuristic
from numbaconv.cpu.families import CPU
from numbaconv.geometry import conv_geometry
from numbaconv.primitives import NAMES as PRIMITIVES

#: Layers whose default schedules use workspace: a strided 1×1 (filter panels per task, a
#: packed filter), a register-tiled 3×3 (padded copies), a large backward-filter reduction
#: (padded copies).
GEOMETRIES = {
    "strided_1x1": ((2, 16, 16, 32), (1, 1, 32, 64), 2, "VALID"),
    "tiled_3x3": ((2, 14, 14, 32), (3, 3, 32, 32), 1, "SAME"),
    "long_reduction": ((4, 40, 40, 16), (3, 3, 16, 16), 1, "SAME"),
}
#: The (layer, primitive) pairs whose default schedule needs workspace: not the strided
#: 1×1's backward-filter, whose tiled kernel reads the input in place into one filter.
WORKSPACE_CASES = [pytest.param(case, primitive, id=f"{name}-{primitive}")
                   for name, case in GEOMETRIES.items() for primitive in PRIMITIVES
                   if (name, primitive) != ("strided_1x1", "backward_filter")]
CAP = 4 * 2**10


@pytest.fixture
def tiny_cap(monkeypatch):
    monkeypatch.setattr(memory, "WORKSPACE_BYTES_CAP", CAP)
    monkeypatch.setattr(heuristic, "_choices", {})
    monkeypatch.setattr(api, "_remembered", {})


@pytest.mark.parametrize("case, primitive", WORKSPACE_CASES)
def test_default_schedules_use_workspace(case, primitive):
    """The cases below would use workspace without a cap (else they test nothing)."""
    x_shape, w_shape, stride, padding = case
    g = conv_geometry(x_shape, w_shape, (stride, stride), (1, 1), padding)
    choice = heuristic.choose(primitive, g, "float32", 4)
    assert CPU.workspace_bytes(primitive, g, choice.schedule, 4) > CAP


@pytest.mark.parametrize("case, primitive", WORKSPACE_CASES)
def test_over_the_cap_a_call_takes_an_algorithm_that_needs_less(tiny_cap, case, primitive):
    """Only the direct loops are left: no workspace beyond one copy of the filter (for
    backward-data, whose loop wants its channel axes swapped)."""
    x_shape, w_shape, stride, padding = case
    g = conv_geometry(x_shape, w_shape, (stride, stride), (1, 1), padding)
    chosen = heuristic.choose(primitive, g, "float32", 4).schedule
    filter_bytes = int(np.prod(w_shape)) * 4
    assert chosen.algorithm == "direct"
    assert CPU.workspace_bytes(primitive, g, chosen, 4) <= max(CAP, filter_bytes
                                                                    if primitive == "backward_data"
                                                                    else 0)


@pytest.mark.parametrize("case", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_over_the_cap_results_are_still_correct(tiny_cap, rng, case):
    x_shape, w_shape, stride, padding = case
    x, w = random(rng, x_shape, np.float32), random(rng, w_shape, np.float32)
    dy = random(rng, nc.conv2d(x, w, stride, padding).shape, np.float32)
    pads = ref.pads_for(padding, x_shape[1:3], w_shape[:2], (stride, stride), (1, 1))
    args = ((stride, stride), (1, 1), pads)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    assert_matches(nc.conv2d(x, w, stride, padding), ref.conv2d(x64, w64, *args), np.float32)
    assert_matches(nc.conv2d_backprop_input(x_shape, w, dy, stride, padding),
                   ref.conv2d_backprop_input(x_shape, w64, dy64, *args), np.float32)
    assert_matches(nc.conv2d_backprop_filter(x, w_shape, dy, stride, padding),
                   ref.conv2d_backprop_filter(x64, w_shape, dy64, *args), np.float32)


def test_default_cap_is_a_fraction_of_memory(monkeypatch):
    monkeypatch.delenv(memory.WORKSPACE_ENV, raising=False)
    monkeypatch.setattr(memory, "total_bytes", lambda: 2 * 2**30)
    assert memory.workspace_cap() == 256 * 2**20
    monkeypatch.setattr(memory, "total_bytes", lambda: 64 * 2**30)
    assert memory.workspace_cap() == 512 * 2**20
    monkeypatch.setenv(memory.WORKSPACE_ENV, "64")
    assert memory.workspace_cap() == 64 * 2**20


ONE = np.ones((1, 1, 1, 1000), np.float32)
#: Results of a few terabytes from inputs of a few kilobytes.
HUGE = {
    "conv2d": (lambda: nc.conv2d(np.ones((1, 1000, 1000, 1), np.float32),
                                 np.ones((1, 1, 1, 10**6), np.float32), 1, "VALID"),
               (1, 1000, 1000, 10**6)),
    "conv2d_backprop_input": (lambda: nc.conv2d_backprop_input(
        (1, 10**6, 10**6, 1), np.ones((1, 1, 1, 1000), np.float32),
        np.ones((1, 1, 1, 1000), np.float32), 10**6, "VALID"), (1, 10**6, 10**6, 1)),
    "conv2d_backprop_filter": (lambda: nc.conv2d_backprop_filter(
        ONE, (1000, 1000, 1000, 1000), ONE, 1, "SAME"), (1000, 1000, 1000, 1000)),
}


@pytest.mark.parametrize("op", HUGE)
def test_a_result_larger_than_memory_raises_memory_error_naming_it(op, monkeypatch):
    def kernel_ran(*args, **kwargs):
        raise AssertionError("a kernel ran")

    monkeypatch.setattr(families, "run", kernel_ran)
    monkeypatch.setattr(families, "prepare", kernel_ran)
    call, shape = HUGE[op]
    with pytest.raises(MemoryError, match=f"{op}: the result of shape {re.escape(str(shape))}"):
        call()


def test_scratch_buffers_are_one_per_thread_role_and_dtype_and_grow():
    """A run's intermediate arrays come from this thread's buffer for their role: reused
    from call to call (no fresh pages each time), never shared with another role, dtype or
    thread (concurrent calls)."""
    import threading

    from numbaconv.cpu.scratch import scratch

    first = scratch("test: data tiles", 100, np.float32)
    assert first.shape == (100,) and first.dtype == np.float32
    assert np.shares_memory(first, scratch("test: data tiles", 50, np.float32))
    assert not np.shares_memory(first, scratch("test: products", 50, np.float32))
    assert not np.shares_memory(first, scratch("test: data tiles", 50, np.float64))
    grown = scratch("test: data tiles", 1000, np.float32)
    assert grown.shape == (1000,) and np.shares_memory(grown, scratch("test: data tiles", 10,
                                                                      np.float32))
    elsewhere = {}
    thread = threading.Thread(
        target=lambda: elsewhere.setdefault("buffer", scratch("test: data tiles", 10,
                                                              np.float32)))
    thread.start()
    thread.join()
    assert not np.shares_memory(elsewhere["buffer"], grown)
