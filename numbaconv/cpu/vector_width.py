"""The vector width LLVM may use in numbaconv's own kernels, set per function.

LLVM's tuning for some AVX-512 cores prefers 256-bit vectors (its ``prefer-256-bit``
feature), leaving half of each register unused. Numba's CPU features are process-wide and
the user's, so numbaconv never changes them; instead each generated kernel calls one of
these intrinsics inside its parallel loop, which gives that (outlined) function LLVM's
``prefer-vector-width`` attribute.
"""

from numba import types
from numba.extending import intrinsic


def _preferring(bits: int):
    @intrinsic
    def prefer(typingctx):
        def codegen(context, builder, signature, args):
            # A string attribute, which llvmlite's checked ``add`` does not know.
            set.add(builder.function.attributes, f'"prefer-vector-width"="{bits}"')
            return context.get_dummy_value()

        return types.void(), codegen

    return prefer


prefer_128_bit_vectors = _preferring(128)
prefer_256_bit_vectors = _preferring(256)
prefer_512_bit_vectors = _preferring(512)

#: The widths a kernel may ask for, and the intrinsic of each.
HINTS = {128: "prefer_128_bit_vectors", 256: "prefer_256_bit_vectors",
         512: "prefer_512_bit_vectors"}
