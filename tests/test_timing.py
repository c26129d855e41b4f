"""Timing on a shared machine: calls that other load disturbed are timed again."""

import itertools
import subprocess
import sys
import time

import pytest

from numbaconv import timing
from numbaconv.timing import measure

# Busy loops and other processes' load against the wall clock: nothing else may run.
pytestmark = pytest.mark.quiet


def busy(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_call_that_lost_its_core_is_timed_again():
    """Every third call waits off the CPU for 5x as long (as when another process holds the
    core): those judged against the typical call are dropped, and the median is the
    undisturbed calls'."""
    calls = itertools.count()

    def sometimes_descheduled(i):
        busy(0.002)
        if next(calls) % 3 == 2:
            time.sleep(0.01)

    found = measure(sometimes_descheduled, repeats=9, settle=0, min_seconds=0)
    assert found.disturbed >= 1
    assert 0.0018 < found.seconds < 0.005


def test_steady_calls_are_not_retimed():
    found = measure(lambda i: busy(0.001), repeats=8, settle=0, min_seconds=0)
    assert found.disturbed == 0
    assert 0.0009 < found.seconds < 0.003


def test_an_alternating_block_that_lost_its_core_is_timed_again(monkeypatch):
    """In the finalists' alternating pass, a block far slower than the function's earlier
    measurement, off the CPU meanwhile, is timed again; the other function's is not."""
    blocks = itertools.count(1)
    block = [0]

    def counting_warm_up(function, seconds=timing.WARM_SECONDS):
        block[0] = next(blocks)  # each block starts with its warm-up
        original_warm_up(function, seconds)

    original_warm_up = timing.warm_up
    monkeypatch.setattr(timing, "warm_up", counting_warm_up)

    def slow_in_the_second_block():  # round 1 times "steady" first, then this
        busy(0.001)
        if block[0] == 2:
            time.sleep(0.005)  # as when another process holds the core

    earlier = measure(lambda i: busy(0.001), repeats=5, settle=0, min_seconds=0)
    found = timing.alternating_measurements(
        {"steady": lambda: busy(0.001), "disturbed": slow_in_the_second_block},
        rounds=3, per_round=3, settle=0, expected={"steady": earlier, "disturbed": earlier})
    assert found["steady"].disturbed == 0
    assert found["disturbed"].disturbed == 1
    assert 0.0009 < found["disturbed"].seconds < 0.003


def test_what_runs_before_each_timed_call_is_not_timed():
    calls = []
    found = timing.alternating_measurements(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=2,
        per_round=3, settle=0, before_each=lambda: (calls.append("before"), time.sleep(0.01)))
    assert all(measured.seconds < 0.005 for measured in found.values())
    assert calls.count("before") == 2 * 2 * 3
    assert all(after in "ab" for before, after in zip(calls, calls[1:]) if before == "before")


def test_alternating_blocks_are_not_retimed_without_an_earlier_measurement():
    found = timing.alternating_measurements({"a": lambda: time.sleep(0.002)}, rounds=2, per_round=2,
                                     settle=0)
    assert found["a"].disturbed == 0
    assert 0.0019 < found["a"].seconds < 0.01


@pytest.mark.skipif(timing.machine_cpu_seconds() is None, reason="no /proc/stat (not Linux)")
def test_another_process_spinning_is_seen_as_a_core_of_other_load():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # started
        other = timing.OtherLoad()
        busy(0.5)  # this process's own work is not counted
        cores = other.cores()
    finally:
        spinner.kill()
    assert 0.7 < cores < 1.3


def test_crowded_means_other_work_took_cores_the_threads_need():
    assert not timing.crowded(0.1, threads=2, cores=2)
    assert timing.crowded(1.0, threads=2, cores=2)
    assert not timing.crowded(1.0, threads=2, cores=4)
    assert not timing.crowded(None, threads=2, cores=2)
