"""Padding and output-size arithmetic, against TensorFlow's documented rules."""

import itertools

import pytest

import reference as ref
from numbaconv.geometry import conv_geometry, padding_amounts


@pytest.mark.parametrize("in_size, k, stride, dilation",
                         list(itertools.product(range(1, 12), range(1, 6), range(1, 4), range(1, 3))))
def test_same_padding_follows_tensorflow(in_size, k, stride, dilation):
    before, after = padding_amounts("SAME", in_size, k, stride, dilation, axis=0)
    assert (before, after) == ref.same_pads(in_size, k, stride, dilation)
    g = conv_geometry((1, in_size, 1, 1), (k, 1, 1, 1), (stride, 1), (dilation, 1), "SAME")
    assert g.out_height == -(-in_size // stride)


@pytest.mark.parametrize("in_size, k, stride, expected", [
    (5, 3, 1, 3), (5, 3, 2, 2), (6, 3, 2, 2), (7, 3, 3, 2), (3, 3, 1, 1), (2, 3, 1, 0)])
def test_valid_output_size(in_size, k, stride, expected):
    g = conv_geometry((1, in_size, in_size, 1), (k, k, 1, 1), (stride, stride), (1, 1), "VALID")
    assert (g.out_height, g.out_width) == (expected, expected)
    assert (g.pad_top, g.pad_bottom, g.pad_left, g.pad_right) == (0, 0, 0, 0)


def test_same_puts_the_odd_pad_at_the_bottom_right():
    g = conv_geometry((1, 4, 4, 1), (2, 2, 1, 1), (1, 1), (1, 1), "SAME")
    assert (g.pad_top, g.pad_bottom, g.pad_left, g.pad_right) == (0, 1, 0, 1)
    g = conv_geometry((1, 5, 5, 1), (4, 4, 1, 1), (1, 1), (1, 1), "SAME")
    assert (g.pad_top, g.pad_bottom, g.pad_left, g.pad_right) == (1, 2, 1, 2)


def test_explicit_padding():
    g = conv_geometry((1, 5, 6, 1), (3, 2, 1, 1), (2, 1), (1, 3), ((1, 2), (0, 4)))
    assert (g.pad_top, g.pad_bottom, g.pad_left, g.pad_right) == (1, 2, 0, 4)
    assert g.out_height == (5 + 3 - 3) // 2 + 1
    assert g.out_width == (6 + 4 - 4) // 1 + 1


def test_shapes_and_flops():
    g = conv_geometry((2, 8, 8, 3), (3, 3, 3, 16), (2, 2), (1, 1), "SAME")
    assert g.input_shape == (2, 8, 8, 3)
    assert g.filter_shape == (3, 3, 3, 16)
    assert g.output_shape == (2, 4, 4, 16)
    assert g.flops == 2 * 2 * 4 * 4 * 16 * 3 * 3 * 3


def test_the_cache_key_covers_every_geometry_field():
    """Changing any field changes the key (a field left out would alias tuned entries)."""
    import dataclasses

    from numbaconv.geometry import ConvGeometry, geometry_key

    g = conv_geometry((2, 9, 10, 8), (3, 3, 8, 16), (1, 2), (2, 1), ((1, 2), (0, 1)))
    assert geometry_key(g) == "N2-H9-W10-C8-K16-R3-S3-s1x2-d2x1-p1,2,0,1"
    for item in dataclasses.fields(ConvGeometry):
        changed = dataclasses.replace(g, **{item.name: getattr(g, item.name) + 7})
        assert geometry_key(changed) != geometry_key(g), item.name
