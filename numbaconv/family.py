"""What a kernel family is, and the registry that maps algorithm names to families.

A family (CPU: ``direct``, ``tiled``, ``gemm``, ``depthwise``, ``winograd``; CUDA:
``implicit_gemm``) is one module or package that fills in a :class:`Family`: its own knobs
dataclass and five functions over ``(primitive, geometry, schedule)``. Nothing outside the
family knows its knobs: the tuner, the configs, the heuristic and the ops reach them
through the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .geometry import ConvGeometry
from .primitives import PRIMITIVES
from .primitives import primitive as primitive_named
from .schedule import Schedule, schedule_from_dict


@dataclass(frozen=True)
class Family:
    """One kernel family's interface.

    - ``schedule_type``: the frozen dataclass of the family's knobs (a :class:`Schedule`).
    - ``candidates(primitive, geometry, itemsize, section, machine)``: the schedules worth
      timing, from the family's section of the search space (``tuning/search_space.yaml``);
      the registry drops the illegal ones.
    - ``illegal_reason(primitive, geometry, schedule, itemsize)``: why the schedule cannot
      run there, or None (the workspace cap is the registry's check).
    - ``workspace_bytes(primitive, geometry, schedule, itemsize)``: what a call allocates
      beyond its operands and result.
    - ``fit(schedule, primitive, geometry, itemsize)``: the schedule with its task split
      redone for ``geometry`` (a tuned schedule carried over to a neighbouring shape).
    - ``run(primitive, operands, geometry, schedule)``: the result, a fresh array.
    - ``prepare(primitive, geometry, schedule, dtype)`` (optional): ``run`` as a function
      of the two operands, with what the geometry alone fixes done once (the ops keep it
      for calls of the same shapes); None: the registry wraps ``run``.
    - ``half_storage(primitive, geometry, schedule, storage)`` (optional): the tensors
      (of :data:`numbaconv.primitives.TENSORS`, operands and result) that ``prepare(...,
      storage=storage)`` takes and returns as the bits (uint16) of the half type
      ``storage``, converting them itself; empty: none. None: never (the ops convert all
      of them to ``dtype`` and back).
    """

    name: str
    schedule_type: type
    candidates: Callable
    illegal_reason: Callable
    workspace_bytes: Callable
    fit: Callable
    run: Callable
    prepare: Callable | None = None
    half_storage: Callable | None = None


def run_per_primitive(forward: Callable, backward_data: Callable,
                      backward_filter: Callable) -> Callable:
    """A family's ``run`` from one function per primitive, each called as
    ``function(first_operand, second_operand, geometry, schedule)``."""
    runs = {"forward": forward, "backward_data": backward_data,
            "backward_filter": backward_filter}

    def run(primitive: str, operands, g: ConvGeometry, schedule: Schedule):
        return runs[primitive](*operands, g, schedule)

    return run


def run_prepared(prepare: Callable) -> Callable:
    """A family's ``run`` from its ``prepare``."""

    def run(primitive: str, operands, g: ConvGeometry, schedule: Schedule):
        return prepare(primitive, g, schedule, operands[0].dtype)(*operands)

    return run


class Registry:
    """The families of one backend, by algorithm name (fixed at construction)."""

    def __init__(self, *families: Family, workspace_cap: Callable[[], int] | None = None,
                 default_algorithm: str | None = None):
        """``workspace_cap()``: the bytes of workspace a call may have (read at each check),
        or None for no cap; ``default_algorithm``: the family of YAML entries that name none."""
        self._families = {family.name: family for family in families}
        self.workspace_cap = workspace_cap
        self.default_algorithm = default_algorithm

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._families)

    def __iter__(self):
        return iter(self._families.values())

    def family(self, name: str) -> Family:
        found = self._families.get(name)
        if found is None:
            raise ValueError(f"algorithm must be one of {self.names}, got {name!r}")
        return found

    def family_of(self, schedule: Schedule) -> Family:
        family = self.family(schedule.algorithm)
        if not isinstance(schedule, family.schedule_type):
            raise TypeError(f"a {family.name} schedule must be a {family.schedule_type.__name__}, "
                            f"got {type(schedule).__name__}")
        return family

    def parse(self, data: dict) -> Schedule:
        """A schedule from its YAML form (entries without ``algorithm``: the default's)."""
        return schedule_from_dict(data, {f.name: f.schedule_type for f in self},
                                  self.default_algorithm)

    def workspace_bytes(self, primitive: str, g: ConvGeometry, schedule: Schedule,
                        itemsize: int) -> int:
        primitive_named(primitive)
        return self.family_of(schedule).workspace_bytes(primitive, g, schedule, itemsize)

    def illegal_reason(self, primitive: str, g: ConvGeometry, schedule: Schedule,
                       itemsize: int = 4) -> str | None:
        """Why ``schedule`` cannot run ``primitive`` on ``g``, or None when it can."""
        if self.workspace_cap is not None:
            needed = self.workspace_bytes(primitive, g, schedule, itemsize)
            cap = self.workspace_cap()
            if needed > cap:
                return (f"needs {needed / 2**20:.0f} MiB of workspace, over the "
                        f"{cap / 2**20:.0f} MiB cap")
        return self.family_of(schedule).illegal_reason(primitive, g, schedule, itemsize)

    def fit(self, schedule: Schedule, primitive: str, g: ConvGeometry, itemsize: int) -> Schedule:
        return self.family_of(schedule).fit(schedule, primitive, g, itemsize)

    def candidates(self, primitive: str, g: ConvGeometry, itemsize: int, space: dict,
                   machine) -> list[Schedule]:
        """Every family's legal candidates, in registry order, each once."""
        found = []
        for family in self:
            section = space.get(family.name)
            if section:
                found += family.candidates(primitive, g, itemsize, section, machine)
        return [s for s in dict.fromkeys(found)
                if self.illegal_reason(primitive, g, s, itemsize) is None]

    def half_storage(self, primitive: str, g: ConvGeometry, schedule: Schedule,
                     storage: str) -> tuple[str, ...]:
        """The tensors the family of ``schedule`` takes and returns as the half type
        ``storage``'s bits (:class:`Family`)."""
        family = self.family_of(schedule)
        if family.half_storage is None:
            return ()
        return family.half_storage(primitive, g, schedule, storage)

    def prepare(self, primitive: str, g: ConvGeometry, schedule: Schedule,
                dtype, **options) -> Callable:
        """The family's ``prepare`` (``options``: the family's own), or its ``run`` waiting
        for the operands."""
        primitive_named(primitive)
        family = self.family_of(schedule)
        if family.prepare is not None:
            return family.prepare(primitive, g, schedule, dtype, **options)
        return lambda first, second: family.run(primitive, (first, second), g, schedule)

    def run(self, primitive: str, operands, g: ConvGeometry, schedule: Schedule, **options):
        """The family's ``run`` (``options``: a backend's own, e.g. CUDA's stream)."""
        if primitive not in PRIMITIVES:
            primitive_named(primitive)  # raises, naming the primitives
        return self.family_of(schedule).run(primitive, operands, g, schedule, **options)
