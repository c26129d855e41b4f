"""Explicit SIMD vectors for the generated kernels: a Numba type whose values are LLVM
vectors (``<lanes x float>``), the four operations a register tile needs, and the
arithmetic of the Winograd transforms.

Why: a register tile written as scalar accumulators (rows × channels of them) relied on
LLVM's SLP vectoriser to pack them into vector registers, and Numba's front end spends
seconds per kernel on those hundreds of variables; written as rows × (channels / lanes)
vectors, each tile is that many times smaller to compile, and its width is the one the
kernel asks for, not the one the vectoriser's cost model picks.

``operations(lanes)`` gives ``(load, store, broadcast, multiply_add)`` for vectors of
``lanes`` elements of the array's dtype:

- ``load(array, index)``: ``array[index : index + lanes]`` (a flat array, unchecked, any
  alignment);
- ``store(array, index, vector)``: the reverse;
- ``broadcast(scalar)``: ``lanes`` copies of ``scalar`` (``broadcast(float32(0))`` is a
  zero accumulator);
- ``multiply_add(a, b, c)``: ``a · b + c`` lane by lane, fused into one FMA where the
  CPU has one (LLVM's ``contract``, as the kernels' ``fastmath`` gives scalars): each
  lane rounds exactly as the scalar loop it replaces.

``prefetch(array, index)`` asks the CPU to bring ``array[index]``'s cache line in (a
hint: it never faults, so ``index`` may run past the end).

For the Winograd transforms' sums, arithmetic that promotes as Numba's scalar arithmetic
does (a Python float's product is float64; float32 meeting float64 becomes
float64; ``store`` rounds to the array's dtype), so that each lane is computed exactly as
the scalar statement it replaces: ``add``, ``subtract``, ``negate``, ``scale(constant,
vector)`` and ``lanes_sum``.
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, models, register_model


#: A digest of this module's source, written into each generated kernel that uses it: Numba
#: keys its disk cache by the kernel's own file, so a change here must change that file.
SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


class Vector(types.Type):
    """``lanes`` values of the scalar type ``dtype`` in one LLVM vector."""

    def __init__(self, dtype: types.Type, lanes: int):
        self.dtype, self.lanes = dtype, lanes
        super().__init__(name=f"Vector({dtype}, {lanes})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


def _wider(first: types.Type, second: types.Type) -> types.Type:
    return first if first.bitwidth >= second.bitwidth else second


def _converted(context, builder, value, from_type: types.Type, to_type: types.Type):
    """``value`` (a vector of ``from_type`` elements) as a vector of ``to_type`` ones."""
    if from_type == to_type:
        return value
    target = ir.VectorType(context.get_value_type(to_type), value.type.count)
    if from_type.bitwidth < to_type.bitwidth:
        return builder.fpext(value, target)
    return builder.fptrunc(value, target)


def _spread(builder, vector_type, scalar, lanes: int):
    """``lanes`` copies of ``scalar`` as a vector of ``vector_type``."""
    first = builder.insert_element(ir.Constant(vector_type, ir.Undefined), scalar,
                                   ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(first, ir.Constant(vector_type, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


def _vector_pointer(context, builder, array_type, array, index, lanes: int):
    """A pointer to ``lanes`` elements of ``array`` from ``index`` on, and their alignment
    (one element's: the kernels' offsets are any multiple of it)."""
    data = context.make_array(array_type)(context, builder, array).data
    element = context.get_value_type(array_type.dtype)
    pointer = builder.bitcast(builder.gep(data, [index]),
                              ir.VectorType(element, lanes).as_pointer())
    return pointer, context.get_abi_sizeof(element)


@functools.lru_cache(maxsize=None)
def operations(lanes: int):
    """``(load, store, broadcast, multiply_add)`` for ``lanes``-element vectors (one set
    per width, shared by every kernel that uses it)."""

    @intrinsic
    def load(typingctx, array, index):
        def codegen(context, builder, signature, args):
            pointer, align = _vector_pointer(context, builder, signature.args[0], *args, lanes)
            return builder.load(pointer, align=align)

        return Vector(array.dtype, lanes)(array, index), codegen

    @intrinsic
    def store(typingctx, array, index, vector):
        def codegen(context, builder, signature, args):
            pointer, align = _vector_pointer(context, builder, signature.args[0],
                                             args[0], args[1], lanes)
            value = _converted(context, builder, args[2], signature.args[2].dtype,
                               signature.args[0].dtype)
            builder.store(value, pointer, align=align)
            return context.get_dummy_value()

        return types.void(array, index, vector), codegen

    @intrinsic
    def broadcast(typingctx, scalar):
        def codegen(context, builder, signature, args):
            return _spread(builder, context.get_value_type(signature.return_type), args[0],
                           lanes)

        return Vector(scalar, lanes)(scalar), codegen

    @intrinsic
    def multiply_add(typingctx, a, b, c):
        def codegen(context, builder, signature, args):
            product = builder.fmul(args[0], args[1], flags=("contract",))
            return builder.fadd(product, args[2], flags=("contract",))

        return c(a, b, c), codegen

    return load, store, broadcast, multiply_add


def _check_storage(storage: str):
    if storage not in ("float16", "bfloat16"):
        raise ValueError(f"storage must be 'float16' or 'bfloat16', got {storage!r}")


def _widened(builder, bits, storage: str, lanes: int | None):
    """The float32 value(s) of ``bits``: one half-type element (``lanes`` None), or a
    vector of ``lanes`` of them. float16 by ``fpext`` of ``half``, bfloat16 as the top
    half of a float32's bits."""
    def of(element):
        return element if lanes is None else ir.VectorType(element, lanes)

    if storage == "float16":
        return builder.fpext(builder.bitcast(bits, of(ir.HalfType())), of(ir.FloatType()))
    sixteen = ir.Constant(of(ir.IntType(32)), 16 if lanes is None else [16] * lanes)
    return builder.bitcast(builder.shl(builder.zext(bits, of(ir.IntType(32))), sixteen),
                           of(ir.FloatType()))


@functools.lru_cache(maxsize=None)
def storage_operations(lanes: int, storage: str):
    """``(load, store)`` for arrays of a half type held as their bits (``uint16``;
    ``storage``: ``"float16"`` or ``"bfloat16"``), each vector float32 in registers:
    ``load`` widens exactly; ``store`` rounds once to nearest even, Inf and NaN kept (a NaN
    quiet), as :mod:`numbaconv.cpu.half`'s conversions. float16 by LLVM's ``fpext`` /
    ``fptrunc`` of ``half`` (F16C's instructions: callers check
    :func:`numbaconv.cpu.half.hardware_float16`), bfloat16 on the bits."""
    _check_storage(storage)
    bits16, bits32 = ir.VectorType(ir.IntType(16), lanes), ir.VectorType(ir.IntType(32), lanes)

    def spread(value: int):
        return ir.Constant(bits32, [value] * lanes)

    def narrowed(builder, value):
        if storage == "float16":
            return builder.bitcast(builder.fptrunc(value, ir.VectorType(ir.HalfType(), lanes)),
                                   bits16)
        bits = builder.bitcast(value, bits32)
        # (bits + 0x7FFF + lowest kept bit) >> 16 rounds to nearest even; a NaN keeps its
        # top bits, made quiet (the carry could turn it into an Inf).
        odd = builder.and_(builder.lshr(bits, spread(16)), spread(1))
        rounded = builder.lshr(builder.add(builder.add(bits, spread(0x7FFF)), odd), spread(16))
        quiet = builder.or_(builder.lshr(bits, spread(16)), spread(0x0040))
        nan = builder.icmp_unsigned(">", builder.and_(bits, spread(0x7FFFFFFF)),
                                    spread(0x7F800000))
        return builder.trunc(builder.select(nan, quiet, rounded), bits16)

    @intrinsic
    def load(typingctx, array, index):
        if array.dtype != types.uint16:
            return None

        def codegen(context, builder, signature, args):
            pointer, align = _vector_pointer(context, builder, signature.args[0], *args, lanes)
            return _widened(builder, builder.load(pointer, align=align), storage, lanes)

        return Vector(types.float32, lanes)(array, index), codegen

    @intrinsic
    def store(typingctx, array, index, vector):
        if array.dtype != types.uint16 or vector != Vector(types.float32, lanes):
            return None

        def codegen(context, builder, signature, args):
            pointer, align = _vector_pointer(context, builder, signature.args[0],
                                             args[0], args[1], lanes)
            builder.store(narrowed(builder, args[2]), pointer, align=align)
            return context.get_dummy_value()

        return types.void(array, index, vector), codegen

    return load, store


@functools.lru_cache(maxsize=None)
def storage_broadcast(lanes: int, storage: str):
    """``broadcast_bits(array, index)``: the float32 value of ``array[index]`` (the bits of
    the half type ``storage``, a uint16) in each of ``lanes`` lanes, exactly. The bits are
    spread as they are loaded and widened as a vector: bfloat16 by a mask of its 16-bit
    copies (each 32-bit lane holds the bits twice; the top copy is the float32), float16
    by ``fpext`` of ``half`` lanes. Widening the scalar first (``broadcast(value(bits))``)
    takes a trip through a general register."""
    _check_storage(storage)

    def spread(builder, element, count: int):
        return _spread(builder, ir.VectorType(element.type, count), element, count)

    @intrinsic
    def broadcast_bits(typingctx, array, index):
        if array.dtype != types.uint16:
            return None

        def codegen(context, builder, signature, args):
            data = context.make_array(signature.args[0])(context, builder, args[0]).data
            bits = builder.load(builder.gep(data, [args[1]]), align=2)
            if storage == "float16":
                halves = spread(builder, builder.bitcast(bits, ir.HalfType()), lanes)
                return builder.fpext(halves, ir.VectorType(ir.FloatType(), lanes))
            words = ir.VectorType(ir.IntType(32), lanes)
            doubled = builder.bitcast(spread(builder, bits, 2 * lanes), words)
            top = builder.and_(doubled, ir.Constant(words, [0xFFFF0000] * lanes))
            return builder.bitcast(top, ir.VectorType(ir.FloatType(), lanes))

        return Vector(types.float32, lanes)(array, index), codegen

    return broadcast_bits


@functools.lru_cache(maxsize=None)
def storage_value(storage: str):
    """``value(bits)``: the float32 value of one element of the half type ``storage``
    held as its bits (a uint16), exactly (as :func:`storage_operations`' ``load``)."""
    _check_storage(storage)

    @intrinsic
    def value(typingctx, bits):
        if bits != types.uint16:
            return None

        def codegen(context, builder, signature, args):
            return _widened(builder, args[0], storage, None)

        return types.float32(types.uint16), codegen

    return value


@functools.lru_cache(maxsize=None)
def group_spreads(lanes: int, group: int) -> tuple:
    """For vectors of ``lanes`` channels in groups of ``group`` consecutive ones (grouped
    convolutions): ``spreads[c](v)`` has in every lane of a group that group's channel
    ``c`` of ``v`` (one shuffle: within a 128-bit lane when the groups fit one)."""
    if lanes % group:
        raise ValueError(f"group must divide lanes ({lanes}), got {group}")

    def spread(channel: int):
        mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                           [lane // group * group + channel for lane in range(lanes)])

        @intrinsic
        def spread_channel(typingctx, vector):
            if not isinstance(vector, Vector) or vector.lanes != lanes:
                return None

            def codegen(context, builder, signature, args):
                return builder.shuffle_vector(args[0], args[0], mask)

            return vector(vector), codegen

        return spread_channel

    return tuple(spread(channel) for channel in range(group))


def _binary(build):
    """An intrinsic ``f(a, b)`` on two vectors of equal lanes, the narrower promoted."""

    @intrinsic
    def operation(typingctx, a, b):
        if not (isinstance(a, Vector) and isinstance(b, Vector) and a.lanes == b.lanes):
            return None
        result = Vector(_wider(a.dtype, b.dtype), a.lanes)

        def codegen(context, builder, signature, args):
            x, y = (_converted(context, builder, value, kind.dtype, result.dtype)
                    for value, kind in zip(args, signature.args))
            return build(builder)(x, y, flags=("contract",))

        return result(a, b), codegen

    return operation


add = _binary(lambda builder: builder.fadd)
subtract = _binary(lambda builder: builder.fsub)


@intrinsic
def prefetch(typingctx, array, index):
    """LLVM's ``llvm.prefetch`` (read, keep in all levels) of ``array[index]``'s line."""
    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        byte_pointer = ir.IntType(8).as_pointer()
        address = builder.bitcast(builder.gep(data, [args[1]]), byte_pointer)
        word = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, word, word, word]),
            "llvm.prefetch.p0i8")
        builder.call(function, [address, ir.Constant(word, 0), ir.Constant(word, 3),
                                ir.Constant(word, 1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


@intrinsic
def negate(typingctx, a):
    def codegen(context, builder, signature, args):
        return builder.fneg(args[0])

    return a(a), codegen


@intrinsic
def scale(typingctx, constant, a):
    """``constant · a`` in the wider of the two types (a Python float: float64)."""
    if not (isinstance(constant, types.Float) and isinstance(a, Vector)):
        return None
    result = Vector(_wider(constant, a.dtype), a.lanes)

    def codegen(context, builder, signature, args):
        factor = context.cast(builder, args[0], signature.args[0], result.dtype)
        spread = _spread(builder, context.get_value_type(result), factor, a.lanes)
        value = _converted(context, builder, args[1], signature.args[1].dtype, result.dtype)
        return builder.fmul(spread, value, flags=("contract",))

    return result(constant, a), codegen


@intrinsic
def lanes_sum(typingctx, a):
    """The sum of ``a``'s lanes (in lane order)."""
    def codegen(context, builder, signature, args):
        total = builder.extract_element(args[0], ir.Constant(ir.IntType(32), 0))
        for lane in range(1, a.lanes):
            total = builder.fadd(total, builder.extract_element(
                args[0], ir.Constant(ir.IntType(32), lane)))
        return total

    return a.dtype(a), codegen


def vector_lanes(tile_channels: int, vector_bits: int, dtype: str) -> int:
    """The lanes of the vectors a tile of ``tile_channels`` channels is made of: the most
    of the CPU's full vector that divides the tile (the full vector for the menu's tiles,
    the tile's width for its half- and quarter-vector ones)."""
    full = vector_bits // 8 // np.dtype(dtype).itemsize
    return math.gcd(tile_channels, full)
