"""Which CPU this is: what identifies it for tuning (its device key) and the SIMD features
the kernels' choices depend on."""

from __future__ import annotations

import functools
import os
import platform
import re
from dataclasses import dataclass

#: The instruction-set features that name a device and steer the default rule.
SIMD_FEATURES = ("avx512f", "avx2", "fma", "avx", "sse4.2", "neon", "sve")


@dataclass(frozen=True)
class Machine:
    """The CPU: model name, LLVM's name for its core, SIMD features, core count."""

    cpu: str
    llvm_cpu: str
    simd: tuple[str, ...]
    cores: int

    @property
    def key(self) -> str:
        """The config-cache device key, e.g. ``znver4-avx512f-avx2-fma-avx-sse4.2-2c``."""
        features = "-".join(self.simd) or "scalar"
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.llvm_cpu}-{features}-{self.cores}c")

    def has(self, feature: str) -> bool:
        return feature in self.simd

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
