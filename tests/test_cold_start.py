"""A call whose chosen kernels were never built runs a starter schedule while a background
process builds them; the call after the build runs the chosen schedule."""

import numpy as np
import pytest
from conftest import assert_matches, random

import numbaconv as nc
import reference as ref
from numbaconv import api, configs
from numbaconv.cpu import cold_start, families, layout
from numbaconv.cpu.tiled import TiledSchedule
from numbaconv.cpu.winograd import WinogradSchedule, filter_cache
from numbaconv.geometry import conv_geometry

X_SHAPE, W_SHAPE = (1, 12, 12, 16), (3, 3, 16, 32)
CHOSEN = TiledSchedule(loop_order="pixel_tiles_outer", register_tile=(6, 16))
SAME = ((1, 1), (1, 1), ((1, 1), (1, 1)))


@pytest.fixture
def cold(tmp_path, monkeypatch):
    """Background builds on, no build markers yet, a tuned entry choosing ``CHOSEN``; the
    schedules the ops prepare, in order."""
    monkeypatch.setenv(cold_start.ENV, "1")
    monkeypatch.setattr(cold_start, "_marker", lambda key: tmp_path / "built" / str(hash(key)))
    monkeypatch.setattr(cold_start, "_builds", {})
    monkeypatch.setattr(api, "_remembered", {})
    monkeypatch.setenv(configs.CONFIG_ENV, str(tmp_path / "configs"))
    g = conv_geometry(X_SHAPE, W_SHAPE, (1, 1), (1, 1), "SAME")
    schedule = families.CPU.fit(CHOSEN, "forward", g, 4)
    configs.save_entries(configs.user_config_path(), {configs.entry_key("forward", "float32", g):
                         configs.make_entry("forward", "float32", g, schedule, 1e-3, 1e-3)})
    prepared = []
    real = families.prepare

    def recording(primitive, g, schedule, dtype, **options):
        prepared.append(schedule)
        return real(primitive, g, schedule, dtype, **options)

    monkeypatch.setattr(families, "prepare", recording)
    return prepared


def test_a_starter_runs_until_the_background_build_is_done(rng, cold):
    x, w = random(rng, X_SHAPE, np.float32), random(rng, W_SHAPE, np.float32)
    expected = ref.conv2d(x, w, *SAME)
    assert_matches(nc.conv2d(x, w, 1, "SAME"), expected, np.float32)
    starter = cold[-1]
    assert starter.register_tile != CHOSEN.register_tile
    (build,) = cold_start._builds.values()
    assert build.wait(timeout=300)
    assert_matches(nc.conv2d(x, w, 1, "SAME"), expected, np.float32)
    assert cold[-1].register_tile == CHOSEN.register_tile
    assert_matches(nc.conv2d(x, w, 1, "SAME"), expected, np.float32)  # remembered now
    assert len(cold) == 2
    assert "kernels: built" in str(nc.explain("conv2d", x, w, 1, "SAME"))


class FakeProcess:
    """A background process that ends when the test sets its return code."""

    def __init__(self, returncode=None):
        self.returncode = returncode

    def poll(self):
        return self.returncode


@pytest.fixture
def processes(monkeypatch):
    """Background builds get fake processes, still running: the list of them."""
    started = []

    def start(self):
        self._process = FakeProcess()
        started.append(self._process)

    monkeypatch.setattr(cold_start.Build, "start", start)
    return started


def test_calls_keep_the_starter_while_the_build_runs(rng, cold, processes):
    x, w = random(rng, X_SHAPE, np.float32), random(rng, W_SHAPE, np.float32)
    for _ in range(3):
        nc.conv2d(x, w, 1, "SAME")
    assert len(cold) == 1 and cold[0].register_tile != CHOSEN.register_tile
    assert "building in the background" in str(nc.explain("conv2d", x, w, 1, "SAME"))
    (process,) = processes
    process.returncode = 0
    assert_matches(nc.conv2d(x, w, 1, "SAME"), ref.conv2d(x, w, *SAME), np.float32)
    assert [s.register_tile for s in cold][1:] == [CHOSEN.register_tile]


def test_built_kernels_run_at_once_and_the_first_run_marks_them(rng, cold, monkeypatch):
    x, w = random(rng, X_SHAPE, np.float32), random(rng, W_SHAPE, np.float32)
    monkeypatch.setenv(cold_start.ENV, "0")  # built in the call, then marked
    nc.conv2d(x, w, 1, "SAME")
    assert [s.register_tile for s in cold] == [CHOSEN.register_tile]
    monkeypatch.setenv(cold_start.ENV, "1")
    monkeypatch.setattr(api, "_remembered", {})
    assert_matches(nc.conv2d(x, w, 1, "SAME"), ref.conv2d(x, w, *SAME), np.float32)
    assert [s.register_tile for s in cold] == [CHOSEN.register_tile] * 2
    assert cold_start._builds == {}


def test_a_starter_compiles_nothing_but_its_register_tile(rng, cold, processes, monkeypatch):
    # Copies large enough that a chosen schedule makes them by parallel kernels.
    x_shape, w_shape = (1, 40, 40, 48), (3, 3, 48, 32)
    g = conv_geometry(x_shape, w_shape, (1, 1), (1, 1), "SAME")
    configs.save_entries(configs.user_config_path(), {
        configs.entry_key(p, "float32", g): configs.make_entry(
            p, "float32", g, families.CPU.fit(CHOSEN, p, g, 4), 1e-3, 1e-3)
        for p in ("forward", "backward_data", "backward_filter")})

    def not_compiled(*args):
        raise AssertionError("a starter compiled a copy kernel")

    for kernel in ("pad_rows_kernel", "pack_filter_kernel", "swap_channels_kernel"):
        monkeypatch.setattr(layout, kernel, not_compiled)
    x, w = random(rng, x_shape, np.float32), random(rng, w_shape, np.float32)
    dy = random(rng, x_shape[:3] + w_shape[3:], np.float32)
    assert_matches(nc.conv2d(x, w, 1, "SAME"), ref.conv2d(x, w, *SAME), np.float32)
    assert_matches(nc.conv2d_backprop_input(x_shape, w, dy, 1, "SAME"),
                   ref.conv2d_backprop_input(x_shape, w, dy, *SAME), np.float32)
    assert_matches(nc.conv2d_backprop_filter(x, w_shape, dy, 1, "SAME"),
                   ref.conv2d_backprop_filter(x, w_shape, dy, *SAME), np.float32)
    assert len(cold_start._builds) == 3
    assert all(s.register_tile != CHOSEN.register_tile for s in cold)


def test_a_failed_build_leaves_the_call_to_build_the_kernels(rng, cold, processes):
    x, w = random(rng, X_SHAPE, np.float32), random(rng, W_SHAPE, np.float32)
    nc.conv2d(x, w, 1, "SAME")  # the starter
    processes[0].returncode = 1
    assert_matches(nc.conv2d(x, w, 1, "SAME"), ref.conv2d(x, w, *SAME), np.float32)
    assert cold[-1].register_tile == CHOSEN.register_tile


def test_without_a_process_to_start_the_call_builds_its_kernels(rng, cold, monkeypatch):
    def no_interpreter(self):
        raise FileNotFoundError("no python")

    monkeypatch.setattr(cold_start.Build, "start", no_interpreter)
    x, w = random(rng, X_SHAPE, np.float32), random(rng, W_SHAPE, np.float32)
    assert_matches(nc.conv2d(x, w, 1, "SAME"), ref.conv2d(x, w, *SAME), np.float32)
    assert [s.register_tile for s in cold] == [CHOSEN.register_tile]


def test_builds_beyond_the_running_limit_wait_their_turn(monkeypatch, processes):
    monkeypatch.setattr(cold_start, "_builds", {})
    monkeypatch.setattr(cold_start, "RUNNING_BUILDS", 1)
    g = conv_geometry(X_SHAPE, W_SHAPE, (1, 1), (1, 1), "SAME")
    for key in ("a", "b"):
        cold_start._builds[key] = cold_start.Build(key, "forward", g, CHOSEN, np.float32)
    first, second = cold_start._builds.values()
    assert not first.done() and len(processes) == 1
    processes[0].returncode = 0
    assert first.done() and not second.done() and len(processes) == 2


def test_no_starter_for_kernels_compiled_on_first_use_or_without_a_legal_one(cold):
    g = conv_geometry((1, 6, 6, 3), (3, 3, 3, 5), (1, 1), (1, 1), "SAME")
    direct = families.CPU.parse({"algorithm": "direct"})
    assert cold_start.schedule_now("forward", g, direct, np.float32).schedule == direct
    odd = TiledSchedule(register_tile=(4, 5))  # 5 channels: no vector-wide starter fits
    assert cold_start.schedule_now("forward", g, odd, np.float32) == cold_start.Now(
        odd, unmarked=cold_start.build_key("forward", odd, np.float32))


def test_the_build_key_ignores_the_task_split():
    a = TiledSchedule(register_tile=(8, 32), channel_block=64)
    b = TiledSchedule(register_tile=(8, 32), channel_block=128, reduction_splits=3)
    c = TiledSchedule(register_tile=(4, 32), channel_block=64)
    key = cold_start.build_key
    assert key("forward", a, np.float32) == key("forward", b, np.float32)
    assert key("forward", a, np.float32) != key("forward", c, np.float32)
    assert key("forward", a, np.float32) != key("backward_data", a, np.float32)
    assert key("forward", a, np.float32) != key("forward", a, np.float64)


def test_the_background_work_builds_and_marks(tmp_path, monkeypatch):
    monkeypatch.setattr(cold_start, "_marker", lambda key: tmp_path / str(hash(key)))
    g = conv_geometry((1, 5, 5, 16), (3, 3, 16, 16), (1, 1), (1, 1), "VALID")
    schedule = families.CPU.fit(CHOSEN, "backward_filter", g, 4)
    spec = dict(primitive="backward_filter", geometry=configs.geometry_to_dict(g),
                schedule=schedule.to_dict(), dtype="float32")
    cold_start.build(spec)
    assert cold_start.is_built(cold_start.build_key("backward_filter", schedule, np.float32))


def test_a_half_type_call_builds_the_kernels_that_convert_it(tmp_path, monkeypatch):
    """The tiled kernels convert float16 and bfloat16 themselves (other kernels than the
    float32 ones): a half-type call's background build builds those, under a key of
    their own; schedules that do not convert keep the float32 key."""
    monkeypatch.setattr(cold_start, "_marker", lambda key: tmp_path / str(hash(key)))
    g = conv_geometry((1, 5, 5, 16), (3, 3, 16, 32), (1, 1), (1, 1), "SAME")
    panels = families.CPU.fit(TiledSchedule(loop_order="packed_panels", register_tile=(4, 16)),
                              "forward", g, 4)
    key = cold_start.build_key
    assert key("forward", panels, np.float32, "bfloat16") != key("forward", panels, np.float32)
    spec = dict(primitive="forward", geometry=configs.geometry_to_dict(g),
                schedule=panels.to_dict(), dtype="float32", storage="bfloat16")
    cold_start.build(spec)
    assert cold_start.is_built(key("forward", panels, np.float32, "bfloat16"))
    assert not cold_start.is_built(key("forward", panels, np.float32))
    direct = families.CPU.parse({"algorithm": "direct"})
    assert cold_start._converted("forward", g, direct, "bfloat16") is None
    assert cold_start._converted("forward", g, panels, "bfloat16") == "bfloat16"


def test_the_build_of_winograd_over_another_schedule_runs_both(tmp_path, monkeypatch):
    """Winograd over another family's schedule runs that one on a filter's first calls: the
    build (given the schedule as a config's dict) runs it until Winograd has run too, each
    one's kernels built."""
    monkeypatch.setattr(cold_start, "_marker", lambda key: tmp_path / str(hash(key)))
    g = conv_geometry((1, 6, 6, 16), (3, 3, 16, 32), (1, 1), (1, 1), "SAME")
    tiles = families.CPU.fit(CHOSEN, "forward", g, 4)
    schedule = WinogradSchedule(register_tile=(3, 16), otherwise=tiles)
    before = filter_cache.statistics()
    cold_start.build(dict(primitive="forward", geometry=configs.geometry_to_dict(g),
                          schedule=schedule.to_dict(), dtype="float32"))
    after = filter_cache.statistics()
    assert (after["misses"], after["hits"]) == (before["misses"] + 1, before["hits"] + 1)
    assert cold_start.is_built(cold_start.build_key("forward", schedule, np.float32))
