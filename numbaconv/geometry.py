"""Convolution geometry: the one place where padding and output sizes are computed.

Every op reduces to one :class:`ConvGeometry` of the *forward* convolution it belongs
to (``conv2d``'s input, filter and output), whatever tensor the op is given. Shapes
here are always NHWC for activations and HWIO for filters; layouts are handled by the
API layer before and after.

TensorFlow's rules (``GetWindowedOutputSizeVerbose``), with the effective filter size
``eff = (k - 1) * dilation + 1``:

- ``VALID``: ``out = (in - eff) // stride + 1``, no padding.
- ``SAME``: ``out = ceil(in / stride)``, total padding
  ``max((out - 1) * stride + eff - in, 0)``, the odd row/column at the bottom/right.
- explicit ``(before, after)``: ``out = (in + before + after - eff) // stride + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Tuple, Union

#: ``"SAME"``, ``"VALID"``, or explicit ``((top, bottom), (left, right))``.
Padding = Union[str, Tuple[Tuple[int, int], Tuple[int, int]]]


def _key(prefix: str, joiner: str = "", omit_default: bool = False) -> dict:
    """How a field is spelled in :func:`geometry_key`: consecutive fields of one ``prefix``
    share it, their values joined by ``joiner``. ``omit_default``: a field added after
    entries were tuned is left out at its default value, so those entries keep their keys."""
    return {"key": (prefix, joiner, omit_default)}


@dataclass(frozen=True)
class ConvGeometry:
    """A 2-D convolution ``out[n, oh, ow, k] = Σ_{r,s,c} x[n, ih, iw, g·Cg + c] · w[r, s, c, k]``
    with ``ih = oh·stride_h + r·dilation_h − pad_top`` and
    ``iw = ow·stride_w + s·dilation_w − pad_left`` (terms outside the input are zero);
    ``c`` runs over the ``Cg = in_channels / groups`` channels of output channel ``k``'s
    group ``g = k // (out_channels / groups)`` (one group: the dense convolution).

    Input ``[batch, in_height, in_width, in_channels]`` (NHWC), filter
    ``[filter_height, filter_width, in_channels / groups, out_channels]`` (HWIO), output
    ``[batch, out_height, out_width, out_channels]`` (NHWC).
    """

    batch: int = field(metadata=_key("N"))
    in_height: int = field(metadata=_key("H"))
    in_width: int = field(metadata=_key("W"))
    in_channels: int = field(metadata=_key("C"))
    out_channels: int = field(metadata=_key("K"))
    filter_height: int = field(metadata=_key("R"))
    filter_width: int = field(metadata=_key("S"))
    stride_h: int = field(default=1, metadata=_key("s", "x"))
    stride_w: int = field(default=1, metadata=_key("s", "x"))
    dilation_h: int = field(default=1, metadata=_key("d", "x"))
    dilation_w: int = field(default=1, metadata=_key("d", "x"))
    pad_top: int = field(default=0, metadata=_key("p", ","))
    pad_bottom: int = field(default=0, metadata=_key("p", ","))
    pad_left: int = field(default=0, metadata=_key("p", ","))
    pad_right: int = field(default=0, metadata=_key("p", ","))
    groups: int = field(default=1, metadata=_key("g", omit_default=True))

    @property
    def in_channels_per_group(self) -> int:
        """The filter's input channels: each group reads its own slice of the input."""
        return self.in_channels // self.groups

    @property
    def out_channels_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def is_depthwise(self) -> bool:
        """One input channel per group (``depthwise_conv2d``: groups = C, multiplier =
        K / C)."""
        return self.groups > 1 and self.in_channels_per_group == 1

    @property
    def out_height(self) -> int:
        return _out_size(self.in_height, self.filter_height, self.stride_h,
                         self.dilation_h, self.pad_top, self.pad_bottom)

    @property
    def out_width(self) -> int:
        return _out_size(self.in_width, self.filter_width, self.stride_w,
                         self.dilation_w, self.pad_left, self.pad_right)

    @property
    def effective_filter(self) -> tuple[int, int]:
        """(height, width) the dilated filter spans."""
        return ((self.filter_height - 1) * self.dilation_h + 1,
                (self.filter_width - 1) * self.dilation_w + 1)

    @property
    def is_one_by_one(self) -> bool:
        """A 1×1 filter without padding: the convolution is a matmul on a strided view."""
        return (self.filter_height == self.filter_width == 1
                and self.pad_top == self.pad_bottom == self.pad_left == self.pad_right == 0)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_height, self.in_width, self.in_channels)

    @property
    def filter_shape(self) -> tuple[int, int, int, int]:
        return (self.filter_height, self.filter_width, self.in_channels_per_group,
                self.out_channels)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_height, self.out_width, self.out_channels)

    @property
    def flops(self) -> int:
        """Multiply-adds × 2 of the forward convolution (padding taps included, as is usual)."""
        return (2 * self.batch * self.out_height * self.out_width * self.out_channels
                * self.filter_height * self.filter_width * self.in_channels_per_group)

    def describe(self) -> str:
        """One line for error messages and reports."""
        return (f"input {self.input_shape}, filter {self.filter_shape}, "
                f"strides ({self.stride_h}, {self.stride_w}), "
                f"dilations ({self.dilation_h}, {self.dilation_w}), "
                f"pads (top {self.pad_top}, bottom {self.pad_bottom}, "
                f"left {self.pad_left}, right {self.pad_right})"
                + (f", groups {self.groups}" if self.groups > 1 else ""))


def geometry_key(g: ConvGeometry) -> str:
    """The geometry as a config-cache key, derived from every field (each declares its
    spelling), e.g. ``N1-H56-W56-C64-K64-R3-S3-s1x1-d1x1-p1,1,1,1``."""
    groups: list[tuple[str, str, list]] = []
    for item in fields(g):
        prefix, joiner, omit_default = item.metadata["key"]
        value = getattr(g, item.name)
        if omit_default and value == item.default:
            continue
        if groups and groups[-1][0] == prefix:
            groups[-1][2].append(value)
        else:
            groups.append((prefix, joiner, [value]))
    return "-".join(prefix + joiner.join(str(v) for v in values)
                    for prefix, joiner, values in groups)


def _out_size(in_size: int, k: int, stride: int, dilation: int, before: int, after: int) -> int:
    effective = (k - 1) * dilation + 1
    padded = in_size + before + after
    if padded < effective:
        return 0
    return (padded - effective) // stride + 1


def padding_amounts(padding: Padding, in_size: int, k: int, stride: int, dilation: int,
                    axis: int) -> tuple[int, int]:
    """(before, after) padding of one spatial axis (``axis`` 0: height, 1: width)."""
    if padding == "VALID":
        return (0, 0)
    if padding == "SAME":
        effective = (k - 1) * dilation + 1
        out = -(-in_size // stride)
        total = max((out - 1) * stride + effective - in_size, 0)
        return (total // 2, total - total // 2)
    return tuple(padding[axis])  # explicit, validated by the caller


def groups_of(in_channels: int, filter_in_channels: int) -> int:
    """TensorFlow's group count: the input's channels over the filter's (1 when either is 0)."""
    if in_channels == 0 or filter_in_channels == 0:
        return 1
    return in_channels // filter_in_channels


def conv_geometry(input_shape, filter_shape, strides=(1, 1), dilations=(1, 1),
                  padding: Padding = "VALID") -> ConvGeometry:
    """The geometry of ``conv2d(input, filter)``: ``input_shape`` NHWC, ``filter_shape`` HWIO
    (its input channels a divisor of the input's: grouped), ``strides`` and ``dilations`` as
    ``(h, w)``. Does not validate: the API layer does."""
    batch, in_height, in_width, in_channels = (int(v) for v in input_shape)
    filter_height, filter_width, filter_in_channels, out_channels = (int(v) for v in filter_shape)
    stride_h, stride_w = strides
    dilation_h, dilation_w = dilations
    pad_top, pad_bottom = padding_amounts(padding, in_height, filter_height, stride_h,
                                          dilation_h, 0)
    pad_left, pad_right = padding_amounts(padding, in_width, filter_width, stride_w,
                                          dilation_w, 1)
    return ConvGeometry(batch, in_height, in_width, in_channels, out_channels,
                        filter_height, filter_width, stride_h, stride_w,
                        dilation_h, dilation_w, pad_top, pad_bottom, pad_left, pad_right,
                        groups_of(in_channels, filter_in_channels))
