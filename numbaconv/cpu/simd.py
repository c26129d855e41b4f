"""Explicit SIMD vectors for the generated kernels: a Numba type whose values are LLVM
vectors (``<lanes x float>``), and the five operations a register tile needs.

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
"""

from __future__ import annotations

import functools
import math

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, models, register_model


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
            builder.store(args[2], pointer, align=align)
            return context.get_dummy_value()

        return types.void(array, index, vector), codegen

    @intrinsic
    def broadcast(typingctx, scalar):
        def codegen(context, builder, signature, args):
            vector_type = context.get_value_type(signature.return_type)
            first = builder.insert_element(ir.Constant(vector_type, ir.Undefined), args[0],
                                           ir.Constant(ir.IntType(32), 0))
            everywhere = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
            return builder.shuffle_vector(first, ir.Constant(vector_type, ir.Undefined),
                                          everywhere)

        return Vector(scalar, lanes)(scalar), codegen

    @intrinsic
    def multiply_add(typingctx, a, b, c):
        def codegen(context, builder, signature, args):
            product = builder.fmul(args[0], args[1], flags=("contract",))
            return builder.fadd(product, args[2], flags=("contract",))

        return c(a, b, c), codegen

    return load, store, broadcast, multiply_add


def vector_lanes(tile_channels: int, vector_bits: int, dtype: str) -> int:
    """The lanes of the vectors a tile of ``tile_channels`` channels is made of: the most
    of the CPU's full vector that divides the tile (the full vector for the menu's tiles,
    the tile's width for its half- and quarter-vector ones)."""
    full = vector_bits // (8 * {"float32": 4, "float64": 8}[dtype])
    return math.gcd(tile_channels, full)
