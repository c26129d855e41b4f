"""Generated register-tile kernels: 256-bit FMAs in the hot loop, no cache collisions."""

import re

import pytest

from numbaconv.cpu import codegen, disk_cache
from numbaconv.cpu.tiled import templates as tiled


@pytest.fixture
def fresh_kernel_dir(tmp_path, monkeypatch):
    """A new kernel directory: nothing cached there, so the kernels are compiled here and
    their assembly can be inspected."""
    monkeypatch.setattr(disk_cache, "_kernel_dir", tmp_path)
    monkeypatch.setattr(codegen, "_kernels", {})
    return tmp_path


def vector_fmas(kernel) -> int:
    """Packed float32 FMAs in 256-bit units: a 512-bit one (AVX-512 machines, where LLVM
    picks zmm registers) counts twice."""
    assembly = "\n".join(kernel.inspect_asm().values())
    return (len(re.findall(r"vfmadd\w*ps\s+[^\n]*%ymm", assembly))
            + 2 * len(re.findall(r"vfmadd\w*ps\s+[^\n]*%zmm", assembly)))


@pytest.mark.parametrize("make, tile", [(tiled.forward_kernel, (4, 16)),
                                        (tiled.forward_kernel, (5, 16)),
                                        (tiled.forward_kernel, (3, 32)),
                                        (tiled.forward_panels_kernel, (5, 16)),
                                        (tiled.backward_filter_kernel, (4, 16))])
def test_register_tiles_compile_to_256_bit_fmas(fresh_kernel_dir, make, tile):
    """A float32 tile of rows × channels is rows · channels / 8 ymm accumulators (half as
    many zmm ones): at least that many 256-bit FMAs per step, whatever the row count."""
    rows, channels = tile
    assert vector_fmas(make(rows, channels, "float32")) >= rows * channels // 8


def test_variants_get_distinct_files(fresh_kernel_dir):
    sources = {tiled.render_forward(p, k, d) for p in (2, 4) for k in (8, 16)
               for d in ("float32", "float64")}
    assert len(sources) == 8
    tiled.forward_kernel(2, 8, "float64")
    tiled.forward_kernel(2, 16, "float64")
    files = sorted(path.name for path in fresh_kernel_dir.glob("numbaconv_*.py"))
    assert len(files) == 2 and files[0] != files[1]
    assert codegen.compiled_variants() == 2
