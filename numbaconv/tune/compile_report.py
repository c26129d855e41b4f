"""``python -m numbaconv.tune --device cuda --compile-only``: every CUDA kernel of the search
space through NVVM and ptxas for sm_80 and sm_90, no GPU needed (see
:mod:`numbaconv.cuda.resources`). Prints one row per (op, dtype, schedule, target)."""

from __future__ import annotations

import sys
import time

TARGETS = ((8, 0), (9, 0))


def kernel_schedules(primitive: str, space: dict) -> list:
    """One schedule per distinct kernel of the space: tiles × block_k, and for
    backward-filter the atomic variant too (split_k itself does not change the kernel)."""
    from ..cuda.schedule import CudaSchedule

    section = space.get("cuda", {}).get("implicit_gemm", {})
    found = []
    for block_m, block_n, thread_m, thread_n in section.get("tiles", []):
        for block_k in section.get("block_k", [8]):
            tile = ((block_m, block_n), (thread_m, thread_n), block_k)
            found.append(CudaSchedule(*tile))
            if primitive == "backward_filter" and "atomic" in section.get("reduction", []):
                found.append(CudaSchedule(*tile, split_k=2, reduction="atomic"))
    return found


def _row(name: str, dtype: str, what: str, cc, found, verdict) -> str:
    return (f"{name:<16} {dtype:<8} {what:<58} {cc[0]}{cc[1]:<2} {found.registers:>5} "
            f"{found.stack_bytes:>6} {found.spill_stores:>5}/{found.spill_loads:<5} "
            f"{found.shared_bytes:>7} {found.blocks_per_sm:>6} {found.warps_per_sm:>5} "
            f"{found.occupancy(cc):>5.2f} {found.compile_seconds:>9.2f}  {verdict or 'ok'}")


def report(space: dict, primitives, dtypes, targets=TARGETS, out=sys.stdout) -> int:
    from ..cuda import resources
    from ..cuda.schedule import SHARED_BYTES_LIMIT

    reason = resources.unavailable_reason()
    if reason:
        print(f"error: cannot compile CUDA kernels here: {reason}", file=sys.stderr)
        return 2
    header = (f"{'op':<16} {'dtype':<8} {'schedule':<58} {'sm':>3} {'regs':>5} {'stack':>6} "
              f"{'spill st/ld':>11} {'smem B':>7} {'blocks':>6} {'warps':>5} {'occ':>5} "
              f"{'compile s':>9}  verdict")
    print(f"ptxas: {resources.ptxas()}\n{header}\n{'-' * len(header)}", file=out, flush=True)
    start = time.perf_counter()
    rows = bad = 0
    for primitive in primitives:
        for dtype in dtypes:
            for schedule in kernel_schedules(primitive, space):
                for cc in targets:
                    found = resources.tile_resources(primitive, schedule, dtype, cc)
                    verdict = resources.rejection(found, cc)
                    if found.shared_bytes > SHARED_BYTES_LIMIT:
                        verdict = "over 48 KB static shared memory"
                    bad += verdict is not None
                    rows += 1
                    print(_row(primitive, dtype, str(schedule), cc, found, verdict), file=out,
                          flush=True)
    for dtype in dtypes:
        for cc in targets:
            for name, found in resources.helper_resources(dtype, cc).items():
                verdict = resources.rejection(found, cc)
                bad += verdict is not None
                rows += 1
                print(_row(name, dtype, "(helper kernel)", cc, found, verdict), file=out,
                      flush=True)
    print(f"{rows} kernels compiled in {time.perf_counter() - start:.0f} s; {bad} would be "
          f"pruned by the tuner", file=out)
    return 0
