"""Sweeping the CPU's caches before the tuner's timed calls: how large the sweep is, and
that it writes."""

import numpy as np

from numbaconv.cpu import caches


def test_sysfs_sizes_are_read_in_bytes():
    assert caches.size_bytes("32768K\n") == 32 * 2**20
    assert caches.size_bytes("1M") == 2**20
    assert caches.size_bytes("512") == 512
    assert caches.size_bytes("") is None and caches.size_bytes("lots") is None


def test_the_last_level_is_the_highest_data_or_unified_level(tmp_path):
    for index, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "32K"),
                                                 (2, "Unified", "2048K"),
                                                 (3, "Unified", "36864K")]):
        folder = tmp_path / f"index{index}"
        folder.mkdir()
        (folder / "level").write_text(f"{level}\n")
        (folder / "type").write_text(f"{kind}\n")
        (folder / "size").write_text(f"{size}\n")
    assert caches.last_level_cache_bytes(tmp_path) == 36 * 2**20
    assert caches.last_level_cache_bytes(tmp_path / "missing") is None


def test_a_sweep_writes_every_element():
    buffer = np.zeros(10_001, np.float32)
    caches._sweep(buffer)
    caches._sweep(buffer)
    assert np.all(buffer == 2.0)
    caches.sweeper(cache_bytes=2**16)()  # a small one runs
