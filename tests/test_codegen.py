"""Generated register-tile kernels: FMAs of the CPU's full vector width in the hot loop, no
cache collisions between tiles, dtypes or widths."""

import platform
import re
import sys

import numpy as np
import pytest
from numba import int64, njit
from numba.core.errors import TypingError

import reference as ref
from numbaconv.cpu import codegen, disk_cache, families, simd, task_calls, tiled
from numbaconv.cpu.tiled import phases, templates
from numbaconv.geometry import conv_geometry
from numbaconv.machine import Machine, this_machine


@pytest.fixture
def fresh_kernel_dir(tmp_path, monkeypatch):
    """A new kernel directory: nothing cached there, so the kernels are compiled here and
    their assembly can be inspected."""
    monkeypatch.setattr(disk_cache, "_kernel_dir", tmp_path)
    monkeypatch.setattr(codegen, "_kernels", {})
    return tmp_path


def packed_fmas(kernel, register: str) -> int:
    """Packed float32 FMAs on ``register`` (``ymm``: 256-bit, ``zmm``: 512-bit) registers."""
    assembly = "\n".join(kernel.inspect_asm().values())
    return len(re.findall(rf"vfmadd\w*ps\s+[^\n]*%{register}", assembly))


WIDEST = this_machine().vector_bits
REGISTER = {512: "zmm", 256: "ymm"}.get(WIDEST)


@pytest.mark.skipif(REGISTER is None, reason="no 256- or 512-bit FMA on this CPU")
@pytest.mark.parametrize("make, tile", [(templates.forward_kernel, (4, 16)),
                                        (templates.forward_kernel, (5, 16)),
                                        (templates.forward_kernel, (3, 32)),
                                        (templates.forward_panels_kernel, (5, 16)),
                                        (templates.backward_filter_kernel, (4, 16))])
def test_register_tiles_compile_to_the_widest_fmas(fresh_kernel_dir, make, tile):
    """A float32 tile of rows × channels is rows · channels / lanes accumulator vectors of
    the CPU's widest kind: at least that many FMAs of that width per step, whatever LLVM's
    tuning for the core prefers."""
    rows, channels = tile
    kernel = make(rows, channels, "float32", WIDEST)
    assert packed_fmas(kernel, REGISTER) >= rows * channels // (WIDEST // 32)


def test_variants_get_distinct_files(fresh_kernel_dir):
    sources = {templates.render_forward(p, k, d, v) for p in (2, 4) for k in (8, 16)
               for d in ("float32", "float64") for v in (256, 512)}
    assert len(sources) == 16
    templates.forward_kernel(2, 8, "float64", 256)
    templates.forward_kernel(2, 8, "float64", 512)
    files = sorted(path.name for path in fresh_kernel_dir.glob("numbaconv_*.py"))
    assert len(files) == 2 and files[0] != files[1]
    assert codegen.compiled_variants() == 2


def test_the_kernel_calls_its_task_through_its_address(fresh_kernel_dir):
    """The task is compiled once, for the one signature it is declared with, and is not
    linked into the parallel kernel (where LLVM would compile it twice more)."""
    kernel = templates.forward_panels_kernel(1, 8, "float64", 512)
    assert len(kernel.task.signatures) == 1
    llvm = "\n".join(kernel.kernel.parallel.inspect_llvm().values())
    defined = re.findall(r"^define .*$", llvm, re.MULTILINE)
    assert defined and not any(kernel.task.py_func.__name__ in line for line in defined)


def test_a_task_runs_through_its_address_only_with_its_declared_types():
    @njit("void(int64, float64[::1])")
    def task(index, values):
        values[index] = 2.0 * index

    @njit
    def caller(address, values):
        for index in range(values.size):
            task_calls.call_task(task, address, (int64(index), values))

    values = np.full(3, np.nan)
    caller(task_calls.address_of(task), values)
    assert values.tolist() == [0.0, 2.0, 4.0]
    with pytest.raises(TypingError, match="declared for"):
        caller(task_calls.address_of(task), np.zeros(3, np.float32))


@pytest.mark.parametrize("dtype, lanes", [(np.float32, 16), (np.float64, 8), (np.float32, 4)])
def test_simd_operations_work_lane_by_lane(dtype, lanes):
    """load, broadcast, multiply_add and store on vectors at any element offset."""
    load, store, broadcast, multiply_add = simd.operations(lanes)

    @njit(fastmath={"contract"})
    def axpy_at(a, x, y, out, offset):
        store(out, offset, multiply_add(broadcast(a), load(x, offset), load(y, offset)))

    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal(3 * lanes).astype(dtype) for _ in range(2))
    out = np.full_like(x, np.nan)
    axpy_at(dtype(1.5), x, y, out, np.uint64(1))
    np.testing.assert_allclose(out[1:1 + lanes], 1.5 * x[1:1 + lanes] + y[1:1 + lanes],
                               rtol=1e-6)
    assert np.isnan(out[0]) and np.isnan(out[1 + lanes:]).all()  # nothing else written


def test_prefetch_is_a_prefetch_instruction_that_changes_nothing_even_past_the_end():
    @njit
    def total_prefetching(values, distance):
        found = 0.0
        for i in range(values.shape[0]):
            simd.prefetch(values, np.uint64(i + distance))
            found += values[i]
        return found

    values = np.random.default_rng(0).standard_normal(1000)
    # 10**9 elements on: far past the array, where a load would fault and a prefetch never does
    for distance in (0, 64, 10**9):
        assert total_prefetching(values, distance) == pytest.approx(values.sum(), rel=1e-12)
    if platform.machine().lower() in ("x86_64", "amd64"):  # PREFETCHT0 and its kin
        assembly = next(iter(total_prefetching.inspect_asm().values()))
        assert "prefetch" in assembly


@pytest.mark.parametrize("channels, bits, dtype, lanes", [
    (32, 512, "float32", 16), (16, 512, "float32", 16), (4, 512, "float32", 4),
    (16, 256, "float32", 8), (8, 512, "float64", 8), (2, 512, "float64", 2),
    (24, 512, "float32", 8)])
def test_a_tile_is_whole_vectors_of_the_widest_lanes_that_divide_it(channels, bits, dtype,
                                                                    lanes):
    assert simd.vector_lanes(channels, bits, dtype) == lanes


def test_simd_arithmetic_promotes_as_numbas_scalars_do():
    """A float32 vector times a Python float is computed in float64 and rounded once when
    stored, as the scalar statement ``out[i] = x[i] + 2.0 * y[i] - (-x[i])`` is."""
    load, store, _, _ = simd.operations(8)

    @njit(fastmath={"contract"})
    def combine(x, y, out):
        a, b = load(x, np.uint64(0)), load(y, np.uint64(0))
        store(out, np.uint64(0), simd.subtract(simd.add(a, simd.scale(2.0, b)), simd.negate(a)))
        return simd.lanes_sum(a)

    @njit(fastmath={"contract"})
    def scalar(x, y, out):
        for i in range(8):
            out[i] = x[i] + 2.0 * y[i] - (-x[i])

    rng = np.random.default_rng(1)
    x, y = (rng.standard_normal(8).astype(np.float32) for _ in range(2))
    got, expected = np.empty(8, np.float32), np.empty(8, np.float32)
    total = combine(x, y, got)
    scalar(x, y, expected)
    np.testing.assert_array_equal(got, expected)
    assert total == pytest.approx(float(x.astype(np.float64).sum()), rel=1e-6)


NARROWER = {256: Machine("an AVX2 x86", "znver3", ("avx2", "fma", "avx"), 2),
            128: Machine("an SSE x86", "nehalem", ("sse4.2",), 2)}


@pytest.mark.parametrize("bits", sorted(NARROWER))
def test_tiles_of_narrower_vectors_compute_the_same_function(monkeypatch, bits):
    """On a CPU with 256- or 128-bit vectors a 16-channel tile is 2 or 4 vectors: the
    tiled family's kernels for that width give the reference's results (and are the
    ones that ran: their files name the width)."""
    machine = NARROWER[bits]
    monkeypatch.setattr(phases, "this_machine", lambda: machine)
    monkeypatch.setattr(tiled, "this_machine", lambda: machine)
    rng = np.random.default_rng(bits)
    g = conv_geometry((1, 6, 7, 16), (3, 3, 16, 16), (1, 1), (1, 1), "SAME")
    x, w, dy = (rng.standard_normal(shape).astype(np.float32)
                for shape in (g.input_shape, g.filter_shape, g.output_shape))
    args = ((1, 1), (1, 1), ((1, 1), (1, 1)))
    cases = {"forward": ((x, w), (4, 16), "packed_panels", ref.conv2d(x, w, *args)),
             "backward_data": ((dy, w), (3, 16), "pixel_tiles_outer",
                               ref.conv2d_backprop_input(x.shape, w, dy, *args)),
             "backward_filter": ((x, dy), (2, 16), "pixel_tiles_outer",
                                 ref.conv2d_backprop_filter(x, w.shape, dy, *args))}
    for primitive, (operands, tile, order, expected) in cases.items():
        schedule = tiled.fit(tiled.TiledSchedule(loop_order=order, register_tile=tile),
                             primitive, g, 4)
        got = families.run(primitive, operands, g, schedule)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=primitive)
    names = [name for name in sys.modules if name.startswith("numbaconv_")]
    assert any(f"_v{bits}_" in name for name in names), names


def test_a_change_of_the_simd_module_gives_new_kernel_files(monkeypatch):
    """Numba caches a generated kernel by its own file: the file names the simd module's
    digest, so code compiled with an older simd module is never loaded."""
    before = templates.render_forward(4, 16, "float32", 512)
    monkeypatch.setattr(codegen, "SIMD_DIGEST", "0" * 16)
    assert templates.render_forward(4, 16, "float32", 512) != before
