"""The machine model: what the kernels' choices derive from, for machines this one is not."""

import numpy as np
import pytest

from numbaconv import configs
from numbaconv.cpu import depthwise, tiled, winograd
from numbaconv.cpu.families import CPU
from numbaconv.cpu.rule import calibrated_half_panels, rule
from numbaconv.cpu.tasks import TARGET_TASKS
from numbaconv.cpu.tiled import tile_menu
from numbaconv.geometry import conv_geometry
from numbaconv.machine import Machine, this_machine
from numbaconv.primitives import NAMES as PRIMITIVES
from numbaconv.workloads import WORKLOAD_DIR, load_workload

MACHINES = {
    "avx2_16_registers": Machine("AMD EPYC (Zen 3)", "znver3", ("avx2", "fma", "avx"), 2),
    "avx512_half_rate": Machine("AMD EPYC (Zen 4)", "znver4", ("avx512f", "avx2", "fma"), 2),
    "avx512_full_rate": Machine("Intel Xeon (Sapphire Rapids)", "sapphirerapids",
                                ("avx512f", "avx2", "fma"), 2),
    "unknown_x86": Machine("a future x86", "futurecore", ("avx2", "fma", "avx"), 64),
    "sse_only": Machine("an old x86", "nehalem", ("sse4.2",), 4),
}


def live_vectors(tile, itemsize, machine):
    """Vector registers a tile keeps live: its accumulators, its filter vectors, a broadcast."""
    rows, channels = tile
    vectors = max(1, channels // machine.lanes(itemsize))
    return rows * vectors + vectors + 1


@pytest.mark.parametrize("machine", MACHINES.values(), ids=MACHINES.keys())
@pytest.mark.parametrize("itemsize", [4, 8], ids=["f32", "f64"])
def test_every_tile_of_the_menu_fits_the_vector_registers(machine, itemsize):
    menu = tile_menu("forward", itemsize, machine)
    assert menu and len(set(menu)) == len(menu)
    for tile in menu:
        assert live_vectors(tile, itemsize, machine) <= machine.vector_registers, tile
    # Tiles of whole vectors come first; every channel count that is a multiple of half a
    # vector has some tile.
    assert menu[0][1] % machine.lanes(itemsize) == 0
    assert min(channels for _, channels in menu) <= max(1, machine.lanes(itemsize) // 2)


def test_the_menu_follows_the_fma_units():
    """Enough accumulators to hide the FMA latency: more for two full-width units."""
    full, half = MACHINES["avx512_full_rate"], MACHINES["avx512_half_rate"]
    accumulators = {name: tile_menu("forward", 4, m)[0][0] * tile_menu("forward", 4, m)[0][1]
                    // m.lanes(4) for name, m in (("full", full), ("half", half))}
    assert accumulators["full"] >= full.accumulators_needed
    assert accumulators["half"] >= half.accumulators_needed
    assert accumulators["full"] > accumulators["half"]
    calibrated = half.calibrated({"fma": {"chains_needed": 8}})
    assert calibrated.accumulators_needed == 8 and calibrated.key == half.key


@pytest.mark.parametrize("machine", MACHINES.values(), ids=MACHINES.keys())
def test_winograd_products_take_the_fewest_loads_per_multiply_add(machine):
    """The products are plain GEMMs: among the menu's tiles with its first tile's
    accumulators, the one loading least per FMA (a broadcast per row, a vector per column
    vector: 1/rows + 1/vectors) leads; backward-filter's sums keep the menu as it is."""
    menu, products = tile_menu("forward", 4, machine), winograd.tile_menu("forward", 4, machine)
    assert sorted(products) == sorted(menu)
    lanes = machine.lanes(4)
    accumulators = menu[0][0] * menu[0][1]
    assert products[0][0] * products[0][1] == accumulators
    loads = {tile: 1 / tile[0] + lanes / tile[1] for tile in menu}
    assert all(loads[products[0]] <= loads[tile] for tile in menu
               if tile[0] * tile[1] == accumulators)
    assert winograd.tile_menu("backward_data", 4, machine) == products
    assert (winograd.tile_menu("backward_filter", 4, machine)
            == tile_menu("backward_filter", 4, machine))


def test_full_rate_avx512_products_run_four_rows_of_four_vectors():
    """Sixteen accumulators: 4 × 4 vectors load 0.5 a multiply-add, 8 × 2 load 0.625."""
    machine = MACHINES["avx512_full_rate"]
    assert winograd.tile_menu("forward", 4, machine)[0] == (4, 4 * machine.lanes(4))
    assert tile_menu("forward", 4, machine)[0] == (8, 2 * machine.lanes(4))


@pytest.mark.parametrize("machine", MACHINES.values(), ids=MACHINES.keys())
def test_the_rule_is_legal_and_tiled_on_every_machine(machine):
    for workload in ("resnet50.yaml", "mobilenetv2.yaml", "resnext50.yaml"):
        for layer in load_workload(WORKLOAD_DIR / workload):
            g = layer.geometry
            for primitive in PRIMITIVES:
                for itemsize in (4, 8):
                    schedule = rule(primitive, g, itemsize, machine)
                    assert CPU.illegal_reason(primitive, g, schedule, itemsize) is None
                    if schedule.algorithm in ("tiled", "winograd"):  # both register tiles
                        assert live_vectors(schedule.register_tile, itemsize, machine) \
                            <= machine.vector_registers
                    pixels = g.batch * g.out_height * g.out_width
                    grouped = depthwise.grouped_default(primitive, g, itemsize, machine)
                    # (the model's lanes need not be this CPU's, whose kernels decide)
                    if g.is_depthwise or grouped and CPU.illegal_reason(
                            primitive, g, grouped, itemsize) is None:
                        assert schedule.algorithm == "depthwise", (layer.name, primitive)
                    elif winograd.default(primitive, g, itemsize, machine) is not None:
                        assert schedule.algorithm == "winograd", (layer.name, primitive)
                    elif g.in_channels % 8 == 0 and g.out_channels % 8 == 0 and pixels >= 16:
                        assert schedule.algorithm == "tiled", (layer.name, primitive)


def test_backward_filter_splits_its_rows_where_x_and_dy_stream():
    # Each group of input-channel tiles reads all of dy again; each split sums one more
    # partial filter. A launch wants about TARGET_TASKS tasks of (split, tap, group).
    tile = (8, 16)
    small = conv_geometry((1, 14, 14, 64), (1, 1, 64, 256))  # x and dy stay in cache
    streamed_small_filter = conv_geometry((8, 56, 56, 64), (1, 1, 64, 256))
    streamed_large_filter = conv_geometry((8, 14, 14, 256), (1, 1, 256, 1024))
    assert not tiled.streamed_reduction(small, 4)
    assert tiled.backward_filter_splits(small, tile, 4) == 1  # channel tiles suffice
    # in cache, but x and dy (4 MB) dwarf the filter (64 KB): the rows cut in two at least,
    # so that each thread reads its own part of them
    tall = conv_geometry((1, 56, 56, 64), (1, 1, 64, 256))
    assert not tiled.streamed_reduction(tall, 4)
    assert tiled.backward_filter_splits(tall, tile, 4) == tiled.MIN_ROW_SPLITS
    assert tiled.streamed_reduction(streamed_small_filter, 4)
    # the whole filter is one task's share: every task a split of the rows
    assert tiled.backward_filter_splits(streamed_small_filter, tile, 4) == TARGET_TASKS
    # the filter (1 MB) cut into TASK_FILTER_BYTES shares first: no rows left to split
    assert tiled.backward_filter_splits(streamed_large_filter, tile, 4) == 1
    # 3×3×64×64 (144 KB): tasks of 3 taps each, and 6 splits of the rows (18 tasks)
    nine_taps = conv_geometry((8, 56, 56, 64), (3, 3, 64, 64), padding="SAME")
    assert tiled.backward_filter_splits(nine_taps, tile, 4) == 6
    assert tiled.backward_filter_tap_groups(nine_taps, 6, 4) == 3


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_backward_filter_takes_packed_panels_where_a_group_has_many_output_channels(name):
    # 128 output channels and up at unit stride, or strided where x and dy stream; splits
    # that balance dy packed per task against partial filters: many for a small filter
    # under a large dy, one for a large filter.
    machine = MACHINES[name]

    def order(input_shape, filter_shape, stride=1):
        g = conv_geometry(input_shape, filter_shape, (stride, stride), padding="SAME")
        return rule("backward_filter", g, 4, machine).loop_order

    assert order((1, 14, 14, 256), (3, 3, 256, 256)) == "packed_panels"
    assert order((1, 56, 56, 64), (1, 1, 64, 256)) == "packed_panels"
    assert order((1, 56, 56, 64), (3, 3, 64, 64)) == "pixel_tiles_outer"
    assert order((1, 28, 28, 256), (3, 3, 256, 256), 2) == "pixel_tiles_outer"
    assert order((16, 28, 28, 256), (3, 3, 256, 256), 2) == "packed_panels"
    wide_image = conv_geometry((1, 56, 56, 64), (1, 1, 64, 256), padding="SAME")
    large_filter = conv_geometry((1, 7, 7, 512), (3, 3, 512, 512), padding="SAME")
    assert tiled.backward_filter_panel_splits(wide_image, 4) > 4
    assert tiled.backward_filter_panel_splits(large_filter, 4) == 1


def test_the_tuner_offers_backward_filter_panels_with_the_first_tiles_only():
    # Each panels candidate is one more kernel to compile and time in the tuning run.
    machine = MACHINES["avx2_16_registers"]
    section = {"loop_order": list(tiled.LOOP_ORDERS),
               "register_tile": {"backward_filter": "model"}}
    g = conv_geometry((1, 14, 14, 256), (3, 3, 256, 256), padding="SAME")
    offered = tiled.candidates("backward_filter", g, 4, section, machine)
    rows = [s.register_tile for s in offered if s.loop_order == "pixel_tiles_outer"]
    panels = [s.register_tile for s in offered if s.loop_order == "packed_panels"]
    assert len(rows) == tiled.MODEL_TILES and panels == rows[:tiled.PANEL_TILES]
    small = conv_geometry((1, 14, 14, 64), (3, 3, 64, 64), padding="SAME")
    assert {s.loop_order for s in tiled.candidates("backward_filter", small, 4, section,
                                                   machine)} == {"pixel_tiles_outer"}


def test_a_calibrated_ranking_leads_where_it_is_legal():
    machine = MACHINES["avx2_16_registers"]
    g = load_workload(WORKLOAD_DIR / "resnet50.yaml")[4].geometry
    calibration = {"tiles": {"float32": {"forward": [[3, 32], [5, 16]]}}}
    assert rule("forward", g, 4, machine, calibration).register_tile == (3, 32)
    untileable = {"tiles": {"float32": {"forward": [[3, 7]]}}}  # divides no channel count
    assert rule("forward", g, 4, machine, untileable).register_tile == \
        rule("forward", g, 4, machine).register_tile


def test_half_types_take_packed_panels_only_where_calibration_found_them_faster():
    found = {"half_panels": {"float16": {"panels_pay": True},
                             "bfloat16": {"panels_pay": False}}}
    assert calibrated_half_panels(found, "float16")
    assert not calibrated_half_panels(found, "bfloat16")
    assert not calibrated_half_panels({"tiles": {}}, "float16")  # not probed: the rows
    assert not calibrated_half_panels(None, "float16")


@pytest.mark.parametrize("name", sorted(MACHINES))
@pytest.mark.parametrize("primitive", ["forward", "backward_filter"])
def test_calibration_times_distinct_tiles_every_probe_layer_can_run(name, primitive):
    from numbaconv.cpu import calibration

    machine = MACHINES[name]
    tiles = calibration.tiles_to_time(primitive, machine)
    assert len(tiles) == calibration.TILES_TIMED
    assert set(tiles) <= set(tile_menu(primitive, 4, machine))
    for input_shape, filter_shape in calibration.PROBE_LAYERS:
        g = conv_geometry(input_shape, filter_shape, padding="SAME")
        for tile in tiles:
            schedule = tiled.fit(tiled.TiledSchedule(register_tile=tile), primitive, g, 4)
            assert CPU.illegal_reason(primitive, g, schedule, 4) is None
    lanes = machine.lanes(4)
    for index, (rows, width) in enumerate(tiles):  # no two of a width a row apart
        assert all(abs(rows - other_rows) * width > calibration.TWIN_ACCUMULATORS * lanes
                   for other_rows, other_width in tiles[:index] if other_width == width)


def test_this_machine_is_described():
    machine = this_machine()
    assert machine.vector_bits in (128, 256, 512)
    assert machine.vector_registers in (16, 32)
    assert machine.key == configs.device_info("cpu")["key"]
    assert machine.lanes(4) == machine.vector_bits // 32


def test_calibration_is_kept_beside_the_entries(tmp_path, monkeypatch):
    from numbaconv.cpu.direct import DirectSchedule
    from numbaconv.geometry import conv_geometry

    monkeypatch.setenv(configs.CONFIG_ENV, str(tmp_path))
    configs.forget()
    path = configs.user_config_path()
    found = {"fma": {"peak_gflops": 123.0, "chains_needed": 6}, "tiles": {}}
    configs.save_calibration(path, found)
    g = conv_geometry((1, 5, 5, 8), (3, 3, 8, 8))
    configs.save_entries(path, {configs.entry_key("forward", "float32", g): configs.make_entry(
        "forward", "float32", g, DirectSchedule(), 1e-3, 1e-3)})
    assert configs.calibration() == found
    assert configs.entry_count(path) == 1
    assert np.isclose(configs.file_calibration(path)["fma"]["peak_gflops"], 123.0)
    configs.forget()


def test_a_disturbed_fma_timing_is_taken_again(monkeypatch):
    """A chain count timed slower than fewer chains ran is timed again (other load on the
    host), and the faster timing is kept; a count that stays slow keeps its rate."""
    from numbaconv.cpu import calibration

    def probe(out, iterations, tasks):
        out[:] = 1.0

    monkeypatch.setattr(calibration, "load_kernel", lambda *args: probe)
    # Seconds per timing, in call order: 1 chain; 2 chains disturbed, then quiet; 4 chains
    # slow every time (as if they spilled).
    timings = iter([1.0, 4.0, 0.5, 4.0, 4.0, 4.0])
    monkeypatch.setattr(calibration, "median_seconds", lambda *args, **kwargs: next(timings))
    found = calibration.measure_fma_peak(MACHINES["avx2_16_registers"],
                                         chains_to_try=(1, 2, 4))
    rate_of_one = found.rates[1]
    assert found.rates[2] == pytest.approx(4 * rate_of_one)
    assert found.rates[4] == pytest.approx(rate_of_one)
    assert found.peak == found.rates[2] and found.chains_needed == 2
    assert next(timings, None) is None
