"""A generated kernel's parallel loop calls its serial task through the task's address.

Why not by name: a call by name links the task's LLVM IR into the caller, and Numba links
it twice (into the parallel loop's body and into the kernel), where LLVM optimises it and
emits its machine code again each time; the task is an unrolled register tile, and those
two extra passes were most of a kernel's compile time (``docs/measurements.md``). Through
an address the task is compiled once, in its own library, and the kernel is a short loop.

The task is declared with its exact signature (compiled, or loaded from Numba's cache,
when its module is imported); a call whose arguments have other types fails to compile,
as a call through an address cannot convert them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic

#: A digest of this module's source, written into each generated kernel that uses it
#: (Numba keys its disk cache by the kernel's own file).
SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


@intrinsic
def call_task(typingctx, task, address, arguments):
    """``task(*arguments)``, compiled as a call of the function at ``address``
    (:func:`address_of` ``task``): ``task`` names the function, so that its signature can
    be checked against ``arguments`` (a tuple) here, at compile time."""
    if not (isinstance(task, types.Dispatcher) and isinstance(address, types.Integer)
            and isinstance(arguments, types.BaseTuple)):
        return None
    declared = [tuple(signature) for signature in task.dispatcher.signatures]
    if declared != [tuple(arguments.types)]:
        raise TypingError(f"call_task: {task.dispatcher.py_func.__name__} is declared for "
                          f"{declared}, called with {tuple(arguments.types)}")
    (compiled,) = task.dispatcher.overloads.values()
    return_type = compiled.signature.return_type

    def codegen(context, builder, signature, args):
        _, address_value, tuple_value = args
        values = cgutils.unpack_tuple(builder, tuple_value, len(arguments.types))
        # The C entry point Numba makes for every function: arguments by value, no
        # exception status (an error is reported by the task itself).
        function_type = ir.FunctionType(context.get_value_type(return_type),
                                        [context.get_value_type(t) for t in arguments.types])
        builder.call(builder.inttoptr(address_value, function_type.as_pointer()), values)
        return context.get_dummy_value()

    return types.void(task, address, arguments), codegen


def address_of(task) -> int:
    """The address of the C entry point of ``task``'s one compiled signature."""
    (signature,) = task.signatures
    compiled = task.overloads[signature]
    return compiled.library.get_pointer_to_function(compiled.fndesc.llvm_cfunc_wrapper_name)
