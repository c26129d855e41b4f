"""Schedules: the knobs of one kernel family, as plain data.

A schedule never changes *what* a kernel computes, only how. Each family (see
:mod:`numbaconv.cpu.families` and :mod:`numbaconv.cuda.families`) defines a frozen
dataclass of its own knobs deriving from :class:`Schedule`, which gives every one the same
YAML form (``{algorithm: <family>, <knob>: <value>, ...}``), the same text and the same
checks. The family's ``algorithm`` name is a class attribute, not a field.
"""

from __future__ import annotations

from dataclasses import fields
from typing import ClassVar


class Schedule:
    """Base of every family's knobs dataclass."""

    algorithm: ClassVar[str]
    #: The knobs that only split the work into tasks (the family's ``fit`` derives them per
    #: geometry): schedules that differ only there run the same compiled kernels.
    TASK_SPLIT: ClassVar[tuple] = ()

    @property
    def calls_for_every_path(self) -> int:
        """Calls on the same operands that between them run every path a call of this
        schedule can take: a cold start's build runs them all (compiling every kernel)."""
        return 1

    def kernels_key(self) -> str:
        """The schedule without its task split: what decides the kernels it compiles."""
        return ", ".join(f"{key}={value}" for key, value in self.to_dict().items()
                         if key not in self.TASK_SPLIT)

    def to_dict(self) -> dict:
        """Plain data for YAML: the family's name and each knob (tuples as lists, a schedule
        as its own dict); a knob at None is left out, as entries written before it had it."""
        data = {"algorithm": self.algorithm}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None:
                continue
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Schedule):
                value = value.to_dict()
            data[item.name] = value
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Schedule":
        """The schedule of ``data`` (knobs only, or with ``algorithm``): entries written by
        older versions go through :meth:`migrate`; knobs the family no longer has are
        ignored."""
        data = cls.migrate({name: value for name, value in data.items() if name != "algorithm"})
        known = {item.name for item in fields(cls)}
        return cls(**{name: tuple(value) if isinstance(value, list) else value
                      for name, value in data.items() if name in known})

    @classmethod
    def migrate(cls, data: dict) -> dict:
        """Knobs as an older version wrote them -> as this version names them."""
        return data

    def __str__(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.to_dict().items())

    # --- checks for __post_init__ ---------------------------------------------------------

    def _require_positive(self, *names: str):
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    def _require_pair(self, name: str):
        """A pair of positive ints, stored as a tuple."""
        value = tuple(getattr(self, name))
        if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                      for v in value):
            raise ValueError(f"{name} must be two positive ints, got {getattr(self, name)!r}")
        object.__setattr__(self, name, value)

    def _require_one_of(self, name: str, choices: tuple):
        value = getattr(self, name)
        if value not in choices:
            raise ValueError(f"{name} of a {self.algorithm} schedule must be one of {choices}, "
                             f"got {value!r}")


def schedule_from_dict(data: dict, schedule_types: dict, default: str | None = None) -> Schedule:
    """Parse ``data`` with the knobs class its ``algorithm`` names (``default`` when it
    names none) out of ``schedule_types`` (algorithm -> class); an unknown name raises."""
    name = data.get("algorithm", default)
    if name not in schedule_types:
        raise ValueError(f"algorithm must be one of {tuple(schedule_types)}, got {name!r}")
    # A knob holding another schedule (Winograd's ``otherwise``) is parsed the same way.
    data = {key: schedule_from_dict(value, schedule_types, default)
            if isinstance(value, dict) and "algorithm" in value else value
            for key, value in data.items()}
    return schedule_types[name].from_dict(data)
