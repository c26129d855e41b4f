"""Which CUDA schedule a call runs: the tuned one for this GPU, else the default rule
(:func:`numbaconv.cuda.schedule.default_schedule`)."""

from __future__ import annotations

from .. import configs
from ..geometry import ConvGeometry
from ..heuristic import Choice
from .schedule import default_schedule, illegal_reason

_choices: dict = {}


def choose(primitive: str, g: ConvGeometry, dtype: str, itemsize: int) -> Choice:
    """The schedule for one call; remembered until a config file changes."""
    key = (primitive, g, dtype)
    signature = configs.files_signature("cuda")
    remembered = _choices.get(key)
    if remembered is not None and remembered[0] == signature:
        return remembered[1]
    if len(_choices) > 4096:  # a stream of distinct shapes must not grow memory
        _choices.clear()
    tuned = configs.lookup(primitive, dtype, g, device="cuda")
    if tuned is not None and illegal_reason(primitive, g, tuned.schedule, itemsize) is None:
        choice = Choice(tuned.schedule, f"tuned: {tuned.path}")
    else:
        choice = Choice(default_schedule(primitive, g, itemsize), "default heuristic")
    _choices[key] = (signature, choice)
    return choice
