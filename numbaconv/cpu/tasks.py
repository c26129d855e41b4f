"""How the CPU families cut a call into parallel tasks: the arithmetic they share.

Tasks are spread over Numba's threads by ``prange``. Their number is a constant, not the
thread count, so that a result (whose summation order can depend on the split) does not
depend on the machine.
"""

#: Tasks wanted per call: enough to balance a few cores, few enough to keep blocks wide.
TARGET_TASKS = 16


def channel_block_for(channels: int, row_tasks: int, multiple: int = 8) -> int:
    """Widest multiple of ``multiple`` that still gives about TARGET_TASKS tasks with
    ``row_tasks`` tasks per channel block."""
    blocks_wanted = max(1, -(-TARGET_TASKS // max(row_tasks, 1)))
    block = -(-channels // blocks_wanted)
    block = max(multiple, -(-block // multiple) * multiple)
    return min(block, max(channels, 1))


def groups_for(items: int, other_groups: int) -> int:
    """How many groups to cut ``items`` into so that, with ``other_groups`` groups along
    the other task axis, there are about TARGET_TASKS tasks (at least 1, at most ``items``)."""
    return max(1, min(items, -(-TARGET_TASKS // max(other_groups, 1))))
