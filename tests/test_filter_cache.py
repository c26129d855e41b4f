"""Winograd's transformed filters kept from call to call: reused only for the same bits."""

import gc
import threading

import numpy as np
import pytest
from conftest import assert_matches
from test_winograd import TILE, geometry, operands, problem

from numbaconv.cpu import families, winograd
from numbaconv.cpu.tiled import TiledSchedule
from numbaconv.cpu.winograd import WinogradSchedule, filter_cache

SHAPE = (1, 9, 10, 8)


@pytest.fixture(autouse=True)
def own_thread_cache():
    """Earlier tests' filters collected (their entries gone), and this test's after it."""
    gc.collect()
    yield
    gc.collect()


def prepared(primitive, over_tiles=False, dtype=np.float32):
    """A Winograd schedule's prepared run (``over_tiles``: over the tiled family's)."""
    g = geometry(SHAPE, "SAME", 16)
    itemsize = np.dtype(dtype).itemsize
    otherwise = (families.CPU.fit(TiledSchedule(register_tile=(3, 8)), primitive, g, itemsize)
                 if over_tiles else None)
    schedule = WinogradSchedule(register_tile=TILE[primitive], otherwise=otherwise)
    return families.prepare(primitive, g, schedule, dtype)


def counts():
    found = filter_cache.statistics()
    return found["hits"], found["misses"]


@pytest.mark.parametrize("primitive", ["forward", "backward_data"])
def test_a_filter_passed_again_unchanged_reuses_its_transform(rng, primitive):
    """The first call transforms into scratch, the second keeps its transform, the rest
    reuse it; every result is the reference's."""
    run, p = prepared(primitive), problem(rng, SHAPE, "SAME", 16, np.float32)
    hits, misses = counts()
    results = [run(*operands(primitive, p)) for _ in range(4)]
    assert counts() == (hits + 2, misses + 1)
    for result in results:
        assert_matches(result, p.expected(primitive), np.float32)
    np.testing.assert_array_equal(results[3], results[1])


@pytest.mark.parametrize("where", ["first", "last", "middle"])
def test_a_filter_changed_in_place_is_transformed_again(rng, where):
    """One value changed anywhere (the first, the last task's share, between): never the
    stale transform."""
    run, p = prepared("forward"), problem(rng, SHAPE, "SAME", 16, np.float32)
    for _ in range(3):
        run(p.x, p.w)
    flat = p.w.reshape(-1)
    flat[{"first": 0, "last": -1, "middle": flat.size // 2 + 3}[where]] += 1.5
    hits, misses = counts()
    assert_matches(run(p.x, p.w), p.expected("forward"), np.float32)
    assert counts() == (hits, misses + 1)


@pytest.mark.parametrize("old, new", [(0.0, -0.0), (np.nan, -np.nan), (np.inf, np.nan)])
def test_equal_means_every_bit_equal(old, new):
    """Bits, not values: -0.0 against 0.0, or another NaN, is a change (whose transform
    may differ: a NaN's payload, the sign of a zero result)."""
    source = np.array([1.0, old, 2.0], np.float32)
    kept = source.copy()
    as_bits = lambda a: a.view(np.uint32)  # noqa: E731
    assert not filter_cache.refresh(as_bits(source), as_bits(kept))
    source[1] = new
    assert filter_cache.refresh(as_bits(source), as_bits(kept))
    np.testing.assert_array_equal(as_bits(kept), as_bits(source))  # copied
    assert not filter_cache.refresh(as_bits(source), as_bits(kept))


def test_forget_makes_every_transform_again(rng):
    run, p = prepared("forward"), problem(rng, SHAPE, "SAME", 16, np.float32)
    for _ in range(3):
        run(p.x, p.w)
    hits, misses = counts()
    filter_cache.forget()
    assert_matches(run(p.x, p.w), p.expected("forward"), np.float32)
    run(p.x, p.w)
    assert counts() == (hits + 1, misses + 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("primitive", ["forward", "backward_data"])
def test_over_another_schedule_winograd_runs_on_an_unchanged_filter(rng, primitive, dtype):
    """The other schedule runs a filter's first two calls (the second keeps its bits); a
    third with the same bits makes the transform and runs Winograd, later ones reuse it."""
    run = prepared(primitive, over_tiles=True, dtype=dtype)
    p = problem(rng, SHAPE, "SAME", 16, dtype)
    hits, misses = counts()
    results = [run(*operands(primitive, p)) for _ in range(4)]
    assert counts() == (hits + 1, misses + 1)
    for result in results:
        assert_matches(result, p.expected(primitive), dtype)


def test_over_another_schedule_a_filter_that_changes_is_given_up(rng):
    """A filter changed between two calls (training) runs the other schedule from then on,
    without comparing or keeping anything more."""
    run, p = prepared("forward", over_tiles=True), problem(rng, SHAPE, "SAME", 16, np.float32)
    held = filter_cache.statistics()["held_bytes"]
    run(p.x, p.w)
    run(p.x, p.w)
    assert filter_cache.statistics()["held_bytes"] == held + p.w.nbytes  # its bits
    hits, misses = counts()
    for step in range(3):
        p.w *= 1.01
        assert_matches(run(p.x, p.w), p.expected("forward"), np.float32)
    assert counts() == (hits, misses)
    assert filter_cache.statistics()["held_bytes"] == held


def test_a_winograd_schedule_over_another_needs_its_run():
    g = geometry(SHAPE, "SAME", 16)
    over = WinogradSchedule(register_tile=(3, 8), otherwise=TiledSchedule(register_tile=(3, 16)))
    with pytest.raises(ValueError, match="prepared run"):
        winograd.prepare("forward", g, over, np.float32)
    with pytest.raises(ValueError, match="otherwise"):
        WinogradSchedule(otherwise=WinogradSchedule())


def test_entries_go_with_their_filter(rng):
    run, p = prepared("forward"), problem(rng, SHAPE, "SAME", 16, np.float32)
    before = filter_cache.statistics()
    w = p.w.copy()
    for _ in range(3):
        run(p.x, w)
    assert filter_cache.statistics()["held_bytes"] > before["held_bytes"]
    del w
    gc.collect()
    assert filter_cache.statistics()["held_bytes"] == before["held_bytes"]
    assert filter_cache.statistics()["filters"] == before["filters"]


@pytest.mark.parametrize("over_tiles", [False, True], ids=["winograd", "over_tiles"])
def test_the_bound_keeps_nothing_beyond_it(rng, monkeypatch, over_tiles):
    monkeypatch.setenv(filter_cache.CACHE_ENV, "0")
    run = prepared("forward", over_tiles=over_tiles)
    p = problem(rng, SHAPE, "SAME", 16, np.float32)
    before = filter_cache.statistics()
    for _ in range(5):
        assert_matches(run(p.x, p.w), p.expected("forward"), np.float32)
    assert filter_cache.statistics()["held_bytes"] == before["held_bytes"]
    assert counts() == (before["hits"], before["misses"])


def test_threads_keep_their_own_transforms(rng):
    """A filter in use by two threads: each keeps its own entry (nothing shared that one
    thread could rewrite while the other reads it)."""
    run, p = prepared("forward"), problem(rng, SHAPE, "SAME", 16, np.float32)
    for _ in range(3):
        run(p.x, p.w)
    found = {}

    def other_thread():
        results = [run(p.x, p.w) for _ in range(3)]
        found.update(filter_cache.statistics(), results=results)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert (found["hits"], found["misses"]) == (1, 1)
    for result in found["results"]:
        assert_matches(result, p.expected("forward"), np.float32)


def test_a_filter_reshaped_in_place_is_transformed_again(rng):
    """The same array object and the same bits, its shape changed in place (HWIO's C and K
    swapped: as many values): a transform of the other layout is never reused."""
    p = problem(rng, SHAPE, "SAME", 16, np.float32)
    run = prepared("forward")
    for _ in range(3):
        run(p.x, p.w)
    q = problem(rng, SHAPE[:3] + (16,), "SAME", 8, np.float32)
    q.w = p.w
    q.w.shape = (3, 3, 16, 8)
    swapped = families.prepare("forward", geometry(q.x.shape, "SAME", 8),
                               WinogradSchedule(register_tile=TILE["forward"]), np.float32)
    for _ in range(3):
        assert_matches(swapped(q.x, q.w), q.expected("forward"), np.float32)
