"""Timing on a shared, noisy machine: warm up, alternate the candidates, take medians."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
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


#: A call whose process got this share or less of the typical call's CPU time per wall
#: second (another process took the cores) is disturbed and timed again...
DISTURBED_SHARE = 0.7
#: ...when it also ran this much slower than the typical (median) call.
DISTURBED_SLOWDOWN = 1.3
#: Calls timed before any is judged against the typical one.
TYPICAL_AFTER = 3


@dataclass(frozen=True)
class Measurement:
    """Median seconds per call, and how many calls were disturbed and timed again."""

    seconds: float
    disturbed: int = 0


def measure(function: Callable[[int], object], variants: int = 1, repeats: int = 5,
            settle: float = SETTLE_SECONDS, min_seconds: float = 0.1) -> Measurement:
    """Median seconds of ``function(i)``, ``i`` cycling over ``variants`` input sets (so
    that caches hold no more than a real call would find), after a pause and a warm call;
    at least ``repeats`` calls and at least ``min_seconds`` of them (capped at 50 calls).

    Each call's process CPU time is read with its wall time: a call that got a much
    smaller share of the cores than the typical one (another process took them) and ran
    much slower is dropped and timed again, up to ``repeats`` more times."""
    time.sleep(settle)
    function(0)
    samples, disturbed = [], 0
    while len(samples) < repeats or (sum(s for s, _ in samples) < min_seconds
                                     and len(samples) < 50):
        wall, cpu = time.perf_counter(), time.process_time()
        function(len(samples) % variants)
        samples.append((time.perf_counter() - wall, time.process_time() - cpu))
        if disturbed < repeats and _disturbed(samples[-1], samples):
            samples.pop()
            disturbed += 1
    return Measurement(statistics.median(s for s, _ in samples), disturbed)


def _disturbed(sample: tuple, samples: list) -> bool:
    if len(samples) <= TYPICAL_AFTER:
        return False
    seconds, cpu = sample
    typical = statistics.median(s for s, _ in samples)
    typical_share = statistics.median(c / s for s, c in samples if s > 0)
    return (seconds > DISTURBED_SLOWDOWN * typical
            and cpu / max(seconds, 1e-12) < DISTURBED_SHARE * typical_share)


def median_seconds(function: Callable[[int], object], variants: int = 1, repeats: int = 5,
                   settle: float = SETTLE_SECONDS, min_seconds: float = 0.1) -> float:
    """:func:`measure`'s seconds."""
    return measure(function, variants, repeats, settle, min_seconds).seconds
