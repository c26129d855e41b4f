"""A call like an earlier one runs the earlier call's prepared work: on its own arrays,
with its own checks' outcome, and never after the schedule it was chosen under changed."""

import numpy as np
import pytest
from conftest import assert_matches, random

import numbaconv as nc
import reference as ref
from numbaconv import api, call_memo, configs
from numbaconv.cpu import families
from numbaconv.geometry import conv_geometry

X_SHAPE, W_SHAPE = (2, 7, 6, 8), (3, 3, 8, 16)
SAME = ((1, 1), (1, 1), ((1, 1), (1, 1)))  # strides, dilations, pads of 3×3 SAME stride 1


@pytest.fixture(autouse=True)
def fresh_memo(monkeypatch):
    monkeypatch.setattr(api, "_remembered", {})


@pytest.fixture
def prepares(monkeypatch):
    """How many times the ops prepared a call's work (the full path)."""
    count = []
    real = families.prepare

    def counting(*args, **kwargs):
        count.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(families, "prepare", counting)
    return count


def test_a_second_call_computes_from_its_own_arrays(rng, prepares):
    for _ in range(3):
        x, w = random(rng, X_SHAPE, np.float32), random(rng, W_SHAPE, np.float32)
        dy = random(rng, (2, 7, 6, 16), np.float32)
        assert_matches(nc.conv2d(x, w, 1, "SAME"), ref.conv2d(x, w, *SAME), np.float32)
        assert_matches(nc.conv2d_backprop_input(X_SHAPE, w, dy, 1, "SAME"),
                       ref.conv2d_backprop_input(X_SHAPE, w, dy, *SAME), np.float32)
        assert_matches(nc.conv2d_backprop_filter(x, W_SHAPE, dy, 1, "SAME"),
                       ref.conv2d_backprop_filter(x, W_SHAPE, dy, *SAME), np.float32)
    assert len(prepares) == 3  # once per op


def test_arrays_in_any_layout_after_a_contiguous_call(rng):
    x, w = random(rng, X_SHAPE, np.float32), random(rng, W_SHAPE, np.float32)
    expected = ref.conv2d(x, w, *SAME)
    nc.conv2d(x, w, 1, "SAME")
    for x_view, w_view in [(np.asfortranarray(x), np.asfortranarray(w)),
                           (np.repeat(x, 2, axis=3)[..., ::2], w[::-1][::-1])]:
        assert x_view.shape == X_SHAPE
        assert_matches(nc.conv2d(x_view, w_view, 1, "SAME"), expected, np.float32)


def test_keywords_positions_and_the_same_array_twice(rng):
    x = random(rng, (1, 5, 5, 4), np.float32)
    dy = random(rng, (1, 5, 5, 4), np.float32)
    expected = ref.conv2d_backprop_filter(x, (1, 1, 4, 4), dy, (1, 1), (1, 1),
                                          ((0, 0), (0, 0)))
    twice = ref.conv2d_backprop_filter(x, (1, 1, 4, 4), x, (1, 1), (1, 1), ((0, 0), (0, 0)))
    # The same object as both operands first: no slot is remembered for it ...
    assert_matches(nc.conv2d_backprop_filter(x, (1, 1, 4, 4), x, 1, "VALID"), twice,
                   np.float32)
    # ... then distinct arrays, by keyword, then the same object again.
    for _ in range(2):
        assert_matches(nc.conv2d_backprop_filter(input=x, filter_sizes=(1, 1, 4, 4),
                                                 out_backprop=dy, strides=1, padding="VALID"),
                       expected, np.float32)
        assert_matches(nc.conv2d_backprop_filter(x, (1, 1, 4, 4), dy, 1, "VALID"), expected,
                       np.float32)
        assert_matches(nc.conv2d_backprop_filter(x, (1, 1, 4, 4), x, 1, "VALID"), twice,
                       np.float32)


def test_shapes_given_as_arrays_are_never_aliased(rng):
    """A 1-D array's values (a shape) are not in the key: such calls take the full path."""
    w = random(rng, (3, 3, 2, 3), np.float32)
    for height in (5, 6, 7):
        dy = random(rng, (1, height, 4, 3), np.float32)
        sizes = np.array([1, height, 4, 2])
        got = nc.conv2d_backprop_input(sizes, w, dy, 1, "SAME")
        assert got.shape == (1, height, 4, 2)
        pads = ref.pads_for("SAME", (height, 4), (3, 3), (1, 1), (1, 1))
        assert_matches(got, ref.conv2d_backprop_input((1, height, 4, 2), w, dy, (1, 1), (1, 1),
                                                      pads), np.float32)
    assert call_memo.key("conv2d_backprop_input", (np.array([1, 5, 4, 2]), w), {}) is None


def test_checks_still_run_for_arguments_equal_but_of_another_type(rng):
    x, w = random(rng, X_SHAPE, np.float32), random(rng, W_SHAPE, np.float32)
    nc.conv2d(x, w, 1, "SAME")
    nc.conv2d(x, w, [1, 1], "SAME")
    with pytest.raises(TypeError, match="strides must be a list or tuple of ints"):
        nc.conv2d(x, w, 1.0, "SAME")
    with pytest.raises(TypeError, match="strides must hold ints"):
        nc.conv2d(x, w, [True, 1], "SAME")
    with pytest.raises(ValueError, match="did you mean 'SAME'"):
        nc.conv2d(x, w, 1, "same")
    with pytest.raises(TypeError, match="dtypes must match"):
        nc.conv2d(x, w.astype(np.float64), 1, "SAME")


def test_each_dtype_and_format_its_own_entry(rng):
    x, w = random(rng, X_SHAPE, np.float64), random(rng, W_SHAPE, np.float64)
    expected = ref.conv2d(x, w, *SAME)
    for dtype in (np.float32, np.float64, np.float16, np.float32):
        got = nc.conv2d(x.astype(dtype), w.astype(dtype), 1, "SAME")
        assert got.dtype == dtype
        scale = np.abs(expected).max()
        assert np.abs(got.astype(np.float64) - expected).max() <= 4e-3 * scale
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    for _ in range(2):
        assert_matches(nc.conv2d(nchw, w, 1, "SAME", data_format="NCHW"),
                       expected.transpose(0, 3, 1, 2), np.float64)


def test_views_the_operands_need_are_taken_per_call(rng):
    """Batch dimensions and a depthwise filter are reshaped views of each call's arrays."""
    w = random(rng, (3, 3, 4, 4), np.float32)
    dw = random(rng, (3, 3, 4, 2), np.float32)
    for _ in range(2):
        x = random(rng, (2, 3, 5, 5, 4), np.float32)
        flat = ref.conv2d(x.reshape(6, 5, 5, 4), w, (1, 1), (1, 1), ((1, 1), (1, 1)))
        assert_matches(nc.conv2d(x, w, 1, "SAME"), flat.reshape(2, 3, 5, 5, 4), np.float32)
        x4 = x[0]
        assert_matches(nc.depthwise_conv2d(x4, dw, [1, 1, 1, 1], "SAME"),
                       ref.depthwise_conv2d(x4, dw, (1, 1), (1, 1), ((1, 1), (1, 1))),
                       np.float32)


def test_a_config_change_is_seen_by_the_next_call(rng, prepares, tmp_path, monkeypatch):
    monkeypatch.setenv(configs.CONFIG_ENV, str(tmp_path))
    x, w = random(rng, X_SHAPE, np.float32), random(rng, W_SHAPE, np.float32)
    expected = ref.conv2d(x, w, *SAME)
    nc.conv2d(x, w, 1, "SAME")
    nc.conv2d(x, w, 1, "SAME")
    assert len(prepares) == 1
    g = conv_geometry(X_SHAPE, W_SHAPE, (1, 1), (1, 1), "SAME")
    direct = families.CPU.parse({"algorithm": "direct"})
    path = configs.user_config_path()
    configs.save_entries(path, {configs.entry_key("forward", "float32", g):
                                configs.make_entry("forward", "float32", g, direct, 1e-3, 1e-3)})
    assert nc.explain("conv2d", x, w, 1, "SAME").choice.schedule == direct
    assert_matches(nc.conv2d(x, w, 1, "SAME"), expected, np.float32)
    assert len(prepares) == 2


def test_nothing_is_written_to_the_callers_arrays(rng):
    x, w = random(rng, X_SHAPE, np.float32), random(rng, W_SHAPE, np.float32)
    dy = random(rng, (2, 7, 6, 16), np.float32)
    copies = [a.copy() for a in (x, w, dy)]
    for _ in range(2):
        nc.conv2d(x, w, 1, "SAME")
        nc.conv2d_backprop_input(X_SHAPE, w, dy, 1, "SAME")
        nc.conv2d_backprop_filter(x, W_SHAPE, dy, 1, "SAME")
    for array, copy in zip((x, w, dy), copies):
        np.testing.assert_array_equal(array, copy)


def test_nested_lists_are_refused_every_time(rng):
    """A nested list has a key (its values), but is no array: the checks refuse it, each
    call."""
    x, w = random(rng, (1, 3, 3, 2), np.float32), random(rng, (2, 2, 2, 1), np.float32)
    nc.conv2d(x, w, 1, "VALID")
    for _ in range(2):
        with pytest.raises(TypeError, match="input must be a NumPy array"):
            nc.conv2d(x.tolist(), w, 1, "VALID")
