"""Which schedule a call runs, remembered: the part every backend's ``choose`` shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import configs

#: Remembered choices per memo before it is emptied: a stream of distinct shapes must not
#: grow memory without bound.
MEMO_LIMIT = 4096


@dataclass(frozen=True)
class Choice:
    """A schedule and where it came from (``tuned: <file>``, ``nearest tuned: ...``,
    ``default heuristic``)."""

    schedule: object
    source: str


def remembered(memo: dict, key, device: str, compute: Callable[[], Choice]) -> Choice:
    """``compute()``, kept in ``memo`` under ``key`` until a config file of ``device``
    changes."""
    signature = configs.files_signature(device)
    found = memo.get(key)
    if found is not None and found[0] == signature:
        return found[1]
    if len(memo) > MEMO_LIMIT:
        memo.clear()
    choice = compute()
    memo[key] = (signature, choice)
    return choice
