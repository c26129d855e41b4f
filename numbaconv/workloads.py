"""Workload files: YAML lists of convolution layers to tune or benchmark.

Each entry is a mapping with keys ``name, N, H, W, C, K, R, S, strides, padding,
dilations`` (input NHWC, filter HWIO); ``strides``/``dilations`` are an int or ``[h, w]``,
``padding`` is ``SAME``, ``VALID`` or ``[[top, bottom], [left, right]]``. Optional
``groups`` (default 1) dividing C and K: a grouped layer, its filter R×S×(C/groups)×K; a
depthwise layer has ``groups: C`` and K = C × the channel multiplier.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .geometry import ConvGeometry, conv_geometry

KEYS = ("name", "N", "H", "W", "C", "K", "R", "S", "strides", "padding", "dilations")
OPTIONAL_KEYS = ("groups",)
WORKLOAD_DIR = Path(__file__).resolve().parent.parent / "tuning" / "workloads"


class WorkloadError(ValueError):
    """A workload file that cannot be used; the message names the entry and key."""


@dataclass(frozen=True)
class Layer:
    name: str
    geometry: ConvGeometry


def _positive_int(value, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WorkloadError(f"{where} must be an int, got {value!r}")
    if value < minimum:
        raise WorkloadError(f"{where} must be >= {minimum}, got {value}")
    return value


def _pair(value, where: str) -> tuple[int, int]:
    if isinstance(value, list) and len(value) == 2:
        return (_positive_int(value[0], where), _positive_int(value[1], where))
    return (_positive_int(value, where),) * 2


def _padding(value, where: str):
    if value in ("SAME", "VALID"):
        return value
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(p, list) and len(p) == 2 for p in value)):
        return tuple(tuple(_positive_int(v, where, minimum=0) for v in p) for p in value)
    raise WorkloadError(f"{where} must be SAME, VALID or [[top, bottom], [left, right]], "
                        f"got {value!r}")


def parse_layer(entry, index: int, source: str) -> Layer:
    """One workload entry -> Layer, or a WorkloadError naming the entry and the key."""
    label = f"{source}: entry {index}"
    if not isinstance(entry, dict):
        raise WorkloadError(f"{label} must be a mapping with keys {', '.join(KEYS)}, "
                            f"got {type(entry).__name__}")
    if isinstance(entry.get("name"), str):
        label += f" ({entry['name']})"
    for key in KEYS:
        if key not in entry:
            raise WorkloadError(f"{label}: missing key {key!r}")
    unknown = sorted(set(entry) - set(KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise WorkloadError(f"{label}: unknown key {unknown[0]!r}")
    if not isinstance(entry["name"], str) or not entry["name"]:
        raise WorkloadError(f"{label}: key 'name' must be a non-empty string")
    sizes = {key: _positive_int(entry[key], f"{label}: key {key!r}") for key in "NHWCKRS"}
    strides = _pair(entry["strides"], f"{label}: key 'strides'")
    dilations = _pair(entry["dilations"], f"{label}: key 'dilations'")
    padding = _padding(entry["padding"], f"{label}: key 'padding'")
    groups = _positive_int(entry.get("groups", 1), f"{label}: key 'groups'")
    if sizes["C"] % groups or sizes["K"] % groups:
        raise WorkloadError(f"{label}: key 'groups' ({groups}) must divide C ({sizes['C']}) "
                            f"and K ({sizes['K']})")
    g = conv_geometry((sizes["N"], sizes["H"], sizes["W"], sizes["C"]),
                      (sizes["R"], sizes["S"], sizes["C"] // groups, sizes["K"]), strides,
                      dilations, padding)
    if g.out_height == 0 or g.out_width == 0:
        raise WorkloadError(f"{label}: impossible geometry, the filter (R, S) = "
                            f"({sizes['R']}, {sizes['S']}) with dilations {dilations} does not "
                            f"fit the input (H, W) = ({sizes['H']}, {sizes['W']}) with padding "
                            f"{entry['padding']!r}")
    return Layer(entry["name"], g)


def load_workload(path) -> list[Layer]:
    """Every layer of a workload file; the whole file is rejected if one entry is bad."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise WorkloadError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(data, list) or not data:
        raise WorkloadError(f"{path}: must be a non-empty YAML list of layer mappings")
    return [parse_layer(entry, index, str(path)) for index, entry in enumerate(data)]
