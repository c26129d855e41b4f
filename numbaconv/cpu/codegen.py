"""Generated register-tile kernels: source rendered per tile shape and dtype, written to a
real file, imported and compiled once.

Why generated: the accumulators of a register tile must be variables (Numba keeps even
tiny local arrays on the heap), one per (pixel, vector of channels) — explicit vectors
(:mod:`numbaconv.cpu.simd`) in the tiled family's kernels, scalars in the others — so
each tile shape is its own source. Why a file: Numba cannot disk-cache code made with
``exec``. Each file is named after a hash of its source, so variants never collide in
Numba's cache (keyed by file and function) and a change of the generator gives new files,
never stale hits.

The kernels are compiled with LLVM's SLP vectoriser on and the loop vectoriser off (set
around their compilation only): the SLP vectoriser packs scalar accumulators into vector
registers, the loop vectoriser would turn the reduction into gathers
(``docs/measurements.md`` has the figures).

A kernel's parameters are one :class:`KernelParameters` list: its rendered ``def`` line,
its Numba signature and the arguments its callers pass (by name) all come from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import operator
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

from numba import config, types

from ..threads import ProcessLock
from .disk_cache import kernel_dir
from .jit import FASTMATH, ParallelKernel
from .simd import SOURCE_DIGEST as SIMD_DIGEST
from .task_calls import SOURCE_DIGEST as TASK_CALLS_DIGEST
from .task_calls import address_of
from .vector_width import HINTS

_lock = ProcessLock()
_kernels: dict[str, object] = {}

NUMBA_DTYPES = {"float32": types.float32, "float64": types.float64}


@contextlib.contextmanager
def slp_vectoriser():
    """SLP vectoriser on, loop vectoriser off, for the compilations inside (process-wide
    settings, read by Numba at compile time: held under the lock, restored after)."""
    with _lock:
        saved = config.SLP_VECTORIZE, config.LOOP_VECTORIZE
        config.SLP_VECTORIZE, config.LOOP_VECTORIZE = True, False
        try:
            yield
        finally:
            config.SLP_VECTORIZE, config.LOOP_VECTORIZE = saved


def _write_atomically(path: Path, text: str):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _numba_type(kind: str, dtype: str):
    """``in``/``out``: a flat read-only/writable array of ``dtype``; ``bits_in``/``bits_out``:
    the same of uint16 (a half type's bits); ``table``: a read-only 2-D int64 array;
    ``int``: int64; ``uint``: uint64; ``bool``: a boolean."""
    if kind in ("in", "out"):
        return types.Array(NUMBA_DTYPES[dtype], 1, "C", readonly=kind == "in")
    if kind in ("bits_in", "bits_out"):
        return types.Array(types.uint16, 1, "C", readonly=kind == "bits_in")
    return {"table": types.Array(types.int64, 2, "C", readonly=True), "int": types.int64,
            "uint": types.uint64, "bool": types.boolean}[kind]


def task_signature(kinds: tuple[str, ...], dtype: str):
    """A task's signature: its index (int64), then arguments of ``kinds``."""
    return types.void(types.int64, *(_numba_type(kind, dtype) for kind in kinds))


class KernelParameters:
    """The parameters of a generated kernel: ``(name, kind)`` pairs, kinds as in
    :func:`_numba_type`. ``calls_task``: the kernel's parallel loop calls a task
    (:func:`task_loop`), whose address comes first, before these."""

    def __init__(self, *parameters: tuple[str, str], calls_task: bool = True):
        for _, kind in parameters:
            _numba_type(kind, "float32")  # an unknown kind fails here, not at compile time
        self.parameters = parameters
        self.calls_task = calls_task
        self.names = tuple(name for name, _ in parameters)
        self.kinds = tuple(kind for _, kind in parameters)
        self._name_set = frozenset(self.names)
        self._in_order = operator.itemgetter(*self.names)

    def as_bits(self, names: tuple) -> "KernelParameters":
        """These parameters with the arrays ``names`` as a half type's bits."""
        kinds = {"in": "bits_in", "out": "bits_out"}
        return KernelParameters(*((name, kinds[kind] if name in names else kind)
                                  for name, kind in self.parameters),
                                calls_task=self.calls_task)

    def header(self) -> str:
        return f"def kernel({', '.join(('task_address',) * self.calls_task + self.names)}):"

    def signature(self, dtype: str):
        return types.void(*(types.int64,) * self.calls_task,
                          *(_numba_type(kind, dtype) for kind in self.kinds))

    def arguments(self, values: dict) -> tuple:
        """``values`` (name -> value) in parameter order; a missing or unknown name raises."""
        if len(values) == len(self.names):
            try:
                return self._in_order(values)
            except KeyError:
                pass
        if values.keys() != self._name_set:
            missing = sorted(self._name_set - values.keys())
            unknown = sorted(values.keys() - self._name_set)
            raise TypeError(f"kernel arguments: missing {missing}, unknown {unknown}")
        return tuple(values[name] for name in self.names)


class GeneratedKernel:
    """A compiled generated kernel, called with its arguments by name; ``task``: the
    serial task its parallel loop calls (:func:`task_loop`), if any."""

    def __init__(self, kernel: ParallelKernel, parameters: KernelParameters, task=None):
        self.kernel = kernel
        self.parameters = parameters
        self.task = task
        self._task_address = (address_of(task),) if task is not None else ()

    def __call__(self, **values):
        return self.launch(values)

    def launch(self, values: dict):
        """Run with ``values`` (parameter name -> value)."""
        return self.kernel(*self._task_address, *self.parameters.arguments(values))

    def bind(self, **fixed) -> Callable:
        """The kernel with its trailing parameters given now (``fixed``, by name): call the
        result with the leading ones, in order. A prepared run binds the values its shapes
        fix once, and passes only its arrays per call."""
        names = self.parameters.names
        trailing = names[len(names) - len(fixed):]
        if set(trailing) != fixed.keys():
            raise TypeError(f"bind: {sorted(fixed)} are not the trailing parameters "
                            f"{list(trailing)}")
        kernel, rest = self.kernel, tuple(fixed[name] for name in trailing)
        first = self._task_address
        return lambda *leading: kernel(*first, *leading, *rest)

    def inspect_asm(self) -> dict:
        """The assembly of the kernel and of its task, by signature."""
        tasks = self.task.inspect_asm() if self.task is not None else {}
        return {**self.kernel.inspect_asm(), **{("task",) + tuple(key): text
                                                 for key, text in tasks.items()}}

    def __getattr__(self, name):  # inspect_llvm and the like: the compiled kernel's
        return getattr(self.kernel, name)


def load_kernel(family: str, render: Callable[[], str], parameters: KernelParameters,
                dtype: str) -> GeneratedKernel:
    """The compiled ``kernel`` function of the source ``render()`` gives for ``family`` (a
    name that fixes the tile shape and dtype), memoised per process by family: a call
    costs one dict lookup, not a render and a hash."""
    kernel = _kernels.get(family)
    if kernel is not None:
        return kernel
    with _lock:
        if family in _kernels:
            return _kernels[family]
        source = render()
        digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        module_name = f"numbaconv_{family}_{digest}"
        path = kernel_dir() / f"{module_name}.py"
        if not path.exists() or path.read_text() != source:
            _write_atomically(path, source)
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        with slp_vectoriser():  # the task, declared with its signature, compiles here
            spec.loader.exec_module(module)
        if parameters.calls_task != hasattr(module, "TASK"):
            raise RuntimeError(f"{family}: its parameters say calls_task="
                               f"{parameters.calls_task}, its source "
                               f"{'has no' if parameters.calls_task else 'has a'} task_loop")
        kernel = GeneratedKernel(ParallelKernel(module.kernel, parameters.signature(dtype),
                                                compiling=slp_vectoriser), parameters,
                                 getattr(module, "TASK", None))
        kernel.kernel.variant()  # compile now, under the lock
        _kernels[family] = kernel
        return kernel


def compiled_variants() -> int:
    """How many generated kernels this process has compiled or loaded."""
    return len(_kernels)


class Source:
    """A tiny line-oriented writer for kernel templates."""

    def __init__(self):
        self.lines: list[str] = []
        self.depth = 0
        self._later: list[str] = []

    def __call__(self, *lines: str):
        for line in lines:
            self.lines.append("    " * self.depth + line if line else "")
        return self

    @contextlib.contextmanager
    def block(self, header: str):
        self(header)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    @contextlib.contextmanager
    def after_all(self):
        """Lines written inside go after everything else, from depth 0 (another function
        of the module)."""
        lines, depth = self.lines, self.depth
        self.lines, self.depth = [], 0
        try:
            yield
        finally:
            self._later += self.lines
            self.lines, self.depth = lines, depth

    def text(self) -> str:
        return "\n".join(self.lines + self._later) + "\n"


@contextlib.contextmanager
def task_loop(src: Source, count: str, vector_bits: int, name: str,
              parameters: KernelParameters, dtype: str, local_kinds: dict | None = None):
    """``for task in prange(count): name(task, *arguments)``, the body written inside this
    block becoming ``name``, a serial function of the module compiled for
    ``vector_bits``-wide vectors; its arguments: the kernel's ``parameters``, then the
    kernel's locals the body reads (``local_kinds``: name -> kind, as in
    :class:`KernelParameters`). Why not the body in the loop: Numba's parallel passes over
    an unrolled register tile took most of its compile time; over a one-line loop they take
    none. Why a call through the task's address (:mod:`.task_calls`): a call by name would
    compile the task twice more, inside the kernel."""
    local_kinds = local_kinds or {}
    names = ", ".join(parameters.names + tuple(local_kinds))
    kinds = parameters.kinds + tuple(local_kinds.values())
    with src.block(f"for task in prange({count}):"):
        # int64: Numba's parallel lowering makes the loop index unsigned.
        src(f"call_task({name}, task_address, (int64(task), {names}))")
    with src.after_all():
        src("", "", f"@njit(task_signature({kinds!r}, {dtype!r}), {TASK_OPTIONS})")
        with src.block(f"def {name}(task, {names}):"):
            src(f"{HINTS[vector_bits]}()")
            yield
        src("", "", f"TASK = {name}")


#: The decorators of a generated module's parallel kernel and of the serial helpers its
#: task calls by name (kept out of line, so that the task's body stays short), and the
#: options of the task (declared with its signature by :func:`task_loop`).
KERNEL_DECORATOR = (f"@njit(parallel=True, cache=True, nogil=True, "
                    f"fastmath={set(sorted(FASTMATH))!r})")
HELPER_DECORATOR = (f"@njit(cache=True, nogil=True, inline='never', "
                    f"fastmath={set(sorted(FASTMATH))!r})")
TASK_OPTIONS = f"cache=True, nogil=True, fastmath={set(sorted(FASTMATH))!r}"


def preamble(src: Source, doc: str, dtype: str, vector_bits: int, decorator: bool = True,
             lanes: int | None = None, arithmetic: bool = False, storage: str | None = None):
    """The module's docstring and imports (``lanes``: also :mod:`numbaconv.cpu.simd`'s
    operations on vectors of that many elements, with its arithmetic if ``arithmetic``, and
    ``load_bits, store_bits`` (vectors), ``broadcast_bits`` (one element to every lane)
    and ``bits_value`` (one element) for arrays of the half type ``storage``), then
    (``decorator``) the kernel's decorator."""
    src(f'"""{doc}"""',
        "from numba import int64, njit, prange, uint64",
        f"from numpy import empty, {dtype}",
        "from numbaconv.cpu.codegen import task_signature",
        f"from numbaconv.cpu.task_calls import call_task  # task calls {TASK_CALLS_DIGEST}",
        f"from numbaconv.cpu.vector_width import {HINTS[vector_bits]}")
    if lanes is not None:
        names = ("add, lanes_sum, negate, operations, prefetch, scale, subtract" if arithmetic
                 else "operations, prefetch")
        if storage is not None:
            names += ", storage_broadcast, storage_operations, storage_value"
        src(f"from numbaconv.cpu.simd import {names}  # simd {SIMD_DIGEST}",
            "",
            f"load, store, broadcast, multiply_add = operations({lanes})")
        if storage is not None:
            src(f"load_bits, store_bits = storage_operations({lanes}, {storage!r})",
                f"broadcast_bits = storage_broadcast({lanes}, {storage!r})",
                f"bits_value = storage_value({storage!r})")
    if decorator:
        src("", "", KERNEL_DECORATOR)
