"""The search space: candidates per (primitive, geometry), read from
``tuning/search_space.yaml`` and pruned by legality."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..geometry import ConvGeometry
from ..heuristic import fit, rule
from ..schedule import LOOP_ORDERS, Schedule, direct_schedule, illegal_reason

SPACE_FILE = Path(__file__).resolve().parent.parent.parent / "tuning" / "search_space.yaml"


def load_space(path=SPACE_FILE) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def candidates(primitive: str, g: ConvGeometry, itemsize: int, space: dict) -> list[Schedule]:
    """The default rule's schedule first, then every other legal schedule of the space."""
    found = [rule(primitive, g, itemsize)]
    base = direct_schedule(primitive, g, itemsize)
    for order in space.get("direct", {}).get("loop_order", []):
        found.append(fit(Schedule(loop_order=order, channel_block=base.channel_block),
                         primitive, g, itemsize))
    tiled = space.get("tiled", {})
    for tile in tiled.get("register_tile", {}).get(primitive, []):
        orders = tiled.get("loop_order", [])
        if primitive == "backward_filter":
            # Row by row through every tile of a task beat tile by tile through every row
            # in all 15 layer × tile pairs measured (1.1-2x): the other order is not timed.
            orders = [order for order in orders if order == "pixel_tiles_outer"]
        for order in orders:
            found.append(fit(Schedule(algorithm="tiled", loop_order=order,
                                      register_tile=tuple(tile)), primitive, g, itemsize))
    gemm = space.get("gemm") or []
    for order in LOOP_ORDERS["gemm"] if gemm is True else gemm:
        found.append(Schedule(algorithm="gemm", loop_order=order))
    unique = list(dict.fromkeys(found))
    return [s for s in unique if illegal_reason(primitive, g, s, itemsize) is None]


def cuda_candidates(primitive: str, g: ConvGeometry, itemsize: int, space: dict) -> list:
    """The default CUDA schedule first, then every tile × block_k of the space's ``cuda``
    section (and for backward-filter each split_k × reduction of the default tile), legal
    by shared memory and threads. Resource pruning (spills) is the tuner's."""
    from ..cuda.schedule import CudaSchedule, default_schedule, split_for
    from ..cuda.schedule import illegal_reason as cuda_illegal_reason

    section = space.get("cuda", {})
    default = default_schedule(primitive, g, itemsize)
    found = [default]
    for block_m, block_n, thread_m, thread_n in section.get("tiles", []):
        for block_k in section.get("block_k", [8]):
            block, thread = (block_m, block_n), (thread_m, thread_n)
            found.append(CudaSchedule(block, thread, block_k, split_for(
                primitive, g, block, thread, block_k, itemsize)))
    if primitive == "backward_filter":
        for split_k in section.get("split_k", []):
            for reduction in section.get("reduction", ["two_pass"]):
                found.append(CudaSchedule(default.block_tile, default.thread_tile,
                                          default.block_k, split_k, reduction))
    unique = list(dict.fromkeys(found))
    return [s for s in unique if cuda_illegal_reason(primitive, g, s, itemsize) is None]
