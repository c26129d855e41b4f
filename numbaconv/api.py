"""The TensorFlow-compatible ops.

Each op turns its arguments into a :class:`Call` (which primitive, which geometry, which
operands), checking everything on the way, then runs it. Every op is one of three
primitives over the geometry of the forward convolution it belongs to:

=============================  ===================  =======================================
op                             primitive            its tensors in that geometry
=============================  ===================  =======================================
conv2d                         forward              input x, filters w -> output y
conv2d_backprop_input(_v2)     backward_data        dy, w -> dx (shape of x)
conv2d_transpose               backward_data        its ``input`` is dy, ``output_shape`` x's
conv2d_backprop_filter(_v2)    backward_filter      x, dy -> dw (shape of w)
=============================  ===================  =======================================
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field

import numpy as np

from .arguments import (FLOAT_NAMES, INTEGER_OPS_DTYPES, as_array, check_data_format,
                        check_dtypes, check_padding, check_rank, compute_dtype, dtype_name,
                        from_nhwc, from_nhwc_shape, is_half, is_shape, pick_alias, require,
                        shape_arg, spatial_pair, to_nhwc_shape)
from . import call_memo, configs
from .choice import MEMO_LIMIT, Choice
from .cpu import bias, cold_start, families, half
from .cpu.heuristic import choose
from .cpu.rule import calibrated_half_panels
from .cuda.runtime import is_device_array
from .geometry import ConvGeometry, Padding, conv_geometry
from .memory import check_result_fits
from .primitives import is_activation, primitive
from .threads import launched

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Call:
    """One op call, checked and reduced to a primitive: ``operands`` are the two arrays
    the primitive reads, as given (activations in ``data_format`` layout, filters HWIO;
    NumPy arrays or numba device arrays), ``device`` where it runs and ``sources`` the
    caller's objects (whose producers' CUDA stream the kernels follow)."""

    op: str
    primitive: str
    geometry: ConvGeometry
    dtype: np.dtype
    data_format: str
    operands: tuple
    device: str = "cpu"
    sources: tuple = field(default=(), compare=False)
    #: The filter's shape as the caller sees it, where it differs from the geometry's
    #: (a depthwise ``[R, S, C, M]`` is the grouped ``[R, S, 1, C·M]``).
    filter_shape: tuple | None = None
    #: ``conv2d``'s leading batch dimensions when its input had rank > 4 (flattened into
    #: the geometry's batch).
    batch_shape: tuple | None = None

    @functools.cached_property
    def compute_dtype(self) -> np.dtype:
        """What the kernels compute in: float32 for float16 / bfloat16, int64 for int32."""
        return compute_dtype(self.dtype)

    @functools.cached_property
    def result_shape(self) -> tuple:
        p = primitive(self.primitive)
        if not is_activation(p.result):
            return self.filter_shape or p.result_shape(self.geometry)
        shape = from_nhwc_shape(p.result_shape(self.geometry), self.data_format)
        return shape if self.batch_shape is None else self.batch_shape + shape[1:]

    def choice(self) -> Choice:
        """The schedule this call runs and where it comes from."""
        dtype = self.compute_dtype
        if self.device == "cuda":
            from .cuda.heuristic import choose as choose_cuda

            return choose_cuda(self.primitive, self.geometry, dtype_name(dtype), dtype.itemsize)
        if dtype.kind == "i":
            return Choice(families.integer_schedule(self.primitive, self.geometry),
                          "integer arithmetic: the direct kernels")
        chosen = choose(self.primitive, self.geometry, dtype_name(dtype), dtype.itemsize)
        if not is_half(self.dtype):
            return chosen
        storage = dtype_name(self.dtype)
        schedule = families.half_type_schedule(
            self.primitive, self.geometry, chosen.schedule, storage,
            calibrated_half_panels(configs.calibration(), storage))
        return chosen if schedule == chosen.schedule else Choice(
            schedule, f"{chosen.source}; packed panels for {storage}'s bits")

    def run(self, schedule=None):
        """The result: a NumPy array, or a numba device array when an operand was on the GPU."""
        if self.device == "cuda":
            check_result_fits(self.op, self.result_shape, self.dtype)
            return self._run_cuda(schedule or self.choice().schedule)
        return self.prepare(schedule).run_first([_host(operand) for operand in self.operands])

    def prepare(self, schedule=None) -> PreparedCall:
        """This CPU call's work but its operands, under ``schedule`` (by default the chosen
        one): ``prepare().run(operands)`` for operands like this call's."""
        check_result_fits(self.op, self.result_shape, self.dtype)
        if 0 in self.result_shape:
            return PreparedCall(self.result_shape, self.dtype)
        p = primitive(self.primitive)
        dtype = self.compute_dtype
        storage = dtype_name(self.dtype) if is_half(self.dtype) and all(
            operand.size for operand in self.operands) else None
        now = (cold_start.Now(schedule) if schedule is not None
               else cold_start.schedule_now(p.name, self.geometry, self.choice().schedule,
                                            dtype, storage))
        # Half-type tensors as their bits, where the schedule's run converts them itself.
        as_bits = families.CPU.half_storage(p.name, self.geometry, now.schedule,
                                            storage) if storage else ()
        kernels = (now.prepare(p.name, self.geometry, dtype, storage=storage)
                   if as_bits else now.prepare(p.name, self.geometry, dtype))
        layouts = tuple(_kernel_layout(tensor, operand.dtype, self.data_format, dtype,
                                       as_bits=tensor in as_bits)
                        for tensor, operand in zip(p.operands, self.operands))
        kernel_dtype = np.dtype(np.uint16) if p.result in as_bits else dtype
        return PreparedCall(self.result_shape, self.dtype, kernels, layouts,
                            self.data_format if is_activation(p.result) else "NHWC",
                            p.result_shape(self.geometry), kernel_dtype, now.waiting,
                            now.unmarked)

    def _run_cuda(self, schedule):
        if self.dtype.kind == "i":
            raise TypeError(f"{self.op}: {self.dtype} runs on the CPU only so far; pass NumPy "
                            f"arrays or device='cpu'")
        from .cuda import launch
        from .cuda.families import CUDA

        # Half types in float32: float16 device arrays cast on the GPU, host half arrays
        # (bfloat16 exists only on the host: numba has no such device dtype) before upload.
        compute_dtype = self.compute_dtype
        operands = tuple(half.to_float32(a) if not is_device_array(a) and is_half(a.dtype)
                         else a for a in self.operands)
        on_device = any(is_device_array(a) for a in self.operands)
        result_dtype = self.dtype if on_device else compute_dtype
        names = primitive(self.primitive).operands

        def compute(stream, *arrays):
            if 0 in self.result_shape:
                return launch.zeros(self.result_shape, result_dtype, stream)
            arrays = tuple(launch.cast(a, compute_dtype, stream, name) if a.dtype != compute_dtype
                           else a for a, name in zip(arrays, names))
            out = CUDA.run(self.primitive, arrays, self.geometry, schedule,
                           data_format=self.data_format, stream=stream)
            return out if out.dtype == result_dtype else launch.cast(out, result_dtype, stream,
                                                                     "result")

        out = _on_cuda(self.sources, operands, compute)
        if not on_device and out.dtype != self.dtype:
            out = _rounded(out, self.dtype)
        # Batch dimensions, a depthwise filter's [R, S, C, M]: views of the fresh result.
        return out if tuple(out.shape) == self.result_shape else out.reshape(self.result_shape)


class PreparedCall:
    """A CPU call's work but its operands (:meth:`Call.prepare`): the operands' layout
    conversions (``layouts``), the prepared kernels (``kernels(first, second)`` on
    C-contiguous NHWC / HWIO arrays; None for an empty result), and the result's layout
    (``data_format`` for an activation) and dtype. Every op call ends in :meth:`run`: its
    steps are chosen here, once, so that a call of a small layer pays only for its own."""

    __slots__ = ("result_shape", "dtype", "kernels", "layouts", "waiting", "_unmarked",
                 "_finish")

    def __init__(self, result_shape: tuple, dtype: np.dtype, kernels=None, layouts: tuple = (),
                 data_format: str = "NHWC", kernel_result: tuple = (), kernel_dtype=None,
                 waiting=None, unmarked: str | None = None):
        """``kernel_result``, ``kernel_dtype``: the shape (NHWC / HWIO) and dtype the
        kernels return (uint16 for a half type: its bits, rounded in the kernels);
        ``waiting``, ``unmarked``: as :class:`cold_start.Now` says."""
        self.result_shape, self.dtype = result_shape, dtype
        self.kernels, self.layouts = kernels, layouts
        self.waiting, self._unmarked = waiting, unmarked
        steps = []
        if data_format == "NCHW":
            steps.append(functools.partial(from_nhwc, data_format=data_format))
        if from_nhwc_shape(kernel_result, data_format) != result_shape:
            steps.append(lambda out: out.reshape(result_shape))  # batch dims, [R, S, C, M]
        if is_half(dtype) and kernel_dtype == np.uint16:
            steps.append(lambda out: out.view(dtype))
        elif kernel_dtype != dtype:
            steps.append(lambda out: _rounded(out, dtype))
        self._finish = tuple(steps)

    def current(self) -> bool:
        """False once the background build it waits for is done: prepare the call again."""
        return self.waiting is None or not self.waiting.done()

    def run_first(self, operands) -> np.ndarray:
        """:meth:`run`, then the mark that its kernels are built (the first run compiles
        them all)."""
        out = self.run(operands)
        if self._unmarked is not None:
            cold_start.mark_built(self._unmarked)
            self._unmarked = None
        return out

    def run(self, operands) -> np.ndarray:
        if self.kernels is None:
            return np.zeros(self.result_shape, dtype=self.dtype)
        (to_first, to_second), (first, second) = self.layouts, operands
        out = launched(self.kernels, to_first(first), to_second(second))
        for step in self._finish:
            out = step(out)
        return out


# --- shared checks ---------------------------------------------------------------------

def _rounded(result: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The computed result in the caller's dtype, rounded once (beyond a half type's range:
    ±Inf, as its own arithmetic would give; int64 -> int32 wraps as int32 sums do)."""
    if is_half(dtype):
        return half.from_float32(result, dtype)
    return result.astype(dtype)


def _check_device(device):
    if device is not None and device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES} or None, got {device!r}")


def _device_for(device, *arrays) -> str:
    """``device``, or by default where the arrays live: CUDA if any is a device array."""
    if device is None:
        device = "cuda" if any(is_device_array(a) for a in arrays) else "cpu"
    if device == "cuda":
        from .cuda.runtime import require

        require()
    return device


def _on_cuda(sources, operands, compute):
    """``compute(stream, *operands on the GPU)`` on the stream of ``sources``' producers:
    the device array it returns when an operand was a device array, else a NumPy copy."""
    from .cuda import runtime

    stream = runtime.launch_stream(sources)
    out = compute(stream, *(runtime.to_device(a, stream) for a in operands))
    if any(is_device_array(a) for a in operands):
        return out
    return runtime.to_host(out, stream)


def _kernel_layout(tensor: str, dtype: np.dtype, data_format: str,
                   compute_dtype: np.dtype, as_bits: bool = False):
    """The conversion of an operand (``tensor``, of ``dtype``) to what the CPU kernels
    take: C-contiguous NHWC for an activation, C-contiguous HWIO for the filter, in
    ``compute_dtype`` (``as_bits``: a half type's bits, uint16, which the kernels convert);
    one copy at most (none when the array already is all that)."""
    transposed = is_activation(tensor) and data_format == "NCHW"
    if as_bits:
        def convert(array):
            return np.ascontiguousarray(array).view(np.uint16)
    elif is_half(dtype):
        convert = half.to_float32
    elif dtype != compute_dtype:
        def convert(array):
            return array.astype(compute_dtype, order="C")
    else:
        convert = np.ascontiguousarray
    if not transposed:
        return convert
    return lambda array: convert(array.transpose(0, 2, 3, 1))


def _host(array):
    """A NumPy array with ``array``'s values (copied from the GPU for a device array)."""
    return array.copy_to_host() if is_device_array(array) else array


def _options(strides, padding, data_format, dilations):
    data_format = check_data_format(data_format)
    return (data_format, spatial_pair(strides, "strides", data_format),
            spatial_pair(dilations, "dilations", data_format, default=1),
            check_padding(padding, data_format))


def _activation(value, name: str) -> np.ndarray:
    array = as_array(value, name)
    check_rank(array, name, 4, "(batch, height, width, channels in data_format order)")
    return array


def _filters(value, name: str) -> np.ndarray:
    array = as_array(value, name)
    check_rank(array, name, 4, "[filter_height, filter_width, in_channels, out_channels]")
    return array


def _padding_text(padding: Padding) -> str:
    return repr(padding) if isinstance(padding, str) else f"explicit {padding}"


def _geometry(input_shape, filter_shape, strides, dilations, padding, data_format,
              input_name: str) -> ConvGeometry:
    """The forward geometry, rejecting an empty spatial output (``input_shape`` NHWC)."""
    g = conv_geometry(input_shape, filter_shape, strides, dilations, padding)
    if g.out_height == 0 or g.out_width == 0:
        raise ValueError(
            f"the output would be empty: {input_name} has spatial size "
            f"({g.in_height}, {g.in_width}) but the filter spans {g.effective_filter} with "
            f"dilations {dilations} and padding {_padding_text(padding)}")
    return g


def _expect_output(array: np.ndarray, name: str, g: ConvGeometry, padding, data_format,
                   input_name: str):
    """``array`` (``out_backprop``, or ``conv2d_transpose``'s ``input``) must have the
    forward output's shape."""
    expected = from_nhwc_shape(g.output_shape, data_format)
    if tuple(array.shape) != expected:
        raise ValueError(
            f"{name} has shape {tuple(array.shape)} but the geometry gives {expected} for "
            f"{input_name} {from_nhwc_shape(g.input_shape, data_format)}, filter "
            f"{g.filter_shape}, strides ({g.stride_h}, {g.stride_w}), dilations "
            f"({g.dilation_h}, {g.dilation_w}), padding {_padding_text(padding)} ({data_format})")


def _channels(shape, data_format: str) -> int:
    return shape[3] if data_format == "NHWC" else shape[1]


def _input_shape_from_sizes(sizes, name: str, dy: np.ndarray, filters: np.ndarray,
                            data_format: str) -> tuple:
    """``input_sizes`` / ``output_shape``: 4 entries in data_format order, or 2 spatial
    entries (batch from ``dy``, channels from the filter) -> NHWC."""
    sizes = shape_arg(sizes, name, lengths=(4, 2))
    if len(sizes) == 2:
        return (dy.shape[0], sizes[0], sizes[1], filters.shape[2])
    return to_nhwc_shape(sizes, data_format)


def _check_channels(actual: int, expected: int, name: str, what: str, filter_name: str,
                    filter_shape):
    if actual != expected:
        raise ValueError(f"{name} has {actual} {what} but {filter_name} {tuple(filter_shape)} "
                         f"expects {expected}")


def _check_groups(in_channels: int, name: str, filter_name: str, filter_shape):
    """TensorFlow's grouped convolution: the filter's input channels divide ``name``'s
    channels (groups = their ratio) and the groups divide the filter's output channels."""
    filter_in, filter_out = filter_shape[2], filter_shape[3]
    if in_channels == filter_in:
        return
    if filter_in == 0 or in_channels % filter_in:
        raise ValueError(
            f"{name} has {in_channels} channels but {filter_name} {tuple(filter_shape)} expects "
            f"{filter_in} or a multiple of it (grouped: groups = {name} channels / "
            f"{filter_name}.shape[2])")
    groups = in_channels // filter_in
    if filter_out % groups:
        raise ValueError(
            f"{filter_name} {tuple(filter_shape)} has {filter_out} output channels, not a "
            f"multiple of the {groups} groups ({name} channels {in_channels} / {filter_name}"
            f".shape[2] {filter_in})")


# --- call builders: arguments -> Call ----------------------------------------------------

def _batched_input(value, name: str):
    """``conv2d``'s input of rank >= 4, its leading dimensions flattened into one batch
    (a view where the strides allow), and those dimensions (None for rank 4)."""
    array = as_array(value, name)
    if array.ndim < 4:
        raise ValueError(f"{name} must have rank 4 or more (batch dimensions, then height, "
                         f"width, channels in data_format order), got shape {array.shape}")
    if array.ndim == 4:
        return array, None
    batch_shape = tuple(array.shape[:-3])
    return array.reshape((math.prod(batch_shape),) + tuple(array.shape[-3:])), batch_shape


def _conv2d_call(op, input, filters, strides, padding, data_format, dilations, device=None):
    data_format, strides, dilations, padding = _options(strides, padding, data_format, dilations)
    x, batch_shape = _batched_input(input, "input")
    w = _filters(filters, "filters")
    dtype = check_dtypes(op, INTEGER_OPS_DTYPES, input=x, filters=w)
    input_shape = to_nhwc_shape(x.shape, data_format)
    _check_groups(input_shape[3], "input", "filters", w.shape)
    g = _geometry(input_shape, w.shape, strides, dilations, padding, data_format, "input")
    return Call(op, "forward", g, dtype, data_format, (x, w), _device_for(device, x, w),
                (input, filters), batch_shape=batch_shape)


def _backprop_input_call(op, input_shape_arg, shape_name, filters, out_backprop, strides,
                         padding, data_format, dilations, dy_name="out_backprop",
                         filter_name="filters", input_array=None, device=None):
    data_format, strides, dilations, padding = _options(strides, padding, data_format, dilations)
    w = _filters(filters, filter_name)
    dy = _activation(out_backprop, dy_name)
    arrays = {filter_name: w, dy_name: dy}
    if input_array is not None:
        arrays = {shape_name: input_array, **arrays}
    dtype = check_dtypes(op, INTEGER_OPS_DTYPES, **arrays)
    input_shape = _input_shape_from_sizes(input_shape_arg, shape_name, dy, w, data_format)
    _check_groups(input_shape[3], shape_name, filter_name, w.shape)
    _check_channels(_channels(dy.shape, data_format), w.shape[3], dy_name, "channels",
                    filter_name, w.shape)
    g = _geometry(input_shape, w.shape, strides, dilations, padding, data_format, shape_name)
    _expect_output(dy, dy_name, g, padding, data_format, shape_name)
    return Call(op, "backward_data", g, dtype, data_format, (dy, w), _device_for(device, dy, w),
                (out_backprop, filters))


def _backprop_filter_call(op, input, filter_sizes, sizes_name, out_backprop, strides, padding,
                          data_format, dilations, filter_array=None, device=None):
    data_format, strides, dilations, padding = _options(strides, padding, data_format, dilations)
    x = _activation(input, "input")
    dy = _activation(out_backprop, "out_backprop")
    arrays = {"input": x, "out_backprop": dy}
    if filter_array is not None:
        arrays[sizes_name] = filter_array
    dtype = check_dtypes(op, FLOAT_NAMES, **arrays)
    filter_shape = shape_arg(filter_sizes, sizes_name)
    input_shape = to_nhwc_shape(x.shape, data_format)
    _check_groups(input_shape[3], "input", sizes_name, filter_shape)
    _check_channels(_channels(dy.shape, data_format), filter_shape[3], "out_backprop",
                    "channels", sizes_name, filter_shape)
    g = _geometry(input_shape, filter_shape, strides, dilations, padding, data_format, "input")
    _expect_output(dy, "out_backprop", g, padding, data_format, "input")
    return Call(op, "backward_filter", g, dtype, data_format, (x, dy),
                _device_for(device, x, dy), (input, out_backprop))


def _shape_or_tensor(value, name: str):
    """The ``_v2`` ops take a tensor whose shape is used, or the shape itself."""
    if is_shape(value):
        return value, None
    array = as_array(value, name)
    check_rank(array, name, 4, "tensor or a shape of 4 ints")
    return array.shape, array


def _depthwise_filter(value, name: str):
    """A depthwise filter ``[R, S, C, M]`` and its grouped form ``[R, S, 1, C·M]`` (a view
    where the strides allow; a device array must be contiguous)."""
    w = as_array(value, name)
    check_rank(w, name, 4, "[filter_height, filter_width, in_channels, channel_multiplier]")
    if is_device_array(w) and not w.is_c_contiguous():
        raise ValueError(f"{name}: a non-contiguous depthwise filter on the GPU (shape "
                         f"{w.shape}) is not supported; pass a contiguous one")
    return w, _grouped(w)


def _grouped(w):
    r, s, c, m = w.shape
    return w.reshape(r, s, 1, c * m)


def _grouped_shape(shape) -> tuple:
    r, s, c, m = shape
    return (r, s, 1, c * m)


def _depthwise_options(strides, padding, data_format, dilations):
    return _options(strides, padding, "NHWC" if data_format is None else data_format, dilations)


def _depthwise_call(op, input, filter, strides, padding, data_format, dilations, device):
    data_format, strides, dilations, padding = _depthwise_options(strides, padding, data_format,
                                                                  dilations)
    x = _activation(input, "input")
    w, grouped = _depthwise_filter(filter, "filter")
    dtype = check_dtypes(op, FLOAT_NAMES, input=x, filter=w)
    input_shape = to_nhwc_shape(x.shape, data_format)
    _check_channels(input_shape[3], w.shape[2], "input", "channels", "filter", w.shape)
    g = _geometry(input_shape, _grouped_shape(w.shape), strides, dilations, padding,
                  data_format, "input")
    return Call(op, "forward", g, dtype, data_format, (x, grouped), _device_for(device, x, w),
                (input, filter))


def _depthwise_backprop_input_call(op, input_sizes, filter, out_backprop, strides, padding,
                                   data_format, dilations, device):
    data_format, strides, dilations, padding = _depthwise_options(strides, padding, data_format,
                                                                  dilations)
    w, grouped = _depthwise_filter(filter, "filter")
    dy = _activation(out_backprop, "out_backprop")
    dtype = check_dtypes(op, FLOAT_NAMES, filter=w, out_backprop=dy)
    input_shape = _input_shape_from_sizes(input_sizes, "input_sizes", dy, w, data_format)
    _check_channels(input_shape[3], w.shape[2], "input_sizes", "channels", "filter", w.shape)
    _check_channels(_channels(dy.shape, data_format), w.shape[2] * w.shape[3], "out_backprop",
                    "channels (in_channels · channel_multiplier)", "filter", w.shape)
    g = _geometry(input_shape, _grouped_shape(w.shape), strides, dilations, padding,
                  data_format, "input_sizes")
    _expect_output(dy, "out_backprop", g, padding, data_format, "input_sizes")
    return Call(op, "backward_data", g, dtype, data_format, (dy, grouped),
                _device_for(device, dy, w), (out_backprop, filter))


def _depthwise_backprop_filter_call(op, input, filter_sizes, out_backprop, strides, padding,
                                    data_format, dilations, device):
    data_format, strides, dilations, padding = _depthwise_options(strides, padding, data_format,
                                                                  dilations)
    x = _activation(input, "input")
    dy = _activation(out_backprop, "out_backprop")
    dtype = check_dtypes(op, FLOAT_NAMES, input=x, out_backprop=dy)
    filter_shape = shape_arg(filter_sizes, "filter_sizes")
    input_shape = to_nhwc_shape(x.shape, data_format)
    _check_channels(input_shape[3], filter_shape[2], "input", "channels", "filter_sizes",
                    filter_shape)
    _check_channels(_channels(dy.shape, data_format), filter_shape[2] * filter_shape[3],
                    "out_backprop", "channels (in_channels · channel_multiplier)",
                    "filter_sizes", filter_shape)
    g = _geometry(input_shape, _grouped_shape(filter_shape), strides, dilations, padding,
                  data_format, "input")
    _expect_output(dy, "out_backprop", g, padding, data_format, "input")
    return Call(op, "backward_filter", g, dtype, data_format, (x, dy),
                _device_for(device, x, dy), (input, out_backprop), filter_shape=filter_shape)


# --- the public ops ---------------------------------------------------------------------

_BUILDERS: dict = {}
#: CPU calls remembered by :func:`call_memo.key` (emptied beyond MEMO_LIMIT entries).
_remembered: dict = {}


def _op(build):
    """The public op of ``build``, a function with the op's signature that returns the
    checked :class:`Call`: the op runs it, or the prepared work of an earlier CPU call with
    the same key (:mod:`numbaconv.call_memo`) whose schedule is still the one chosen."""
    name = build.__name__

    @functools.wraps(build)
    def op(*args, **kwargs):
        key = call_memo.key(name, args, kwargs)
        signature = configs.files_signature()  # before any choice: a later change shows
        if key is not None:
            found = _remembered.get(key)
            if (found is not None and found.signature == signature
                    and found.prepared.current()):
                return found.run(args, kwargs)
        call = build(*args, **kwargs)
        if key is None or call.device != "cpu":
            return call.run()
        prepared = call.prepare()
        slots = call_memo.slots(call.sources, args, kwargs)
        if slots is not None:
            if len(_remembered) >= MEMO_LIMIT:
                _remembered.clear()
            shapes = tuple(None if operand.shape == source.shape else operand.shape
                           for operand, source in zip(call.operands, call.sources))
            _remembered[key] = call_memo.Remembered(prepared, slots, shapes, signature)
        return prepared.run_first(call.operands)

    _BUILDERS[name] = build
    return op


def call_for(op_name: str, *args, **kwargs) -> Call:
    """The checked :class:`Call` of ``numbaconv.<op_name>(*args, **kwargs)``, not run:
    ``call.run()`` (or ``call.run(schedule)``) runs it, ``call.choice()`` says what it
    would run. Raises as the op does on bad arguments."""
    if op_name not in _BUILDERS:
        raise ValueError(f"op_name must be one of {sorted(_BUILDERS)}, got {op_name!r}")
    return _BUILDERS[op_name](*args, **kwargs)


@_op
def conv2d(input=None, filters=None, strides=None, padding=None, data_format="NHWC",
           dilations=None, name=None, *, filter=None, device=None):
    """2-D convolution, as ``tf.nn.conv2d``.

    input [N, H, W, C] (NHWC) or [N, C, H, W] (NCHW); filters [R, S, C, K] (HWIO);
    returns [N, OH, OW, K] in ``data_format`` layout and ``input``'s dtype.
    ``filter=`` is accepted as the TF1 spelling of ``filters=``; ``name`` is ignored.
    """
    _check_device(device)
    filters = pick_alias(filters, filter, "filters", "filter")
    input = require(input, "input")
    return _conv2d_call("conv2d", input, filters, strides, padding, data_format,
                        dilations, device)


@_op
def conv2d_backprop_input(input_sizes=None, filters=None, out_backprop=None, strides=None,
                          padding=None, data_format="NHWC", dilations=None, name=None, *,
                          filter=None, device=None):
    """Gradient of ``conv2d`` with respect to its input, as ``tf.nn.conv2d_backprop_input``.

    input_sizes: the input's shape (4 ints in ``data_format`` order, or 2 spatial ints);
    filters [R, S, C, K]; out_backprop [N, OH, OW, K] (in ``data_format`` layout).
    Returns dx with shape ``input_sizes``. Equal to ``conv2d`` of the zero-inserted,
    padded ``out_backprop`` with the 180°-rotated, channel-swapped filter.
    """
    _check_device(device)
    filters = pick_alias(filters, filter, "filters", "filter")
    input_sizes = require(input_sizes, "input_sizes")
    out_backprop = require(out_backprop, "out_backprop")
    return _backprop_input_call("conv2d_backprop_input", input_sizes, "input_sizes", filters,
                                out_backprop, strides, padding, data_format, dilations,
                                device=device)


@_op
def conv2d_backprop_filter(input=None, filter_sizes=None, out_backprop=None, strides=None,
                           padding=None, data_format="NHWC", dilations=None, name=None, *,
                           device=None):
    """Gradient of ``conv2d`` with respect to its filter, as ``tf.nn.conv2d_backprop_filter``.

    input [N, H, W, C]; filter_sizes: the filter's shape [R, S, C, K]; out_backprop
    [N, OH, OW, K] (activations in ``data_format`` layout). Returns dw [R, S, C, K].
    Equal to ``conv2d`` of the input (batch as channels) with ``out_backprop`` as filter.
    """
    _check_device(device)
    input = require(input, "input")
    filter_sizes = require(filter_sizes, "filter_sizes")
    out_backprop = require(out_backprop, "out_backprop")
    return _backprop_filter_call("conv2d_backprop_filter", input, filter_sizes, "filter_sizes",
                                 out_backprop, strides, padding, data_format, dilations,
                                 device=device)


@_op
def conv2d_backprop_input_v2(input=None, filters=None, out_backprop=None, strides=None,
                             padding=None, data_format="NHWC", dilations=None, name=None, *,
                             input_sizes=None, filter=None, device=None):
    """As :func:`conv2d_backprop_input`, but ``input`` is the input tensor (only its shape
    and dtype are used) or its shape; ``input_sizes=`` is accepted for the shape."""
    _check_device(device)
    filters = pick_alias(filters, filter, "filters", "filter")
    input = pick_alias(input, input_sizes, "input", "input_sizes")
    out_backprop = require(out_backprop, "out_backprop")
    shape, array = _shape_or_tensor(input, "input")
    return _backprop_input_call("conv2d_backprop_input_v2", shape, "input", filters,
                                out_backprop, strides, padding, data_format, dilations,
                                input_array=array, device=device)


@_op
def conv2d_backprop_filter_v2(input=None, filters=None, out_backprop=None, strides=None,
                              padding=None, data_format="NHWC", dilations=None, name=None, *,
                              filter_sizes=None, filter=None, device=None):
    """As :func:`conv2d_backprop_filter`, but ``filters`` is the filter tensor (only its
    shape and dtype are used) or its shape; ``filter_sizes=`` and ``filter=`` are accepted."""
    _check_device(device)
    input = require(input, "input")
    filters = pick_alias(filters, filter, "filters", "filter", required=False)
    filters = pick_alias(filters, filter_sizes, "filters", "filter_sizes")
    out_backprop = require(out_backprop, "out_backprop")
    shape, array = _shape_or_tensor(filters, "filters")
    return _backprop_filter_call("conv2d_backprop_filter_v2", input, shape, "filters",
                                 out_backprop, strides, padding, data_format, dilations,
                                 filter_array=array, device=device)


@_op
def conv2d_transpose(input=None, filters=None, output_shape=None, strides=None,
                     padding="SAME", data_format="NHWC", dilations=None, name=None, *,
                     value=None, filter=None, device=None):
    """Transposed convolution, as ``tf.nn.conv2d_transpose``: the same op as
    :func:`conv2d_backprop_input` with ``input`` as ``out_backprop``.

    input [N, OH, OW, K]; filters [R, S, C, K] (C: this op's output channels);
    output_shape: 4 ints in ``data_format`` order (or 2 spatial). ``value=`` and
    ``filter=`` are the TF1 spellings of ``input=`` and ``filters=``.
    """
    _check_device(device)
    input = pick_alias(input, value, "input", "value")
    filters = pick_alias(filters, filter, "filters", "filter")
    output_shape = require(output_shape, "output_shape")
    return _backprop_input_call("conv2d_transpose", output_shape, "output_shape", filters,
                                input, strides, padding, data_format, dilations,
                                dy_name="input", device=device)


@_op
def depthwise_conv2d(input=None, filter=None, strides=None, padding=None, data_format=None,
                     dilations=None, name=None, *, rate=None, device=None):
    """Depthwise 2-D convolution, as ``tf.nn.depthwise_conv2d`` (TF2).

    input [N, H, W, C] (NHWC, the default) or [N, C, H, W]; filter [R, S, C, M] (M: the
    channel multiplier); returns [N, OH, OW, C·M], output channel ``c·M + m`` from input
    channel c. ``dilations`` is TF's ``rate`` (1, 2 or 4 entries; ``rate=``, the TF1
    spelling, is accepted). Unlike TensorFlow, any strides combine with any dilations, and
    the two strides may differ.
    """
    _check_device(device)
    input = require(input, "input")
    filter = require(filter, "filter")
    dilations = pick_alias(dilations, rate, "dilations", "rate", required=False)
    return _depthwise_call("depthwise_conv2d", input, filter, strides, padding, data_format,
                           dilations, device)


@_op
def depthwise_conv2d_backprop_input(input_sizes=None, filter=None, out_backprop=None,
                                    strides=None, padding=None, data_format="NHWC",
                                    dilations=None, name=None, *, device=None):
    """Gradient of :func:`depthwise_conv2d` with respect to its input, as
    ``tf.nn.depthwise_conv2d_backprop_input``; with ``dilations`` the true gradient of the
    dilated op (TensorFlow's CPU kernel ignores them)."""
    _check_device(device)
    input_sizes = require(input_sizes, "input_sizes")
    filter = require(filter, "filter")
    out_backprop = require(out_backprop, "out_backprop")
    return _depthwise_backprop_input_call("depthwise_conv2d_backprop_input", input_sizes,
                                          filter, out_backprop, strides, padding, data_format,
                                          dilations, device)


@_op
def depthwise_conv2d_backprop_filter(input=None, filter_sizes=None, out_backprop=None,
                                     strides=None, padding=None, data_format="NHWC",
                                     dilations=None, name=None, *, device=None):
    """Gradient of :func:`depthwise_conv2d` with respect to its filter, as
    ``tf.nn.depthwise_conv2d_backprop_filter``: returns dw of shape ``filter_sizes``
    [R, S, C, M]; with ``dilations`` the true gradient of the dilated op (TensorFlow's CPU
    kernel ignores them)."""
    _check_device(device)
    input = require(input, "input")
    filter_sizes = require(filter_sizes, "filter_sizes")
    out_backprop = require(out_backprop, "out_backprop")
    return _depthwise_backprop_filter_call("depthwise_conv2d_backprop_filter", input,
                                           filter_sizes, out_backprop, strides, padding,
                                           data_format, dilations, device)


def bias_add_grad(out_backprop=None, data_format="NHWC", name=None, *, device=None):
    """Gradient of ``bias_add``: ``out_backprop`` summed over every axis but the channel
    axis (the last for NHWC, the third from last for NCHW). Returns [C]."""
    _check_device(device)
    out_backprop = require(out_backprop, "out_backprop")
    data_format = check_data_format(data_format)
    dy = as_array(out_backprop, "out_backprop")
    min_rank = 2 if data_format == "NHWC" else 3
    if dy.ndim < min_rank:
        raise ValueError(f"out_backprop must have at least {min_rank} dimensions for "
                         f"{data_format}, got shape {tuple(dy.shape)}")
    check_dtypes("bias_add_grad", FLOAT_NAMES, out_backprop=dy)
    shape = tuple(dy.shape)
    if data_format == "NHWC":
        channels, inner = shape[-1], 1
    else:
        channels, inner = shape[-3], shape[-2] * shape[-1]
    if _device_for(device, dy) == "cuda":
        return _bias_add_grad_cuda(dy, out_backprop, channels, inner)
    dy = _host(dy)
    if dy.size == 0:
        return np.zeros(channels, dtype=dy.dtype)
    x3 = (half.to_float32(dy) if is_half(dy.dtype)
          else np.ascontiguousarray(dy)).reshape(-1, channels, inner)
    total = launched(bias.run, x3)
    return total if total.dtype == dy.dtype else _rounded(total, dy.dtype)


def _bias_add_grad_cuda(dy, source, channels: int, inner: int):
    from .cuda import launch

    def compute(stream, on_device):
        if dy.size == 0:
            return launch.zeros((channels,), dy.dtype, stream)
        if not on_device.flags["C_CONTIGUOUS"]:
            raise ValueError(f"out_backprop: a non-contiguous device array (shape {dy.shape}) "
                             f"is not supported by bias_add_grad on CUDA; pass a contiguous one")
        return launch.bias_add_grad(on_device.reshape(dy.size // (channels * inner), channels,
                                                      inner), stream)

    return _on_cuda((source,), (dy,), compute)


@dataclass(frozen=True)
class Explanation:
    """What a call would run: ``str()`` gives the geometry, the schedule and its source."""

    call: Call
    choice: Choice

    def __str__(self) -> str:
        call, g, schedule = self.call, self.call.geometry, self.choice.schedule
        # Winograd over another family's schedule: each on a line of its own.
        other = getattr(schedule, "otherwise", None)
        shown = schedule if other is None else dataclasses.replace(schedule, otherwise=None)
        lines = [
            f"{call.op} -> {call.primitive} ({call.dtype}, {call.data_format}, {call.device})",
            f"geometry: {g.describe()}",
            f"output: {call.result_shape}, {g.flops / 1e9:.3g} GFLOP",
            f"schedule: {shown}",
            f"source: {self.choice.source}",
        ]
        if other is not None:
            lines.append(f"until the filter comes again unchanged, and once it has changed "
                         f"between two calls: {other}")
        if call.device == "cpu":
            lines.append("kernels: " + cold_start.status(call.primitive, schedule,
                                                         call.compute_dtype))
        return "\n".join(lines)


def explain(op_name: str, *args, **kwargs) -> Explanation:
    """What ``numbaconv.<op_name>(*args, **kwargs)`` would run, without running it."""
    call = call_for(op_name, *args, **kwargs)
    return Explanation(call, call.choice())
