"""enumerate → prune → verify → time → choose, per (layer, primitive, dtype).

Every candidate is run once on random data and compared with a float64 result of the
direct kernel (itself tested against an independent NumPy reference); a candidate whose
error exceeds the tolerance is reported and never cached. The survivors are timed
(pause, warm call, median of repeats over rotating input sets) and the fastest is written
to the YAML cache at once, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import configs
from ..cpu import direct, families
from ..geometry import ConvGeometry
from ..primitives import primitive as primitive_named
from ..primitives import random_tensors
from ..timing import OtherLoad, alternating_measurements, crowded, measure
from ..workloads import Layer
from .backends import CpuBackend

#: Largest error allowed, relative to the largest magnitude of the float64 result.
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}
#: Input sets cycled while timing, when they fit this budget (bytes): larger layers do not
#: fit in cache anyway.
ROTATION_BYTES = 64 * 2**20


@dataclass
class Outcome:
    """What tuning one (layer, primitive, dtype) found."""

    layer: Layer
    primitive: str
    dtype: str
    default: object  # a Schedule or a CudaSchedule
    default_seconds: float | None = None
    best: object | None = None
    best_seconds: float | None = None
    timed: int = 0
    retimed: int = 0  # timings (a candidate's, a finalist's) with disturbed calls timed again
    crowded: bool = False  # other work held the cores through every finalists' pass
    rejected: list = field(default_factory=list)  # (schedule, reason)
    compile_seconds: float = 0.0  # first calls: compilation (or cache load) + verification run

    @property
    def speedup(self) -> float | None:
        if self.best_seconds and self.default_seconds:
            return self.default_seconds / self.best_seconds
        return None


def operands(primitive: str, g: ConvGeometry, dtype, rng) -> tuple:
    """The two arrays a primitive reads, random, NHWC / HWIO."""
    return primitive_named(primitive).pick(random_tensors(g, dtype, rng))


def reference(primitive: str, arrays, g: ConvGeometry) -> np.ndarray:
    """The float64 result of the direct family (itself tested against an independent
    NumPy reference)."""
    return families.run(primitive, tuple(a.astype(np.float64) for a in arrays), g,
                        direct.default(primitive, g, 8))


def relative_error(result: np.ndarray, reference: np.ndarray) -> float:
    if result.shape != reference.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(reference), initial=0.0)), 1e-30)
    error = np.abs(result.astype(np.float64) - reference)
    if not np.all(np.isfinite(error)):
        return float("inf")
    return float(np.max(error, initial=0.0)) / scale


def tune_one(layer: Layer, primitive: str, dtype: str, space: dict, deadline: float,
             repeats: int = 5, log: Callable[[str], None] = print, backend=None) -> Outcome:
    """Tune one (layer, primitive, dtype) on ``backend`` (default: the CPU)."""
    backend = backend or CpuBackend()
    g = layer.geometry
    np_dtype = np.dtype(dtype)
    rng = np.random.default_rng(zlib.crc32(f"{layer.name}|{primitive}".encode()))
    first = operands(primitive, g, np_dtype, rng)
    size = sum(a.nbytes for a in first)
    sets = [first] + [operands(primitive, g, np_dtype, rng)
                      for _ in range(max(0, min(2, ROTATION_BYTES // max(size, 1) - 1)))]
    expected = reference(primitive, first, g)
    options, pruned = backend.candidates(primitive, g, np_dtype.itemsize, space)
    outcome = Outcome(layer, primitive, dtype, default=options[0] if options else None)
    outcome.rejected.extend(pruned)
    for schedule, reason in pruned:
        log(f"    {reason}: {schedule}")
    sets = [backend.prepare(arrays) for arrays in sets]

    runners: dict = {}  # schedule -> its prepared run: what a remembered op call runs

    def run(arrays, schedule):
        return runners[schedule](arrays)

    run_in_program = backend.in_program(run)

    timings: dict = {}
    settle = 0.02
    for schedule in options:
        if time.monotonic() > deadline:
            break
        start = time.perf_counter()
        try:
            runners[schedule] = backend.runner(primitive, g, schedule, np_dtype)
            result = backend.to_host(run(sets[0], schedule))
        except Exception as error:  # a candidate that fails to compile or run is rejected
            outcome.rejected.append((schedule, f"{type(error).__name__}: {error}"))
            log(f"    rejected {schedule}: {type(error).__name__}: {error}")
            continue
        outcome.compile_seconds += time.perf_counter() - start
        error = relative_error(result, expected)
        if not error <= TOLERANCE[dtype]:
            outcome.rejected.append((schedule, f"wrong result (relative error {error:.2e})"))
            log(f"    rejected {schedule}: relative error {error:.2e}")
            continue
        backend.verified(primitive, schedule, np_dtype)
        measured = measure(lambda i: run_in_program(sets[i], schedule), len(sets), repeats,
                           settle=settle)
        seconds = measured.seconds
        outcome.retimed += measured.disturbed > 0
        settle = backend.settle_after(schedule)
        outcome.timed += 1
        timings[schedule] = measured
        if schedule == outcome.default:
            outcome.default_seconds = seconds
        if outcome.best_seconds is None or seconds < outcome.best_seconds:
            outcome.best, outcome.best_seconds = schedule, seconds
    if outcome.timed > 1 and time.monotonic() < deadline:
        _retime_finalists(outcome, run_in_program, sets, timings, deadline,
                          backend.host_threads(), backend.evict_caches)
    return outcome


#: A finalist must beat the default rule's schedule by this factor to replace it: on a
#: shared machine a pick that wins by noise runs slower than the rule at call time.
KEEP_DEFAULT_WITHIN = 1.03


#: Finalists' passes tried while other work crowds the cores, before the default is kept...
FINAL_PASSES = 3
#: ...each after this pause (seconds): other work often comes in bursts.
CROWDED_PAUSE = 1.0


def _retime_finalists(outcome: Outcome, run, sets, timings: dict, deadline: float,
                      threads: int, evict_caches: Callable[[], object] | None = None,
                      finalists: int = 5):
    """Single timings on a shared machine wobble by 10-15%, and a slow spell can double one:
    time the fastest few and the default again, alternating, and let that decide (not the
    better of the two estimates: the finalists were picked for their low first timings, and
    keeping those would favour the noisiest); the default stays unless beaten by more than
    :data:`KEEP_DEFAULT_WITHIN`. ``timings``: schedule -> its first :class:`Measurement`,
    against which a block of this pass that other load slowed is timed again.
    ``evict_caches()``: before each timed call, so that each finds the caches as a
    network's pass leaves them (a schedule whose intermediates stay cached between
    repeated calls wins there by more than within a pass).

    A pass during which other processes took the cores the timed calls need
    (:func:`timing.crowded`) decides nothing: it is tried again, and where every try was
    crowded the default stays (a winner under contention, such as a serial kernel that
    no descheduled thread holds up, may lose on the quiet machine the config is for)."""
    ranked = sorted(timings, key=lambda s: timings[s].seconds)[:finalists]
    if outcome.default not in ranked and outcome.default in timings:
        ranked.append(outcome.default)
    for attempt in range(FINAL_PASSES):
        if attempt:
            time.sleep(CROWDED_PAUSE)
        other = OtherLoad()
        found = alternating_measurements(
            {index: (lambda s=schedule: run(sets[0], s)) for index, schedule in enumerate(ranked)},
            rounds=3, settle=0.05, expected=dict(enumerate(timings[s] for s in ranked)),
            before_each=evict_caches)
        outcome.retimed += sum(measured.disturbed > 0 for measured in found.values())
        outcome.crowded = crowded(other.cores(), threads)
        if not outcome.crowded or time.monotonic() > deadline:
            break
    seconds = {schedule: found[index].seconds for index, schedule in enumerate(ranked)}
    outcome.best = min(ranked, key=seconds.get)
    if outcome.default in seconds:
        outcome.default_seconds = seconds[outcome.default]
        if (outcome.crowded
                or outcome.default_seconds <= KEEP_DEFAULT_WITHIN * seconds[outcome.best]):
            outcome.best = outcome.default
    outcome.best_seconds = seconds[outcome.best]


def save_outcome(outcome: Outcome, path: Path, backend=None):
    if outcome.best is None:
        return
    backend = backend or CpuBackend()
    default_seconds = outcome.default_seconds or outcome.best_seconds
    key = configs.entry_key(outcome.primitive, outcome.dtype, outcome.layer.geometry)
    entry = configs.make_entry(outcome.primitive, outcome.dtype, outcome.layer.geometry,
                               outcome.best, outcome.best_seconds, default_seconds)
    entry["layer"] = outcome.layer.name
    entry.update(backend.entry_extras(outcome.primitive, outcome.best, outcome.dtype))
    configs.save_entries(path, {key: entry}, device=backend.device)


def with_batch(layers: list[Layer], batch: int | None) -> list[Layer]:
    if batch is None:
        return layers
    return [Layer(l.name, dataclasses.replace(l.geometry, batch=batch)) for l in layers]
