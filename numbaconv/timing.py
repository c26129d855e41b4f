"""Timing on a shared, noisy machine: warm up, alternate the candidates, take medians."""

from __future__ import annotations

import os
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
    """Median seconds per call of each function (:func:`alternating_measurements`)."""
    found = alternating_measurements(functions, rounds, per_round, settle, after)
    return {name: measured.seconds for name, measured in found.items()}


def alternating_measurements(functions: dict, rounds: int = 3, per_round: int = 3,
                             settle: float = SETTLE_SECONDS, after: dict | None = None,
                             expected: dict | None = None,
                             before_each: Callable[[], object] | None = None) -> dict:
    """Each function's :class:`Measurement`: the median of its timed calls.

    The functions take turns in ``rounds`` blocks of ``per_round`` timed calls, each block
    after a pause and untimed warm-up calls, so that a slow spell of the machine hits them
    alike (their ratio holds) and no one pays for the previous one's spinning threads.
    Each round starts one function later, so that not always the same function comes
    first or after the longest pause (the first one timed runs slow on small layers).
    ``after``: a longer pause after some functions' blocks (name -> seconds).
    ``before_each``: called, untimed, before each timed call (what puts the caches in the
    state a call should find them in).

    ``expected``: name -> an earlier :class:`Measurement` of that function. A block much
    slower than it with a much smaller share of the cores (:func:`_disturbed`'s test) is
    timed again, at most ``rounds`` blocks in all: alternating keeps the functions' ratio
    through a slow spell only if the spell is shorter than a round.
    """
    samples: dict[str, list[float]] = {name: [] for name in functions}
    disturbed = dict.fromkeys(functions, 0)
    retimes_left = rounds
    names = list(functions)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            while True:
                block = _timed_block(functions[name], per_round, settle, before_each)
                earlier = (expected or {}).get(name)
                if (retimes_left == 0 or earlier is None
                        or not _slower_off_cpu(block, earlier.seconds, earlier.cpu_share)):
                    break
                retimes_left -= 1
                disturbed[name] += 1
            samples[name].extend(seconds for seconds, _ in block)
            time.sleep((after or {}).get(name, 0.0))
    return {name: Measurement(statistics.median(values), disturbed[name])
            for name, values in samples.items()}


def _timed_block(function: Callable[[], object], calls: int, settle: float,
                 before_each: Callable[[], object] | None = None) -> list:
    """``calls`` timed calls after a pause and a warm-up: (wall, process CPU) seconds each;
    ``before_each()`` untimed before each."""
    time.sleep(settle)
    warm_up(function)
    block = []
    for _ in range(calls):
        if before_each is not None:
            before_each()
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        block.append((time.perf_counter() - wall, time.process_time() - cpu))
    return block


#: A call whose process got this share or less of the typical call's CPU time per wall
#: second (another process took the cores) is disturbed and timed again...
DISTURBED_SHARE = 0.7
#: ...when it also ran this much slower than the typical (median) call.
DISTURBED_SLOWDOWN = 1.3
#: Calls timed before any is judged against the typical one.
TYPICAL_AFTER = 3


@dataclass(frozen=True)
class Measurement:
    """Median seconds per call, how many calls (or blocks) were disturbed and timed again,
    and the process CPU seconds per wall second of the typical call (None: not read)."""

    seconds: float
    disturbed: int = 0
    cpu_share: float | None = None


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
    return Measurement(statistics.median(s for s, _ in samples), disturbed,
                       _cpu_share(samples))


def _disturbed(sample: tuple, samples: list) -> bool:
    if len(samples) <= TYPICAL_AFTER:
        return False
    typical = statistics.median(s for s, _ in samples)
    return _slower_off_cpu([sample], typical, _cpu_share(samples))


def _cpu_share(samples: list) -> float | None:
    """The median call's process CPU seconds per wall second."""
    shares = [cpu / seconds for seconds, cpu in samples if seconds > 0]
    return statistics.median(shares) if shares else None


def _slower_off_cpu(samples: list, typical_seconds: float, typical_share: float) -> bool:
    """Whether ``samples`` (wall, CPU seconds), taken together, ran much slower than the
    typical call with a much smaller share of the cores: another process took them."""
    seconds = sum(s for s, _ in samples) / len(samples)
    share = sum(c for _, c in samples) / max(sum(s for s, _ in samples), 1e-12)
    return (typical_share is not None and seconds > DISTURBED_SLOWDOWN * typical_seconds
            and share < DISTURBED_SHARE * typical_share)


def median_seconds(function: Callable[[int], object], variants: int = 1, repeats: int = 5,
                   settle: float = SETTLE_SECONDS, min_seconds: float = 0.1) -> float:
    """:func:`measure`'s seconds."""
    return measure(function, variants, repeats, settle, min_seconds).seconds


def machine_cpu_seconds() -> tuple[float, float] | None:
    """(busy, all) CPU seconds of the whole machine since boot, from Linux's ``/proc/stat``
    (steal time counts as busy: the hypervisor gave it to other guests); None elsewhere."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
        ticks = [int(value) for value in fields[1:9]]  # user nice system idle iowait irq
    except (OSError, ValueError):                     # softirq steal
        return None
    if fields[:1] != ["cpu"] or len(ticks) < 8:
        return None
    per_second = os.sysconf("SC_CLK_TCK")
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / per_second, sum(ticks) / per_second


class OtherLoad:
    """The cores' worth of CPU time that other processes (and the hypervisor) took from
    this object's creation to :meth:`cores`: the machine's busy time less this process's.
    Where the machine's counters cannot be read, :meth:`cores` is None."""

    def __init__(self):
        self._machine = machine_cpu_seconds()
        self._own, self._wall = time.process_time(), time.perf_counter()

    def cores(self, helpers_seconds: float = 0.0) -> float | None:
        """``helpers_seconds``: CPU seconds that processes working with this one (the
        benchmark's PyTorch worker) took meanwhile, not counted as other load."""
        now = machine_cpu_seconds()
        if self._machine is None or now is None:
            return None
        other = ((now[0] - self._machine[0]) - (time.process_time() - self._own)
                 - helpers_seconds)
        return max(0.0, other) / max(time.perf_counter() - self._wall, 1e-9)


def crowded(other_cores: float | None, threads: int, cores: int | None = None) -> bool:
    """Whether other work took more than half a core of those ``threads`` need (``cores``:
    the machine's, by default all of them): timings then measure the competition."""
    if other_cores is None:
        return False
    spare = (cores or os.cpu_count() or threads) - threads
    return other_cores > spare + 0.5
