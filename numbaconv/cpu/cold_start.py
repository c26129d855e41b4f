"""Cold start: the first call of a schedule whose kernels were never built on this machine
runs a *starter* schedule, quick to compile (a small register tile, its padded copies and
filter rearrangements made by NumPy: the tile is the one kernel it compiles), while a
background process builds the chosen schedule's kernels into Numba's disk cache; the first
call after that build is done runs the chosen schedule (loaded from the cache in a fraction
of a second).

Why: a generated register tile takes seconds to compile (``docs/measurements.md``), and a
user who calls the ops before tuning waited for all of them before a first training step.
Why a process, not a thread: a compiling thread holds the GIL for most of its work and
Numba's compiler lock for all of it, so the caller's next compilation (another primitive's
starter) would wait for it. The child runs in the idle scheduling class (on cores the
caller leaves free), runs of the call on random data (which compile every kernel the
runs need), then marks the build done; at most :data:`RUNNING_BUILDS` run at once (each
holds a few hundred MB), the others wait their turn.

What has been built is remembered by one marker file per :func:`build_key` (the schedule
without its task split, the primitive, dtype, vector width, CPU and Numba version) under
the cache root; a marker whose kernels Numba's cache lost costs a compilation, as
before. ``NUMBACONV_BACKGROUND_BUILDS=0`` builds in the call instead (benchmarks do, so as
to time the chosen schedules).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np

from ..configs import geometry_to_dict
from ..geometry import ConvGeometry
from ..machine import this_machine
from ..paths import cache_root
from ..primitives import primitive as primitive_named
from ..primitives import random_tensors
from ..threads import ProcessLock
from . import families, tiled
from .families import CPU

ENV = "NUMBACONV_BACKGROUND_BUILDS"
#: The families whose kernels are generated per tile: the ones slow to compile.
GENERATED = ("tiled", "winograd", "gemm")
#: The background build's niceness where there is no idle scheduling class.
NICENESS = 19

_lock = ProcessLock()
_builds: dict = {}  # build key -> Build: this process's background builds


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


def build_key(primitive: str, schedule, dtype, storage: str | None = None) -> str:
    """What decides the kernels a run compiles (not the geometry: the generated kernels
    take it as arguments; ``storage``: a half type the run converts itself), and where
    they were compiled."""
    machine = this_machine()
    kept = f"|{storage} bits" if storage else ""
    return (f"{primitive}|{np.dtype(dtype).name}{kept}|{schedule.kernels_key()}|"
            f"{machine.vector_bits}|{machine.key}|numba {numba.__version__}")


def _marker(key: str) -> Path:
    return cache_root() / "built" / hashlib.sha256(key.encode()).hexdigest()[:24]


def is_built(key: str) -> bool:
    return _marker(key).exists()


def mark_built(key: str):
    """Record that ``key``'s kernels are in the disk cache (best effort: a read-only cache
    only means later processes start cold again)."""
    path = _marker(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(key + "\n")
    except OSError:
        pass


def starter(primitive: str, g: ConvGeometry, itemsize: int):
    """A tiled schedule of one vector of channels by four rows, quick to compile (a few
    seconds against 8-30 for the large tiles), or None where no such tile is legal."""
    lanes = this_machine().lanes(itemsize)
    for columns in (lanes, lanes // 2):
        schedule = CPU.fit(tiled.TiledSchedule(loop_order="pixel_tiles_outer",
                                               register_tile=(4, max(1, columns))),
                           primitive, g, itemsize)
        if CPU.illegal_reason(primitive, g, schedule, itemsize) is None:
            return schedule
    return None


class Build:
    """A background process building one schedule's kernels: started when fewer than
    :data:`RUNNING_BUILDS` run (else it waits its turn), checked by :meth:`done`."""

    def __init__(self, key: str, primitive: str, g: ConvGeometry, schedule, dtype,
                 storage: str | None = None):
        self.key = key
        package_parent = str(Path(__file__).resolve().parents[2])
        self._env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [package_parent] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
        spec = dict(primitive=primitive, geometry=geometry_to_dict(g),
                    schedule=schedule.to_dict(), dtype=np.dtype(dtype).name, storage=storage)
        self._command = [sys.executable, "-c", CHILD, json.dumps(spec)]
        self._process = None
        self._failed = False

    def start(self):
        """Start the process (an OSError where no interpreter can be started)."""
        self._process = subprocess.Popen(
            self._command, env=self._env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def done(self) -> bool:
        """Whether the build is over (built, or failed); starts waiting builds whose turn
        has come."""
        with _lock:
            _start_waiting()
        return self._failed or (self._process is not None and self._process.poll() is not None)

    def wait(self, timeout: float = 600.0) -> bool:
        """Wait for the build (its turn included); whether it succeeded."""
        deadline = time.monotonic() + timeout
        while not self.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"background build still running: {self.key}")
            time.sleep(0.05)
        return not self._failed and self._process.returncode == 0


#: Background builds run at once (each a Python process with Numba loaded, a few hundred
#: MB, on one core): the others wait their turn.
RUNNING_BUILDS = max(1, (os.cpu_count() or 2) // 2)


def _start_waiting():
    """Start waiting builds, oldest first, while fewer than RUNNING_BUILDS run."""
    running = sum(build.running for build in _builds.values())
    for build in _builds.values():
        if running >= RUNNING_BUILDS:
            return
        if build._process is None and not build._failed:
            try:
                build.start()
                running += 1
            except OSError:
                build._failed = True


class Now(NamedTuple):
    """What a call runs now: ``schedule``; ``waiting``: the background build after which
    the chosen schedule runs instead (None: ``schedule`` is the chosen one); ``unmarked``:
    the build key to mark once ``schedule`` has run (None: marked, or not a generated
    family)."""

    schedule: object
    waiting: Build | None = None
    unmarked: str | None = None

    def prepare(self, primitive: str, g: ConvGeometry, dtype, **options):
        """The run of ``schedule`` (:func:`families.prepare`, ``options``: the family's
        own); a starter's copies by NumPy, so that its register tile is all the call
        compiles."""
        if self.waiting is None:
            return families.prepare(primitive, g, self.schedule, dtype, **options)
        return families.prepare(primitive, g, self.schedule, dtype, copies_by_numpy=True,
                                **options)


def schedule_now(primitive: str, g: ConvGeometry, chosen, dtype,
                 storage: str | None = None) -> Now:
    """``chosen`` when its kernels are built or quick to build anyway (or background
    builds are off), else a starter while a background process builds ``chosen`` (one per
    build key and process). ``storage``: the call's half type, built as ``chosen`` runs it
    (:meth:`numbaconv.family.Family.half_storage`)."""
    dtype = np.dtype(dtype)
    if chosen.algorithm not in GENERATED:
        return Now(chosen)
    converted = _converted(primitive, g, chosen, storage)
    key = build_key(primitive, chosen, dtype, converted)
    with _lock:
        build = _builds.get(key)
        if build is not None and build.done():
            return Now(chosen, unmarked=key)  # built, or failed: then the call builds it
        if build is None and is_built(key):
            return Now(chosen)
        fallback = starter(primitive, g, dtype.itemsize) if enabled() else None
        if fallback is None or fallback.kernels_key() == chosen.kernels_key():
            return Now(chosen, unmarked=key)
        if build is None:
            build = _builds[key] = Build(key, primitive, g, chosen, dtype, converted)
            _start_waiting()
            if build._failed:  # no interpreter to start (an embedded Python): build in the call
                return Now(chosen, unmarked=key)
        return Now(fallback, build, build_key(primitive, fallback, dtype,
                                              _converted(primitive, g, fallback, storage)))


def _converted(primitive: str, g: ConvGeometry, schedule, storage: str | None) -> str | None:
    """``storage`` where ``schedule``'s run converts that half type itself, else None."""
    if storage is not None and CPU.half_storage(primitive, g, schedule, storage):
        return storage
    return None


def status(primitive: str, chosen, dtype) -> str:
    """Whether ``chosen``'s kernels are built, for :func:`numbaconv.explain`."""
    if chosen.algorithm not in GENERATED:
        return "compiled on first use"
    key = build_key(primitive, chosen, dtype)
    build = _builds.get(key)
    if build is not None and not build.done():
        return "building in the background (calls run a starter schedule until then)"
    if is_built(key) or build is not None:
        return "built"
    return ("not built on this machine yet: the first call builds them"
            + (" in the background" if enabled() else ""))


#: The background process's program.
CHILD = "import sys; from numbaconv.cpu import cold_start; cold_start.child(sys.argv[1])"


def child(spec: str):
    """The background process: :func:`build`, on cores the caller leaves idle (Linux's
    idle scheduling class; elsewhere the lowest priority)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.nice(NICENESS)
        except (AttributeError, OSError):
            pass
    build(json.loads(spec))


def build(spec: dict):
    """Runs of the schedule on random operands, as many as take every path
    (:attr:`Schedule.calls_for_every_path`: compiling every kernel it needs, into the disk
    cache), then its marker."""
    primitive = spec["primitive"]
    g = ConvGeometry(**spec["geometry"])
    schedule = CPU.parse(spec["schedule"])
    dtype, storage = np.dtype(spec["dtype"]), spec.get("storage")
    operands = primitive_named(primitive).pick(random_tensors(g, dtype,
                                                              np.random.default_rng(0)))
    if storage is not None:  # the operands' bits: any values do to compile
        operands = tuple(np.zeros(operand.shape, np.uint16) for operand in operands)
    options = {} if storage is None else {"storage": storage}
    prepared = families.prepare(primitive, g, schedule, dtype, **options)
    for _ in range(schedule.calls_for_every_path):
        prepared(*operands)
    mark_built(build_key(primitive, schedule, dtype, storage))
