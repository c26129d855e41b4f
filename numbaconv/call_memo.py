"""Op calls remembered by what their arguments fix, so that a call like an earlier one
goes straight to its kernels.

Everything an op does before its kernels — the checks, the geometry, the schedule's
choice, the kernel's bound arguments — depends on its arguments' types and values, and on
its arrays' shapes and dtypes only. The :func:`key` of a call is exactly that; a call with
the key of an earlier one that passed the checks passes them too, and runs the earlier
call's prepared work on its own arrays (which argument each operand comes from is
remembered: :func:`slots`). Arguments the key cannot describe simply (array-likes that
are not NumPy arrays, 1-D arrays, whose values may be a shape, GPU arrays, NumPy scalars)
make a call take the full path every time.
"""

from __future__ import annotations

import operator

import numpy as np

#: Argument types that are their own key: no two values of them compare equal as
#: different arguments (unlike ``1``, ``1.0`` and ``True``, keyed with their type).
_SELF_KEYED = frozenset({int, str, type(None)})
_INTS = frozenset({int})


class _Unkeyed(Exception):
    """An argument the key does not describe."""


def _part(value):
    kind = type(value)
    if kind in _SELF_KEYED:
        return value
    if kind is np.ndarray:
        if value.ndim < 2:  # may be a shape (input_sizes as an array): its values matter
            raise _Unkeyed
        return (value.shape, value.dtype)
    if kind is tuple and _INTS.issuperset(map(type, value)):  # a shape, strides
        return value
    if kind is float or kind is bool:
        return (kind, value)
    if kind is list and _INTS.issuperset(map(type, value)):  # strides, dilations
        return (kind, tuple(value))
    if kind is list or kind is tuple:
        return (kind, tuple(map(_part, value)))
    raise _Unkeyed


def key(op: str, args: tuple, kwargs: dict) -> tuple | None:
    """What a call of ``op`` with these arguments depends on, or None when an argument is
    not described by its type, value, shape and dtype."""
    try:
        if kwargs:
            return (op, tuple(map(_part, args)), tuple(kwargs), tuple(map(_part, kwargs.values())))
        return (op, tuple(map(_part, args)))
    except _Unkeyed:
        return None


def slots(sources: tuple, args: tuple, kwargs: dict) -> tuple | None:
    """Where each of ``sources`` (the caller's arrays a call's operands come from) is among
    the arguments: a position or a keyword; None when one is not a NumPy array (a nested
    list, say), not an argument, or passed twice (which argument a later call's operand
    comes from would be ambiguous)."""
    found = []
    for source in sources:
        if type(source) is not np.ndarray:
            return None
        places = ([index for index, value in enumerate(args) if value is source]
                  + [name for name, value in kwargs.items() if value is source])
        if len(places) != 1:
            return None
        found.append(places[0])
    return tuple(found)


class Remembered:
    """An earlier call's prepared work (``prepared.run(operands)``), where its operands come
    from (:func:`slots`), the shapes they are viewed in (None: as passed), and the config
    files' signature its schedule was chosen under."""

    __slots__ = ("prepared", "signature", "_operands")

    def __init__(self, prepared, slots: tuple, shapes: tuple, signature: tuple):
        self.prepared, self.signature = prepared, signature
        if all(type(slot) is int for slot in slots) and shapes == (None,) * len(slots):
            pick = operator.itemgetter(*slots)  # the usual case: positional, as passed
            self._operands = lambda args, kwargs: pick(args)
        else:
            places = tuple(zip(slots, shapes))
            self._operands = lambda args, kwargs: [
                _viewed(args[slot] if type(slot) is int else kwargs[slot], shape)
                for slot, shape in places]

    def run(self, args: tuple, kwargs: dict):
        return self.prepared.run(self._operands(args, kwargs))


def _viewed(array: np.ndarray, shape):
    return array if shape is None else array.reshape(shape)
