"""CPU backend: ``@njit(parallel=True)`` loop-nest kernels over NHWC / HWIO arrays.

- :mod:`.families`: the registry of kernel families (:mod:`.direct`, :mod:`.tiled`,
  :mod:`.gemm`) and :func:`.families.run`, which runs one primitive under a schedule.
- :mod:`.heuristic`: which schedule a call runs (tuned, nearest tuned, :mod:`.rule`).
- Shared by the families: :mod:`.tasks` (task-split arithmetic), :mod:`.layout` (padding,
  filter packing), :mod:`.partials` (split reductions), :mod:`.codegen` (generated
  kernels), :mod:`.jit` (compile options, parallel/serial twins), :mod:`.disk_cache`.
- :mod:`.bias`: the bias gradient.
"""
