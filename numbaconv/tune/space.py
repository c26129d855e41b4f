"""The search space: ``tuning/search_space.yaml``, one section per backend and in it one per
kernel family (its knobs' values), read by each family's ``candidates``."""

from __future__ import annotations

from pathlib import Path

import yaml

SPACE_FILE = Path(__file__).resolve().parent.parent.parent / "tuning" / "search_space.yaml"


def load_space(path=SPACE_FILE) -> dict:
    """``{"cpu": {family: section}, "cuda": {family: section}}``. A file in the earlier
    form (the CPU families at the top, ``gemm`` a list of loop orders, ``cuda`` the
    implicit GEMM's section) is read as its equivalent."""
    with open(path) as handle:
        data = yaml.safe_load(handle) or {}
    if "cpu" in data or not any(name in data for name in ("direct", "tiled", "gemm")):
        return data
    cpu = {name: data[name] for name in ("direct", "tiled") if name in data}
    if "gemm" in data:
        orders = data["gemm"]
        orders = ["im2col", "im2col_tiled"] if orders is True else orders or []
        cpu["gemm"] = {"matmul": [{"im2col": "blas", "im2col_tiled": "tiled"}.get(o, o)
                                  for o in orders]}
    return {"cpu": cpu, "cuda": {"implicit_gemm": data.get("cuda", {})}}
