"""TensorFlow-style argument handling: every check runs here, before any kernel, and every
error names the argument, what was expected and what came."""

from __future__ import annotations

import functools
import numbers
import operator

import numpy as np

from .cuda.runtime import as_device_array, is_device_array
from .geometry import Padding

DATA_FORMATS = ("NHWC", "NCHW")
#: Storage types computed in float32 and rounded once (bfloat16: ``ml_dtypes.bfloat16``,
#: recognised by name so that ml_dtypes is never imported here).
HALF_DTYPES = ("float16", "bfloat16")
#: What every conv op takes; :data:`INTEGER_OPS_DTYPES` adds int32 (exact, in int64).
FLOAT_NAMES = ("float32", "float64") + HALF_DTYPES
INTEGER_OPS_DTYPES = FLOAT_NAMES + ("int32",)


@functools.lru_cache(maxsize=None)
def dtype_name(dtype: np.dtype) -> str:
    """``dtype.name``, remembered: NumPy builds the string anew on each access, a few
    microseconds of every call's checks."""
    return np.dtype(dtype).name


def is_half(dtype) -> bool:
    """Whether ``dtype`` is a half type (:data:`HALF_DTYPES`)."""
    return dtype_name(dtype) in HALF_DTYPES


@functools.lru_cache(maxsize=None)
def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype the kernels run in for arrays of ``dtype``: float32 for the half types,
    int64 for int32 (its sums wrap modulo 2**32 exactly as int32's do once cast back)."""
    if is_half(dtype):
        return np.dtype(np.float32)
    if dtype == np.int32:
        return np.dtype(np.int64)
    return dtype


def pick_alias(value, alias, name: str, alias_name: str, required: bool = True):
    """The TF2 keyword ``name`` or its TF1 spelling ``alias_name``, never both."""
    if value is not None and alias is not None:
        raise TypeError(f"got both {name}= and its alias {alias_name}=; pass only one")
    chosen = value if value is not None else alias
    return require(chosen, name) if required else chosen


def require(value, name: str):
    """``value``, or a TypeError naming the missing argument."""
    if value is None:
        raise TypeError(f"missing required argument {name}")
    return value


def check_data_format(data_format) -> str:
    if not isinstance(data_format, str):
        raise TypeError(f"data_format must be a string, one of {DATA_FORMATS}, "
                        f"got {type(data_format).__name__}")
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}")
    return data_format


def _as_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must hold ints, got {value!r} ({type(value).__name__})")
    return int(value)


def _int_list(value, name: str) -> list[int]:
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got an array of shape {value.shape}")
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_as_int(v, name) for v in value]
    raise TypeError(f"{name} must be a list or tuple of ints, got {type(value).__name__}")


def spatial_pair(value, name: str, data_format: str, default: int | None = None) -> tuple[int, int]:
    """``strides`` / ``dilations``: an int, or a list of 1, 2 or 4 ints (4: in
    ``data_format`` order with batch and channel entries 1) -> ``(h, w)``, each >= 1."""
    if value is None:
        if default is None:
            raise TypeError(f"missing required argument {name}")
        return (default, default)
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        values = [int(value)]
    else:
        values = _int_list(value, name)
    if len(values) == 1:
        pair = (values[0], values[0])
    elif len(values) == 2:
        pair = (values[0], values[1])
    elif len(values) == 4:
        h, w, batch, channel = ((1, 2, 0, 3) if data_format == "NHWC" else (2, 3, 0, 1))
        if values[batch] != 1 or values[channel] != 1:
            raise ValueError(f"{name} must be 1 on the batch and channel dimensions, got "
                             f"{values} ({data_format})")
        pair = (values[h], values[w])
    else:
        raise ValueError(f"{name} must be an int or a list of 1, 2 or 4 ints, got {values}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be >= 1, got {values}")
    return pair


def check_padding(padding, data_format: str) -> Padding:
    """``"SAME"``, ``"VALID"``, or explicit ``[[0, 0], [top, bottom], [left, right], [0, 0]]``
    in ``data_format`` order -> ``"SAME"``, ``"VALID"`` or ``((top, bottom), (left, right))``."""
    if padding is None:
        raise TypeError("missing required argument padding")
    if isinstance(padding, str):
        if padding in ("SAME", "VALID"):
            return padding
        hint = f" (did you mean {padding.upper()!r}?)" if padding.upper() in ("SAME", "VALID") else ""
        raise ValueError(f"padding must be 'SAME', 'VALID' or a list of 4 [before, after] pairs, "
                         f"got {padding!r}{hint}")
    if isinstance(padding, np.ndarray):
        padding = padding.tolist()
    if not isinstance(padding, (list, tuple)):
        raise TypeError(f"padding must be 'SAME', 'VALID' or a list of 4 [before, after] pairs, "
                        f"got {type(padding).__name__}")
    if len(padding) != 4 or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in padding):
        raise ValueError(f"explicit padding must be 4 [before, after] pairs in {data_format} "
                         f"order, got {padding!r}")
    pairs = [tuple(_as_int(v, "padding") for v in p) for p in padding]
    if any(v < 0 for p in pairs for v in p):
        raise ValueError(f"explicit padding must be >= 0, got {padding!r}")
    h, w, batch, channel = ((1, 2, 0, 3) if data_format == "NHWC" else (2, 3, 0, 1))
    if pairs[batch] != (0, 0) or pairs[channel] != (0, 0):
        raise ValueError(f"explicit padding must be [0, 0] on the batch and channel dimensions, "
                         f"got {padding!r} ({data_format})")
    return (pairs[h], pairs[w])


def as_array(value, name: str):
    """A NumPy view of ``value``, or for a GPU array (``__cuda_array_interface__``) a numba
    device array viewing it: never a copy (we only read it)."""
    if is_device_array(value):
        try:
            return as_device_array(value)
        except RuntimeError as error:
            raise RuntimeError(f"{name} is a CUDA device array but {error}") from error
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "__array__") and not isinstance(value, (str, bytes)):
        return np.asarray(value)
    raise TypeError(f"{name} must be a NumPy array (or an object with __array__), "
                    f"got {type(value).__name__}")


def check_rank(array: np.ndarray, name: str, rank: int, what: str):
    if array.ndim != rank:
        raise ValueError(f"{name} must be {rank}-D {what}, got shape {array.shape}")


def check_dtypes(op: str, allowed, /, **arrays: np.ndarray) -> np.dtype:
    """All of one dtype among ``allowed`` (names) for ``op``; returns it."""
    for name, array in arrays.items():
        if dtype_name(array.dtype) not in allowed:
            raise TypeError(f"{name} must be one of {', '.join(allowed)} for {op}, "
                            f"got {array.dtype}")
    dtypes = {name: array.dtype for name, array in arrays.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items())
        raise TypeError(f"dtypes must match, got {listed}")
    return next(iter(dtypes.values()))


def shape_arg(value, name: str, lengths=(4,)) -> tuple[int, ...]:
    """A shape given as a list, tuple or 1-D integer array of non-negative ints."""
    if isinstance(value, np.ndarray) and value.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold ints, got an array of {value.dtype}")
    values = _int_list(value, name)
    if len(values) not in lengths:
        expected = " or ".join(str(n) for n in lengths)
        raise ValueError(f"{name} must have {expected} entries, got {values}")
    if any(v < 0 for v in values):
        raise ValueError(f"{name} must be non-negative, got {values}")
    return tuple(values)


def is_shape(value) -> bool:
    """True for a list/tuple of ints or a 1-D integer array: a shape, not a tensor."""
    if isinstance(value, np.ndarray):
        return value.ndim == 1 and value.dtype.kind in "iu"
    if isinstance(value, (list, tuple)):
        try:
            [operator.index(v) for v in value]
        except TypeError:
            return False
        return True
    return False


def to_nhwc_shape(shape, data_format: str) -> tuple[int, int, int, int]:
    if data_format == "NHWC":
        return tuple(shape)
    n, c, h, w = shape
    return (n, h, w, c)


def from_nhwc_shape(shape, data_format: str) -> tuple[int, int, int, int]:
    if data_format == "NHWC":
        return tuple(shape)
    n, h, w, c = shape
    return (n, c, h, w)


def from_nhwc(array: np.ndarray, data_format: str) -> np.ndarray:
    """A fresh C-contiguous array in ``data_format`` layout."""
    if data_format == "NCHW":
        return np.ascontiguousarray(array.transpose(0, 3, 1, 2))
    return array
