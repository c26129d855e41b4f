"""Timing on a shared, noisy machine: warm up, alternate the candidates, take medians."""

from __future__ import annotations

import statistics
import time
from typing import Callable

#: Pause before each block: OpenMP and OpenBLAS worker threads spin for a while after a
#: parallel call, and would steal the cores from whatever runs next.
SETTLE_SECONDS = 0.3


#: Untimed calls after a pause, at least this long: the first calls after an idle spell
#: run slow, more than one warm call absorbs.
WARM_SECONDS = 0.02


def warm_up(function: Callable[[], object], seconds: float = WARM_SECONDS):
    """Call ``function`` untimed until ``seconds`` have passed (at least once)."""
    end = time.perf_counter() + seconds
    function()
    while time.perf_counter() < end:
        function()


def alternating_medians(functions: dict, rounds: int = 3, per_round: int = 3,
                        settle: float = SETTLE_SECONDS, after: dict | None = None) -> dict:
    """Median seconds per call of each function.

    The functions take turns in ``rounds`` blocks of ``per_round`` timed calls, each block
    after a pause and untimed warm-up calls, so that a slow spell of the machine hits them
    alike (their ratio holds) and no one pays for the previous one's spinning threads.
    Each round starts one function later, so that not always the same function comes
    first or after the longest pause (the first one timed runs slow on small layers).
    ``after``: a longer pause after some functions' blocks (name -> seconds).
    """
    samples: dict[str, list[float]] = {name: [] for name in functions}
    names = list(functions)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            function = functions[name]
            time.sleep(settle)
            warm_up(function)
            for _ in range(per_round):
                start = time.perf_counter()
                function()
                samples[name].append(time.perf_counter() - start)
            time.sleep((after or {}).get(name, 0.0))
    return {name: statistics.median(values) for name, values in samples.items()}


def median_seconds(function: Callable[[int], object], variants: int = 1, repeats: int = 5,
                   settle: float = SETTLE_SECONDS, min_seconds: float = 0.1) -> float:
    """Median seconds of ``function(i)``, ``i`` cycling over ``variants`` input sets (so
    that caches hold no more than a real call would find), after a pause and a warm call;
    at least ``repeats`` calls and at least ``min_seconds`` of them (capped at 50 calls)."""
    time.sleep(settle)
    function(0)
    samples = []
    while len(samples) < repeats or (sum(samples) < min_seconds and len(samples) < 50):
        start = time.perf_counter()
        function(len(samples) % variants)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)
