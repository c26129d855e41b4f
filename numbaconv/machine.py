"""Which CPU this is: what identifies it for tuning (its device key) and the SIMD features
the kernels' choices depend on."""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
import re
from dataclasses import dataclass

#: The instruction-set features that name a device and steer the default rule.
SIMD_FEATURES = ("avx512f", "avx2", "fma", "avx", "sse4.2", "neon", "sve")

#: Vector FMAs issued per cycle at the kernels' vector width (:attr:`Machine.vector_bits`)
#: and their latency in cycles, by LLVM's name for the core, from the vendors' optimisation
#: manuals. A name's part (a VM may report a client core for a server one) can be wrong:
#: calibration measures what the FMA units really sustain.
KNOWN_CORES = {
    "znver1": (1, 5), "znver2": (2, 5), "znver3": (2, 4), "znver4": (1, 4), "znver5": (2, 4),
    "haswell": (2, 5), "broadwell": (2, 4), "skylake": (2, 4), "alderlake": (2, 4),
    "raptorlake": (2, 4), "meteorlake": (2, 4), "arrowlake": (2, 4),
    "skylake-avx512": (2, 4), "cascadelake": (2, 4), "cooperlake": (2, 4),
    "icelake-server": (2, 4), "sapphirerapids": (2, 4), "emeraldrapids": (2, 4),
    "graniterapids": (2, 4), "icelake-client": (1, 4), "tigerlake": (1, 4),
    "rocketlake": (1, 4),
}
#: What an unknown core is assumed to issue: two FMAs per cycle, four cycles each.
DEFAULT_CORE = (2, 4)


@dataclass(frozen=True)
class Machine:
    """The CPU: model name, LLVM's name for its core, SIMD features, core count, and what
    calibration measured of it (``measured_accumulators``: the independent FMA chains that
    reach its peak; None before calibration)."""

    cpu: str
    llvm_cpu: str
    simd: tuple[str, ...]
    cores: int
    measured_accumulators: int | None = None

    @property
    def key(self) -> str:
        """The config-cache device key, e.g. ``znver4-avx512f-avx2-fma-avx-sse4.2-2c``."""
        features = "-".join(self.simd) or "scalar"
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.llvm_cpu}-{features}-{self.cores}c")

    def has(self, feature: str) -> bool:
        return feature in self.simd

    @property
    def vector_bits(self) -> int:
        """The widest vectors the kernels use: 512 with AVX-512 (whatever LLVM's tuning for
        the core prefers), 256 with AVX or AVX2, else 128."""
        if self.has("avx512f"):
            return 512
        return 256 if self.has("avx") or self.has("avx2") else 128

    @property
    def vector_registers(self) -> int:
        """Architectural vector registers: 32 with AVX-512 (and on Arm), else 16."""
        return 32 if self.has("avx512f") or self.has("neon") or self.has("sve") else 16

    def lanes(self, itemsize: int) -> int:
        """Elements of ``itemsize`` bytes in one vector."""
        return self.vector_bits // 8 // itemsize

    @property
    def fma_units(self) -> int:
        return KNOWN_CORES.get(self.llvm_cpu, DEFAULT_CORE)[0]

    @property
    def fma_latency(self) -> int:
        return KNOWN_CORES.get(self.llvm_cpu, DEFAULT_CORE)[1]

    @property
    def accumulators_needed(self) -> int:
        """Independent vector accumulators that keep the FMA units busy: as calibration
        measured, else units × latency from the table."""
        return self.measured_accumulators or self.fma_units * self.fma_latency

    def calibrated(self, calibration: dict | None) -> "Machine":
        """This machine with what a calibration (a config file's section) measured."""
        chains = ((calibration or {}).get("fma") or {}).get("chains_needed")
        if not isinstance(chains, int) or chains < 1:
            return self
        return dataclasses.replace(self, measured_accumulators=chains)

    def to_dict(self) -> dict:
        """As the config files record it."""
        return {"key": self.key, "cpu": self.cpu, "llvm_cpu": self.llvm_cpu,
                "simd": list(self.simd), "cores": self.cores}


def _model_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def this_machine() -> Machine:
    """The CPU this process runs on (LLVM's view of it, as the kernels are compiled)."""
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features()
    return Machine(cpu=_model_name(), llvm_cpu=llvm.get_host_cpu_name(),
                   simd=tuple(name for name in SIMD_FEATURES if features.get(name)),
                   cores=os.cpu_count() or 1)
