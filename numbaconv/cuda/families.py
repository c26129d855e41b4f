"""The CUDA kernel families, by algorithm name: the implicit GEMM (knobs and rules:
:mod:`numbaconv.cuda.schedule`; launch: :mod:`numbaconv.cuda.launch`). Entries written
before schedules named their family are implicit-GEMM ones."""

from ..family import Family, Registry
from . import launch, schedule

IMPLICIT_GEMM = Family("implicit_gemm", schedule.CudaSchedule, schedule.candidates,
                       schedule.illegal_reason, schedule.workspace_bytes, schedule.fit,
                       launch.run_family)

CUDA = Registry(IMPLICIT_GEMM, default_algorithm="implicit_gemm")
