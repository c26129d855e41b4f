"""Which CUDA schedule a call runs: the tuned one for this GPU, else the default rule
(:func:`numbaconv.cuda.schedule.default_schedule`)."""

from __future__ import annotations

from .. import configs
from ..choice import Choice, remembered
from ..geometry import ConvGeometry
from .families import CUDA
from .schedule import default_schedule

_choices: dict = {}


def choose(primitive: str, g: ConvGeometry, dtype: str, itemsize: int) -> Choice:
    """The schedule for one call; remembered until a config file changes."""
    return remembered(_choices, (primitive, g, dtype, itemsize), "cuda",
                      lambda: _choose(primitive, g, dtype, itemsize))


def _choose(primitive: str, g: ConvGeometry, dtype: str, itemsize: int) -> Choice:
    tuned = configs.lookup(primitive, dtype, g, device="cuda")
    if tuned is not None and CUDA.illegal_reason(primitive, g, tuned.schedule, itemsize) is None:
        return Choice(tuned.schedule, f"tuned: {tuned.path}")
    return Choice(default_schedule(primitive, g, itemsize), "default heuristic")
