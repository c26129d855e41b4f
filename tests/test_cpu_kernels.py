"""The CPU kernels under every schedule: exact, fully written, deterministic."""

import itertools

import numba
import numpy as np
import pytest
from conftest import assert_matches, random

import reference as ref
from numbaconv.cpu import bias, direct, families, gemm, layout, partials, tiled
from numbaconv.cpu.direct import backward_data, backward_filter, forward
from numbaconv.cpu.direct import DirectSchedule
from numbaconv.cpu.families import CPU
from numbaconv.cpu.gemm import GemmSchedule
from numbaconv.cpu.layout import readonly
from numbaconv.cpu.tasks import TARGET_TASKS
from numbaconv.cpu.tiled import TiledSchedule, phases
from numbaconv.geometry import conv_geometry

illegal_reason = CPU.illegal_reason
default_schedule = direct.default

GEOMETRIES = {
    "odd_same_strided_dilated": ((2, 7, 9, 5), (3, 2, 5, 6), (2, 1), (1, 2), "SAME"),
    "valid_stride3": ((1, 10, 8, 3), (2, 3, 3, 9), (3, 2), (1, 1), "VALID"),
    "explicit_large_kernel": ((2, 4, 5, 6), (5, 4, 6, 3), (1, 1), (1, 1), ((2, 3), (4, 0))),
    # Channels that register tiles divide, odd spatial sizes.
    "tileable_same_dilated": ((2, 7, 9, 8), (3, 3, 8, 16), (1, 1), (2, 1), "SAME"),
    "tileable_strided": ((1, 9, 11, 16), (3, 2, 16, 8), (2, 3), (1, 1), "SAME"),
    # Stride and dilation not coprime: a stride phase reads every tap or none.
    "tileable_strided_dilated": ((1, 10, 9, 8), (3, 3, 8, 8), (2, 2), (2, 3), "SAME"),
    "tileable_explicit_pads_beyond_filter": ((1, 5, 6, 8), (2, 2, 8, 8), (1, 1), (1, 1),
                                             ((3, 0), (1, 2))),
    "one_by_one_strided": ((2, 7, 8, 8), (1, 1, 8, 16), (2, 2), (1, 1), "VALID"),
}
DIRECT_SCHEDULES = [DirectSchedule(loop_order=order, channel_block=block,
                                   in_channel_block=in_block, reduction_splits=splits)
                    for order, block, in_block, splits in itertools.product(
                        direct.LOOP_ORDERS, (1, 4, 64), (1, 4), (1, 3))]
# Tiles chosen to cover 1, 3, 4 and 8 rows (odd ones too) and 8 and 16 channels with few
# compilations.
TILED_SCHEDULES = [TiledSchedule(loop_order=order, register_tile=tile, channel_block=block,
                                 reduction_splits=splits)
                   for order, tile, block, splits in itertools.product(
                       tiled.LOOP_ORDERS, ((1, 8), (3, 16), (4, 8), (8, 8)), (8, 16, 32),
                       (1, 3))
                   # Its own kernel per tile: two tiles (1 and 3 rows) keep compilations few.
                   if order != "packed_panels" or tile in ((1, 8), (3, 16))]
GEMM_SCHEDULES = [GemmSchedule(matmul=matmul) for matmul in gemm.MATMULS]
SCHEDULES = DIRECT_SCHEDULES + TILED_SCHEDULES + GEMM_SCHEDULES


def schedule_id(s):
    return "-".join(f"{value}" if name == "algorithm" else f"{name}{value}"
                    for name, value in s.to_dict().items()).replace(" ", "")


def runner(primitive):
    return lambda *args: families.run(primitive, args[:-2], *args[-2:])


KERNELS = {
    "forward": (runner("forward"), lambda x, w, dy: (x, w)),
    "backward_data": (runner("backward_data"), lambda x, w, dy: (dy, w)),
    "backward_filter": (runner("backward_filter"), lambda x, w, dy: (x, dy)),
}


def make_case(rng, geometry_case, dtype=np.float64):
    input_shape, filter_shape, strides, dilations, padding = geometry_case
    g = conv_geometry(input_shape, filter_shape, strides, dilations, padding)
    x = random(rng, g.input_shape, dtype)
    w = random(rng, g.filter_shape, dtype)
    dy = random(rng, g.output_shape, dtype)
    return g, x, w, dy


def reference_result(primitive, g, x, w, dy):
    args = ((g.stride_h, g.stride_w), (g.dilation_h, g.dilation_w),
            ((g.pad_top, g.pad_bottom), (g.pad_left, g.pad_right)))
    if primitive == "forward":
        return ref.conv2d(x, w, *args)
    if primitive == "backward_data":
        return ref.conv2d_backprop_input(x.shape, w, dy, *args)
    return ref.conv2d_backprop_filter(x, w.shape, dy, *args)


LEGAL_COMBINATIONS = [
    pytest.param(primitive, case, schedule, id=f"{primitive}-{name}-{schedule_id(schedule)}")
    for primitive in KERNELS for name, case in GEOMETRIES.items() for schedule in SCHEDULES
    if illegal_reason(primitive, conv_geometry(*case), schedule) is None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("primitive, case, schedule", LEGAL_COMBINATIONS)
def test_every_schedule_matches_reference(rng, primitive, case, schedule, dtype):
    g, x, w, dy = make_case(rng, case, dtype)
    run, operands = KERNELS[primitive]
    assert_matches(run(*operands(x, w, dy), g, schedule), reference_result(primitive, g, x, w, dy),
                   dtype)


@pytest.mark.parametrize("case", GEOMETRIES.values(), ids=GEOMETRIES.keys())
@pytest.mark.parametrize("primitive", KERNELS)
def test_every_geometry_has_legal_fast_schedules(primitive, case):
    """Each kernel family covers the tileable geometries; illegal ones say why."""
    g = conv_geometry(*case)
    legal = {s.algorithm for s in SCHEDULES if illegal_reason(primitive, g, s) is None}
    assert {"direct", "gemm"} <= legal
    if g.in_channels % 8 == 0 and g.out_channels % 8 == 0:
        assert "tiled" in legal


@pytest.mark.parametrize("primitive", ["forward", "backward_data"])
def test_direct_schedules_do_not_change_the_bits(rng, primitive):
    """Forward and backward-data direct kernels sum each element in the same order under
    every schedule."""
    g, x, w, dy = make_case(rng, GEOMETRIES["odd_same_strided_dilated"], np.float32)
    run, operands = KERNELS[primitive]
    results = [run(*operands(x, w, dy), g, s) for s in DIRECT_SCHEDULES]
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


PANEL_CASES = {
    "tileable_strided_dilated": GEOMETRIES["tileable_strided_dilated"],
    "one_by_one_strided": GEOMETRIES["one_by_one_strided"],
    # 40 reduction channels for backward-data: its panels transpose 16, 16, then 8.
    "wide_reduction_strided": ((1, 6, 7, 16), (3, 3, 16, 40), (2, 2), (1, 1), "SAME"),
}


@pytest.mark.parametrize("case", PANEL_CASES.values(), ids=PANEL_CASES.keys())
@pytest.mark.parametrize("primitive", ["forward", "backward_data"])
def test_packed_panels_do_not_change_the_bits(rng, primitive, case):
    """Packing the filter per task (several stride phases for backward-data) sums each
    element in the same order as reading a filter packed beforehand."""
    g, x, w, dy = make_case(rng, case, np.float32)
    run, operands = KERNELS[primitive]
    schedules = [TiledSchedule(loop_order=order, register_tile=(1, 8), channel_block=8)
                 for order in ("pixel_tiles_outer", "packed_panels")]
    assert all(illegal_reason(primitive, g, s) is None for s in schedules)
    results = [run(*operands(x, w, dy), g, s) for s in schedules]
    assert_matches(results[1], reference_result(primitive, g, x, w, dy), np.float32)
    np.testing.assert_array_equal(results[1], results[0])


@pytest.mark.parametrize("primitive", ["forward", "backward_data"])
def test_packed_panels_task_order_does_not_change_the_bits(rng, monkeypatch, primitive):
    """The threads split the pixels or the channel tiles of packed panels (whichever
    operand is larger): each task computes the same tiles either way."""
    g, x, w, dy = make_case(rng, PANEL_CASES["wide_reduction_strided"], np.float32)
    run, operands = KERNELS[primitive]
    schedule = TiledSchedule(loop_order="packed_panels", register_tile=(1, 8), channel_block=8)
    results = []
    for split_pixels in (True, False):
        monkeypatch.setattr(phases, "pixels_major", lambda *_, value=split_pixels: value)
        results.append(run(*operands(x, w, dy), g, schedule))
    assert_matches(results[0], reference_result(primitive, g, x, w, dy), np.float32)
    np.testing.assert_array_equal(results[0], results[1])


def test_packed_panels_split_the_larger_operand_between_the_threads():
    def split_pixels(image, filter_shape):
        f = layout.kernel_filter(filter_shape, 16, True)
        return phases.pixels_major(image, [phases.Phase(f, image[1:3])])

    assert split_pixels((1, 56, 56, 64), (1, 1, 64, 256))  # 200 K pixel values, 16 K taps
    assert not split_pixels((1, 7, 7, 512), (3, 3, 512, 512))  # 25 K against 2.4 M


def test_partial_filters_sum_in_the_same_order_by_numpy_and_by_the_kernel(rng):
    """A cold start's starter sums the partials by NumPy: the same bits as the kernel."""
    found = random(rng, (3, 5, 7, 400), np.float32)  # beyond the size NumPy sums anyway
    assert found.nbytes > partials.SMALL_BYTES
    in_order = (found[0] + found[1]) + found[2]
    np.testing.assert_array_equal(partials.reduced(found), in_order)
    np.testing.assert_array_equal(partials.reduced(found, by_numpy=True), in_order)


@pytest.mark.parametrize("size", [1000, 5 * partials.CHUNK + 17])  # NumPy's, the threads'
def test_a_chunk_of_partials_adds_into_the_running_total(rng, size):
    """Winograd's backward-filter adds each chunk's sums to the first chunk's in place."""
    total, part = random(rng, (2, size), np.float32)
    assert (total.nbytes > partials.SMALL_BYTES) == (size > 1000)
    expected = total + part
    partials.add_into(total, part)
    np.testing.assert_array_equal(total, expected)


@pytest.mark.parametrize("primitive", KERNELS)
def test_results_do_not_depend_on_the_thread_count(rng, primitive):
    g, x, w, dy = make_case(rng, GEOMETRIES["valid_stride3"], np.float32)
    run, operands = KERNELS[primitive]
    schedule = default_schedule(primitive, g)
    first = run(*operands(x, w, dy), g, schedule)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = run(*operands(x, w, dy), g, schedule)
    finally:
        numba.set_num_threads(threads)
    again = run(*operands(x, w, dy), g, schedule)
    np.testing.assert_array_equal(serial, first)
    np.testing.assert_array_equal(again, first)


def test_forward_kernel_writes_every_output_element(rng):
    g, x, w, dy = make_case(rng, GEOMETRIES["odd_same_strided_dilated"])
    for schedule in DIRECT_SCHEDULES:
        out = np.full(g.output_shape, np.nan)
        # Read-only inputs, as the ops pass them: the kernel's one compiled type.
        forward.forward_direct(readonly(x), readonly(w), out, g.stride_h, g.stride_w,
                               g.dilation_h, g.dilation_w, g.pad_top, g.pad_left,
                               schedule.channel_block,
                               schedule.loop_order == "tap_channel_pixel", 1)
        assert_matches(out, reference_result("forward", g, x, w, dy), np.float64)


def test_backward_data_kernel_writes_every_input_element(rng):
    g, x, w, dy = make_case(rng, GEOMETRIES["valid_stride3"])  # stride 3: rows no tap reaches
    wt = np.ascontiguousarray(w.transpose(0, 1, 3, 2))
    for schedule in DIRECT_SCHEDULES:
        dx = np.full(g.input_shape, np.nan)
        backward_data.backward_data_direct(readonly(dy), readonly(wt), dx, g.stride_h,
                                           g.stride_w, g.dilation_h, g.dilation_w,
                                           g.pad_top, g.pad_left,
                                           schedule.channel_block,
                                           schedule.loop_order == "tap_channel_pixel", 1)
        assert_matches(dx, reference_result("backward_data", g, x, w, dy), np.float64)


def test_backward_filter_kernel_writes_every_partial(rng):
    g, x, w, dy = make_case(rng, GEOMETRIES["explicit_large_kernel"])
    for schedule in DIRECT_SCHEDULES:
        partials = np.full((schedule.reduction_splits,) + g.filter_shape, np.nan)
        backward_filter.backward_filter_direct(
            readonly(x), readonly(dy), partials, g.stride_h, g.stride_w, g.dilation_h,
            g.dilation_w, g.pad_top, g.pad_left, schedule.channel_block, schedule.in_channel_block,
            schedule.loop_order == "tap_channel_pixel", 1)
        assert_matches(partials.sum(axis=0), reference_result("backward_filter", g, x, w, dy),
                       np.float64)


@pytest.mark.parametrize("loop_order", tiled.LOOP_ORDERS)
def test_tiled_backward_filter_writes_every_partial(rng, monkeypatch, loop_order):
    # The partial filters come unzeroed (NaN here): each split's first block of pixels
    # starts its tiles' sums.
    g, x, w, dy = make_case(rng, GEOMETRIES["tileable_same_dilated"])
    expected = reference_result("backward_filter", g, x, w, dy)
    schedules = [TiledSchedule(loop_order=loop_order, register_tile=(4, 8),
                               reduction_splits=splits) for splits in (1, 3)]
    families.run("backward_filter", (x, dy), g, schedules[0])  # compiled before the patch
    empty = np.empty

    def poisoned(shape, dtype=float, **kwargs):
        array = empty(shape, dtype, **kwargs)
        array.fill(np.nan)
        return array

    monkeypatch.setattr(np, "empty", poisoned)
    for schedule in schedules:
        assert_matches(families.run("backward_filter", (x, dy), g, schedule), expected,
                       np.float64)


@pytest.mark.parametrize("case", ["tileable_same_dilated", "tileable_strided",
                                  "tileable_strided_dilated"])
@pytest.mark.parametrize("share_bytes", [1, 10**9])
def test_backward_filter_with_taps_shared_by_tasks(rng, monkeypatch, case, share_bytes):
    # As if x and dy streamed: tasks own groups of taps (all of them in one group when the
    # whole filter is a task's share; one tap each when nothing fits).
    monkeypatch.setattr(tiled, "STREAMED_BYTES", 0)
    monkeypatch.setattr(tiled, "TASK_FILTER_BYTES", share_bytes)
    g, x, w, dy = make_case(rng, GEOMETRIES[case])
    schedule = tiled.fit(TiledSchedule(loop_order="pixel_tiles_outer", register_tile=(4, 8)),
                         "backward_filter", g, 8)
    taps = g.filter_height * g.filter_width
    tap_groups = tiled.backward_filter_tap_groups(g, schedule.reduction_splits, 8)
    fewest = taps if share_bytes == 1 else 1
    # more groups only where the rows split into fewer than TARGET_TASKS
    assert tap_groups == max(fewest, min(taps, -(-TARGET_TASKS // schedule.reduction_splits)))
    assert_matches(families.run("backward_filter", (x, dy), g, schedule),
                   reference_result("backward_filter", g, x, w, dy), np.float64)


@pytest.mark.parametrize("row_block", [1, 2, 3, 100])
def test_backward_filter_tiles_sum_blocks_of_rows(rng, monkeypatch, row_block):
    # The sums go back to the partial filter once per block of rows; the last block of a
    # split may be short (7 output rows in blocks of 2 or 3), or the block all of them.
    monkeypatch.setattr(tiled, "backward_filter_row_block", lambda g: row_block)
    g, x, w, dy = make_case(rng, ((1, 7, 9, 8), (3, 3, 8, 16), (1, 1), (1, 1), "SAME"))
    for splits in (1, 3):
        schedule = TiledSchedule(loop_order="pixel_tiles_outer", register_tile=(4, 8),
                                 reduction_splits=splits)
        assert_matches(families.run("backward_filter", (x, dy), g, schedule),
                       reference_result("backward_filter", g, x, w, dy), np.float64)


@pytest.mark.parametrize("case", ["tileable_same_dilated", "tileable_strided",
                                  "tileable_strided_dilated", "grouped"])
@pytest.mark.parametrize("row_block", [1, 3, 100])
@pytest.mark.parametrize("packed", ["dy", "x", "x and dy"])
def test_backward_filter_with_operands_packed_sums_the_same(rng, monkeypatch, case, row_block,
                                                           packed):
    # Each block's dy copied into one contiguous panel per tile of output channels first,
    # or its x into one per tap and tile of input channels (again for each group): the same
    # sums in the same order, so the same bits as reading the operands in place.
    monkeypatch.setattr(tiled, "backward_filter_row_block", lambda g: row_block)
    geometry = (((1, 7, 9, 16), (3, 3, 8, 16), (1, 1), (1, 1), "SAME") if case == "grouped"
                else GEOMETRIES[case])
    g, x, w, dy = make_case(rng, geometry)
    # 16 output channels of float64: two vectors per pixel where the tile fits.
    tile = (3, 16) if tiled.tile_fits("backward_filter", g, (3, 16)) else (4, 8)
    for splits in (1, 3):
        schedule = TiledSchedule(loop_order="pixel_tiles_outer", register_tile=tile,
                                 reduction_splits=splits)
        found = {}
        for packs in (False, True):
            for operand in ("dy", "x"):
                monkeypatch.setattr(tiled, f"backward_filter_packs_{operand}",
                                    lambda *args, p=packs and operand in packed: p)
            found[packs] = families.run("backward_filter", (x, dy), g, schedule)
        expected = (ref.grouped_conv2d_backprop_filter(
            x, w.shape, dy, (1, 1), (1, 1), ((g.pad_top, g.pad_bottom), (g.pad_left, g.pad_right)))
            if case == "grouped" else reference_result("backward_filter", g, x, w, dy))
        assert_matches(found[True], expected, np.float64)
        np.testing.assert_array_equal(found[True], found[False])


@pytest.mark.parametrize("case", ["tileable_same_dilated", "tileable_strided",
                                  "tileable_strided_dilated", "grouped", "batch"])
@pytest.mark.parametrize("block_pixels", [1, 5, 9, 1000])
def test_backward_filter_packed_panels_sum_as_the_rows_do(rng, monkeypatch, case,
                                                          block_pixels):
    # Blocks of pixels that cut rows (5 of 9 columns), one pixel, or all of them; tasks
    # of one tap each, or of several (16 splits leave one group of taps), and split rows:
    # the same sums in the same order, so the same bits as the tiles row by row.
    monkeypatch.setattr(tiled, "backward_filter_block_pixels", lambda *args: block_pixels)
    geometry = {"grouped": ((1, 7, 9, 16), (3, 3, 8, 16), (1, 1), (1, 1), "SAME"),
                "batch": ((3, 5, 9, 8), (2, 3, 8, 16), (1, 1), (1, 1), "VALID")}.get(
        case) or GEOMETRIES[case]
    g, x, w, dy = make_case(rng, geometry)
    tile = (3, 16) if tiled.tile_fits("backward_filter", g, (3, 16)) else (4, 8)
    expected = (ref.grouped_conv2d_backprop_filter(
        x, w.shape, dy, (1, 1), (1, 1), ((g.pad_top, g.pad_bottom), (g.pad_left, g.pad_right)))
        if case == "grouped" else reference_result("backward_filter", g, x, w, dy))
    for splits in (1, 3, 16):
        found = {order: families.run("backward_filter", (x, dy), g, TiledSchedule(
                     loop_order=order, register_tile=tile, reduction_splits=splits))
                 for order in ("pixel_tiles_outer", "packed_panels")}
        assert_matches(found["packed_panels"], expected, np.float64)
        np.testing.assert_array_equal(found["packed_panels"], found["pixel_tiles_outer"])


@pytest.mark.parametrize("threads", [1, 2, 3, 16])
@pytest.mark.parametrize("splits", [1, 2, 7, 16])
@pytest.mark.parametrize("channels", [128, 512])
def test_backward_filter_packed_panels_keep_every_thread_busy_with_few_tasks(
        monkeypatch, threads, splits, channels):
    # Each task packs its blocks' dy again: a multiple of the threads, c tiles split first
    # (as far as the traffic model wants); all the taps in a task while its share of the
    # partial filter is small (590 KB in all at 128 channels), groups of taps beyond (9.4
    # MB at 512, on few threads).
    monkeypatch.setattr(numba, "get_num_threads", lambda: threads)
    g = conv_geometry((1, 28, 28, channels), (3, 3, channels, channels), (1, 1), (1, 1),
                      "SAME")
    schedule = TiledSchedule(loop_order="packed_panels", register_tile=(4, 16),
                             reduction_splits=splits)
    tasks = tiled._filter_tasks(g, schedule, 4)
    assert tasks.splits == splits
    assert tasks.count % threads == 0
    if channels == 128:
        assert tasks.tap_groups == 1
    elif threads <= 2 and splits < TARGET_TASKS:  # else enough tasks without them
        assert tasks.tap_groups > 1


@pytest.mark.parametrize("in_channels, c_groups_beyond_the_fewest", [(256, 1), (2048, 4)])
def test_backward_filter_packed_panels_cut_wide_x_for_longer_blocks(
        monkeypatch, in_channels, c_groups_beyond_the_fewest):
    # 1×1 at b8, 7×7 pixels, 512 outputs: from 2048 input channels (a 4 MB partial filter,
    # which the few c groups' short blocks would load and store a dozen times) more c
    # groups, so narrower x panels and longer blocks, though each packs dy again; from 256
    # (a 512 KB filter, two blocks) the fewest.
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    g = conv_geometry((8, 7, 7, in_channels), (1, 1, in_channels, 512))
    schedule = tiled.fit(TiledSchedule(loop_order="packed_panels", register_tile=(2, 32)),
                         "backward_filter", g, 4)
    tasks = tiled._filter_tasks(g, schedule, 4)
    fewest = tiled._thread_groups(in_channels // 2, tasks.splits * tasks.tap_groups)
    assert tasks.c_groups == fewest * c_groups_beyond_the_fewest
    assert tasks.count % 2 == 0


@pytest.mark.parametrize("splits", [1, 3])
def test_backward_filter_packed_panels_sums_do_not_depend_on_the_thread_count(rng, splits):
    g, x, w, dy = make_case(rng, GEOMETRIES["tileable_same_dilated"], np.float32)
    schedule = TiledSchedule(loop_order="packed_panels", register_tile=(4, 8),
                             reduction_splits=splits)
    threads = numba.get_num_threads()
    found = {}
    try:
        for count in {1, numba.config.NUMBA_NUM_THREADS}:
            numba.set_num_threads(count)
            found[count] = (tiled._filter_tasks(g, schedule, 4),
                            families.run("backward_filter", (x, dy), g, schedule))
    finally:
        numba.set_num_threads(threads)
    (serial_tasks, serial), (parallel_tasks, parallel) = found[1], found[max(found)]
    assert serial_tasks.count < parallel_tasks.count or len(found) == 1
    np.testing.assert_array_equal(serial, parallel)


def test_backward_filter_packed_panels_fit_the_caches():
    # Each dy panel within half of L1; the panels a block reuses within PANELS_L2_BYTES
    # (one tap's x, and all of dy's where a task has several taps); no more pixels than a
    # split's.
    g = conv_geometry((1, 14, 14, 256), (3, 3, 256, 256), (1, 1), (1, 1), "SAME")
    for splits in (1, 14):
        schedule = TiledSchedule(loop_order="packed_panels", register_tile=(4, 16),
                                 reduction_splits=splits)
        tasks = tiled._filter_tasks(g, schedule, 4)
        block = tiled.backward_filter_block_pixels(g, (4, 16), tasks, 4)
        assert 0 < block * 16 * 4 <= layout.L1_BYTES // 2
        x_channels = -(-(256 // 4) // tasks.c_groups) * 4
        dy_channels = 256 if tasks.tap_groups < 9 else 16
        assert block * (dy_channels + x_channels) * 4 <= tiled.PANELS_L2_BYTES
        assert block <= -(-14 // splits) * 14


@pytest.mark.parametrize("operand, panel_elements", [("dy", 256), ("x", 8)])
def test_backward_filter_workspace_counts_the_panels(monkeypatch, operand, panel_elements):
    g = conv_geometry((1, 14, 14, 256), (3, 3, 256, 256), padding="SAME")
    schedule = tiled.fit(TiledSchedule(loop_order="pixel_tiles_outer", register_tile=(8, 16)),
                         "backward_filter", g, 4)
    monkeypatch.setattr(tiled, "backward_filter_packs_dy", lambda *args: False)
    monkeypatch.setattr(tiled, "backward_filter_packs_x", lambda *args: False)
    found = {}
    for packs in (False, True):
        monkeypatch.setattr(tiled, f"backward_filter_packs_{operand}", lambda *args, p=packs: p)
        found[packs] = tiled.workspace_bytes("backward_filter", g, schedule, 4)
    tasks = tiled._filter_tasks(g, schedule, 4).count
    # each task's panel: a block of rows (3 of 14 pixels) × 256 output channels for dy, × the
    # tile's 8 input channels for x
    assert found[True] - found[False] == tasks * 3 * 14 * panel_elements * 4


def test_backward_filter_packs_dy_where_its_rows_crowd_a_few_l1_sets():
    # 256 channels of float32: pixels 1 KB apart share 4 of the 64 sets of a 32 KB L1.
    res4 = conv_geometry((1, 14, 14, 256), (3, 3, 256, 256), padding="SAME")
    assert tiled.backward_filter_packs_dy(res4, 4, tiles_per_panel=16)
    # ...but not where each task's panel would serve one tile: the copy reads dy as often.
    assert not tiled.backward_filter_packs_dy(res4, 4, tiles_per_panel=1)
    # 64 channels: 56 pixels 256 B apart fit the sets they map to.
    res2 = conv_geometry((1, 56, 56, 64), (3, 3, 64, 64), padding="SAME")
    assert not tiled.backward_filter_packs_dy(res2, 4, tiles_per_panel=16)
    # An odd channel count spreads the pixels over every set.
    odd = conv_geometry((1, 14, 14, 200), (3, 3, 200, 200), padding="SAME")
    assert not tiled.backward_filter_packs_dy(odd, 4, tiles_per_panel=16)


def test_backward_filter_packs_x_where_its_pixels_crowd_a_few_l1_sets_for_many_tiles():
    # 1024 input channels of float32: every pixel 4 KB on, in one set of the L1.
    squeeze = conv_geometry((1, 14, 14, 1024), (1, 1, 1024, 256))
    tiles = tiled.MIN_X_PANEL_TILES
    assert tiled.backward_filter_packs_x(squeeze, 4, tiles_per_panel=tiles)
    # ...but not for fewer tiles per panel: the copy costs about a tile's pass.
    assert not tiled.backward_filter_packs_x(squeeze, 4, tiles_per_panel=tiles // 2)
    # A stride of 2 doubles x's pixel step: 256 channels then crowd the sets as 512 do.
    strided = conv_geometry((1, 28, 28, 256), (1, 1, 256, 512), strides=(2, 2))
    assert tiled.backward_filter_packs_x(strided, 4, tiles_per_panel=tiles)
    # 256 channels: 42 pixels 1 KB apart crowd the 32 lines L1 keeps, but not few enough
    # lines for the copy to pay.
    res4 = conv_geometry((1, 14, 14, 256), (3, 3, 256, 256), padding="SAME")
    assert not tiled.backward_filter_packs_x(res4, 4, tiles_per_panel=tiles)
    # 64 channels: 56 pixels 256 B apart fit the sets they map to.
    res2 = conv_geometry((1, 56, 56, 64), (3, 3, 64, 64), padding="SAME")
    assert not tiled.backward_filter_packs_x(res2, 4, tiles_per_panel=tiles)
    # The tiles the rule counts for x are a group's tiles of output channels.
    grouped = conv_geometry((1, 7, 7, 1024), (3, 3, 32, 1024), padding="SAME")
    schedule = tiled.fit(TiledSchedule(loop_order="pixel_tiles_outer", register_tile=(8, 16)),
                         "backward_filter", grouped, 4)
    assert not tiled._filter_tasks(grouped, schedule, 4).pack_x


def test_short_rows_are_summed_in_blocks():
    assert tiled.backward_filter_row_block(conv_geometry((8, 7, 7, 16), (1, 1, 16, 32))) == 6
    assert tiled.backward_filter_row_block(conv_geometry((1, 14, 14, 16), (3, 3, 16, 32),
                                                         padding="SAME")) == 3
    assert tiled.backward_filter_row_block(conv_geometry((1, 56, 56, 16), (1, 1, 16, 32))) == 1


def test_swap_channels_kernel(rng):
    w = random(rng, (3, 2, 37, 70))
    wt = np.full((3, 2, 70, 37), np.nan)
    layout.swap_channels_kernel(readonly(w), wt)
    np.testing.assert_array_equal(wt, w.transpose(0, 1, 3, 2))


def test_grouped_swap_exchanges_channel_roles_within_each_group(rng):
    w = random(rng, (3, 2, 5, 4 * 7))  # 4 groups of 5 input and 7 output channels
    wt = layout.swap_channels(w, groups=4)
    assert wt.shape == (3, 2, 7, 20)
    for group in range(4):
        np.testing.assert_array_equal(wt[:, :, :, 5 * group:5 * group + 5],
                                      w[:, :, :, 7 * group:7 * group + 7].transpose(0, 1, 3, 2))


@pytest.mark.parametrize("many_groups", [False, True])
def test_both_loop_nests_of_the_grouped_swap_agree_with_numpy(rng, many_groups):
    w = random(rng, (3, 2, 5, 9 * 7))  # 9 groups of 5 input and 7 output channels
    wt = np.full((3, 2, 7, 9 * 5), np.nan)
    layout.swap_group_channels_kernel(readonly(w), wt, many_groups)
    np.testing.assert_array_equal(wt, layout.swap_channels(w, 9, by_numpy=True))


def test_copies_by_numpy_equal_the_kernels_copies(rng):
    # Sizes past the NumPy thresholds, so that the default path runs the kernels.
    x = random(rng, (2, 41, 37, 24), np.float32)
    for pads in [(1, 2, 0, 3), (-1, 2, 3, -2)]:
        by_kernel = layout.padder(x.shape, x.dtype, *pads)(x)
        np.testing.assert_array_equal(layout.padder(x.shape, x.dtype, *pads, by_numpy=True)(x),
                                      by_kernel)
    w = random(rng, (3, 3, 48, 64), np.float32)
    for swap in (False, True):
        np.testing.assert_array_equal(layout.pack_filter(w, 16, swap, by_numpy=True),
                                      layout.pack_filter(w, 16, swap))
    for groups in (1, 4):
        np.testing.assert_array_equal(layout.swap_channels(w, groups, by_numpy=True),
                                      layout.swap_channels(w, groups))


@pytest.mark.parametrize("storage", ["float16", "bfloat16"])
@pytest.mark.parametrize("shape", [(1, 1, 96, 160), (3, 3, 48, 64), (2, 2, 16, 16)])
def test_a_half_filter_packs_from_its_bits_as_its_widened_values_do(rng, storage, shape):
    # The first two past the NumPy threshold (the kernel widens as it packs), the last not.
    ml_dtypes = pytest.importorskip("ml_dtypes")
    w = random(rng, shape, np.float32)
    w[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    half_type = np.float16 if storage == "float16" else ml_dtypes.bfloat16
    bits = w.astype(half_type).view(np.uint16)
    widened = w.astype(half_type).astype(np.float32)
    for swap in (False, True):
        packed = layout.pack_filter(bits, 16, swap, storage=storage)
        assert packed.dtype == np.float32
        np.testing.assert_array_equal(packed, layout.pack_filter(widened, 16, swap))


@pytest.mark.parametrize("shape", [(1, 1, 1), (37, 5, 1), (3, 4, 49), (100, 7, 3)])
def test_bias_kernel(rng, shape):
    x3 = random(rng, shape, np.float32)
    assert_matches(bias.run(x3), x3.astype(np.float64).sum(axis=(0, 2)), np.float32)


@pytest.mark.parametrize("primitive", KERNELS)
@pytest.mark.parametrize("case", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_default_schedule_is_valid_and_matches(rng, primitive, case):
    g, x, w, dy = make_case(rng, case)
    schedule = default_schedule(primitive, g)
    run, operands = KERNELS[primitive]
    assert_matches(run(*operands(x, w, dy), g, schedule), reference_result(primitive, g, x, w, dy),
                   np.float64)
