"""What the tuner needs of a device: its candidates, how to run one, how to time it.

:class:`CpuBackend` runs the loop nests on NumPy arrays; :class:`CudaBackend` the
``numba.cuda`` kernels on device arrays, synchronising after each timed call and pruning,
before anything runs, the schedules whose kernels spill on the real compiler.
"""

from __future__ import annotations

import numba
import numpy as np

from .. import configs
from ..cpu import caches, cold_start, families, layout
from ..cpu.families import CPU
from ..cpu.rule import rule
from ..cpu.winograd import filter_cache
from ..geometry import ConvGeometry
from ..machine import this_machine

#: The input of :meth:`CpuBackend.in_program`'s neighbouring kernel.
_NEIGHBOUR = np.ones((1, 8, 8, 16), np.float32)


def _first_and_unique(first, others: list) -> list:
    return list(dict.fromkeys([first, *others]))


class CpuBackend:
    device = "cpu"

    def __init__(self, calibration: dict | None = None):
        #: The calibration the candidates follow (else the config files' one, if any).
        self.calibration = calibration
        self._sweep = None  # made on first use: a buffer of twice the last-level cache

    def key(self) -> str:
        return this_machine().key

    def candidates(self, primitive: str, g: ConvGeometry, itemsize: int, space: dict):
        """(legal schedules, the default rule's first, [(schedule, why pruned)])."""
        calibration = self.calibration or configs.calibration()
        machine = this_machine().calibrated(calibration)
        found = _first_and_unique(rule(primitive, g, itemsize, machine, calibration),
                                  CPU.candidates(primitive, g, itemsize, space.get("cpu", {}),
                                                 machine))
        return [s for s in found if CPU.illegal_reason(primitive, g, s, itemsize) is None], []

    def prepare(self, arrays):
        return arrays

    def run(self, primitive: str, operands, g: ConvGeometry, schedule):
        return families.run(primitive, operands, g, schedule)

    def runner(self, primitive: str, g: ConvGeometry, schedule, dtype):
        """:meth:`run` of ``schedule`` as a function of the operands, prepared once."""
        prepared = families.prepare(primitive, g, schedule, dtype)
        return lambda operands: prepared(*operands)

    def verified(self, primitive: str, schedule, dtype):
        """``schedule`` ran and computed the right numbers: its kernels are in the disk
        cache, and a call that picks it needs no cold start."""
        cold_start.mark_built(cold_start.build_key(primitive, schedule, dtype))

    def in_program(self, call):
        """``call`` as it costs inside a program of numbaconv calls: followed by a tiny Numba
        parallel kernel. BLAS's worker threads spin after a matmul and keep the next
        kernel's threads off the cores, so a BLAS schedule timed alone would be chosen for
        a speed no program sees."""
        return lambda *args: (call(*args), layout.pad(_NEIGHBOUR, 1, 1, 1, 1))[0]

    def to_host(self, result):
        return result

    def evict_caches(self):
        """Before each of the finalists' timed calls: the caches as a network's pass leaves
        them for a layer, holding other layers' data (:mod:`numbaconv.cpu.caches`), and
        Winograd's kept filter transforms made again (:mod:`.filter_cache`): the tuned
        schedule is training's, where every step changes the filters."""
        if self._sweep is None:
            self._sweep = caches.sweeper()
        self._sweep()
        filter_cache.forget()  # each call's filter new, as in training

    def settle_after(self, schedule) -> float:
        # BLAS worker threads spin after a matmul: give them time to sleep before timing.
        return 0.3 if getattr(schedule, "matmul", None) == "blas" else 0.02

    def host_threads(self) -> int:
        """The CPU threads a timed call keeps busy: Numba's."""
        return numba.get_num_threads()

    def entry_extras(self, primitive: str, schedule, dtype: str) -> dict:
        return {}


class CudaBackend:
    device = "cuda"

    def __init__(self):
        from ..cuda import runtime

        runtime.require()
        from numba import cuda

        self.cuda = cuda
        self.stream = cuda.default_stream()
        self.info = runtime.device_info()

    def key(self) -> str:
        return self.info["key"]

    @property
    def compute_capability(self) -> tuple:
        return tuple(self.info["compute_capability"])

    def _resources(self, primitive: str, schedule, dtype: str):
        """The kernel's ptxas report for this GPU, or None where the compiler is absent
        (the simulator, or a GPU without the CUDA 13 compiler wheels)."""
        from ..cuda import resources

        if resources.unavailable_reason() is not None:
            return None
        if self.compute_capability not in resources.LIMITS:
            return None
        return resources.tile_resources(primitive, schedule, dtype, self.compute_capability)

    def candidates(self, primitive: str, g: ConvGeometry, itemsize: int, space: dict):
        from ..cuda import resources
        from ..cuda.families import CUDA
        from ..cuda.schedule import default_schedule

        dtype = "float32" if itemsize == 4 else "float64"
        options = _first_and_unique(default_schedule(primitive, g, itemsize),
                                    CUDA.candidates(primitive, g, itemsize,
                                                    space.get("cuda", {}), self.info))
        kept, pruned = [], []
        for schedule in options:
            if CUDA.illegal_reason(primitive, g, schedule, itemsize):
                continue
            found = self._resources(primitive, schedule, dtype)
            reason = resources.rejection(found) if found else None
            (pruned.append((schedule, f"pruned: {reason}")) if reason else kept.append(schedule))
        return kept, pruned

    def prepare(self, arrays):
        return [self.cuda.to_device(a, stream=self.stream) for a in arrays]

    def run(self, primitive: str, operands, g: ConvGeometry, schedule):
        from ..cuda.families import CUDA

        result = CUDA.run(primitive, operands, g, schedule, data_format="NHWC",
                          stream=self.stream)
        self.stream.synchronize()  # so that a timed call ends when the GPU is done
        return result

    def runner(self, primitive: str, g: ConvGeometry, schedule, dtype):
        return lambda operands: self.run(primitive, operands, g, schedule)

    def verified(self, primitive: str, schedule, dtype):
        pass

    def in_program(self, call):
        return call

    def to_host(self, result):
        return result.copy_to_host()

    def evict_caches(self):
        """Nothing: the GPU's finalists are timed on repeated calls (its caches not swept)."""

    def settle_after(self, schedule) -> float:
        return 0.0

    def host_threads(self) -> int:
        """The CPU threads a timed call keeps busy: the one that launches and waits."""
        return 1

    def entry_extras(self, primitive: str, schedule, dtype: str) -> dict:
        found = self._resources(primitive, schedule, dtype)
        if found is None:
            return {}
        return {"registers": found.registers, "blocks_per_sm": found.blocks_per_sm,
                "occupancy": round(found.occupancy(self.compute_capability), 3)}


def backend(device: str):
    return CudaBackend() if device == "cuda" else CpuBackend()
