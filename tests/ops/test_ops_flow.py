"""Tests of flow read off dynamic filters (`tap_offsets`, `filter_flow`, `filter_disparity`) and its
colour rendering (`flow_to_rgb`, `hsv_to_rgb`), against exact values and `colorsys`."""

from __future__ import annotations

import colorsys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfn_jax import ops


def _one_hot_stack(taps):
    """``[taps, taps]``: row t is the filter that puts all its weight on tap t."""
    return jnp.eye(taps, dtype=jnp.float32)


# ------------------------------------------------------------------------------------------
# tap_offsets


def test_tap_offsets_3x3_row_major():
    dx, dy = ops.tap_offsets(3)
    np.testing.assert_array_equal(dx, [-1, 0, 1, -1, 0, 1, -1, 0, 1])
    np.testing.assert_array_equal(dy, [-1, -1, -1, 0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize("kernel_size", [(1, 1), (3, 5), (5, 3), (1, 13), (13, 1), (11, 11)])
def test_tap_offsets_follow_tap_index(kernel_size):
    kh, kw = kernel_size
    dx, dy = ops.tap_offsets(kernel_size)
    assert dx.shape == dy.shape == (kh * kw,)
    taps = np.arange(kh * kw)
    np.testing.assert_array_equal(dx, taps % kw - kw // 2)
    np.testing.assert_array_equal(dy, taps // kw - kh // 2)


def test_tap_offsets_int_means_square():
    for a, b in zip(ops.tap_offsets(5), ops.tap_offsets((5, 5)), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kernel_size", [2, (3, 4), 0, -1, (3, 3, 3)])
def test_tap_offsets_bad_kernel_size_raises(kernel_size):
    with pytest.raises(ValueError, match="`kernel_size`"):
        ops.tap_offsets(kernel_size)


# ------------------------------------------------------------------------------------------
# filter_flow


@pytest.mark.parametrize("kernel_size", [(3, 3), (5, 5), (3, 5), (1, 13), (13, 1), (11, 11)])
def test_filter_flow_of_one_hot_filters_is_exact(kernel_size):
    kh, kw = kernel_size
    flow = ops.filter_flow(_one_hot_stack(kh * kw), kernel_size=kernel_size)
    assert flow.shape == (kh * kw, 2) and flow.dtype == jnp.float32
    dx, dy = ops.tap_offsets(kernel_size)
    np.testing.assert_array_equal(flow[:, 0], dx)
    np.testing.assert_array_equal(flow[:, 1], dy)


def test_filter_flow_is_expected_offset_of_softmax_filters():
    logits = np.random.default_rng(0).standard_normal((2, 4, 5, 25)).astype(np.float32)
    filters = jax.nn.softmax(jnp.asarray(logits), axis=-1)
    flow = ops.filter_flow(filters, kernel_size=5)
    assert flow.shape == (2, 4, 5, 2)
    p = np.asarray(filters, np.float64).reshape(2, 4, 5, 5, 5)  # [..., i, j]
    offsets = np.arange(5) - 2
    want_dx = np.einsum("bhwij,j->bhw", p, offsets)
    want_dy = np.einsum("bhwij,i->bhw", p, offsets)
    np.testing.assert_allclose(flow[..., 0], want_dx, atol=1e-6)
    np.testing.assert_allclose(flow[..., 1], want_dy, atol=1e-6)
    # A convex combination of offsets lies inside the window.
    assert np.abs(np.asarray(flow)).max() <= 2


def test_filter_flow_accepts_low_precision_and_any_leading_shape():
    f = _one_hot_stack(9).astype(jnp.bfloat16).reshape(3, 1, 3, 9)
    flow = ops.filter_flow(f, kernel_size=3)
    assert flow.shape == (3, 1, 3, 2) and flow.dtype == jnp.float32
    np.testing.assert_array_equal(flow.reshape(9, 2)[:, 0], ops.tap_offsets(3)[0])


def test_filter_flow_under_jit():
    fn = jax.jit(ops.filter_flow, static_argnames="kernel_size")
    flow = fn(_one_hot_stack(15), kernel_size=(3, 5))
    np.testing.assert_array_equal(flow[:, 0], ops.tap_offsets((3, 5))[0])


@pytest.mark.parametrize(
    "filters, kernel_size, argument",
    [
        (jnp.ones((2, 4, 4, 8)), 3, "filters"),  # 8 taps for 3x3
        (jnp.ones((2, 4, 4, 9)), (1, 13), "filters"),
        (jnp.ones((2, 4, 4, 9), jnp.int32), 3, "filters"),
        (jnp.ones((2, 4, 4, 16)), 4, "kernel_size"),
        (jnp.ones((2, 4, 4, 1)), 0, "kernel_size"),
    ],
)
def test_filter_flow_bad_arguments_raise(filters, kernel_size, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        ops.filter_flow(filters, kernel_size=kernel_size)


# ------------------------------------------------------------------------------------------
# filter_disparity


@pytest.mark.parametrize("kernel_size", [13, (1, 13)])
def test_disparity_of_1x13_one_hot_filters_is_tap_minus_6(kernel_size):
    disparity = ops.filter_disparity(_one_hot_stack(13), kernel_size=kernel_size)
    assert disparity.shape == (13,) and disparity.dtype == jnp.float32
    np.testing.assert_array_equal(disparity, np.arange(13) - 6)


def test_disparity_is_expected_horizontal_offset():
    logits = np.random.default_rng(1).standard_normal((2, 3, 4, 13)).astype(np.float32)
    filters = jax.nn.softmax(jnp.asarray(logits), axis=-1)
    disparity = ops.filter_disparity(filters, kernel_size=13)
    assert disparity.shape == (2, 3, 4)
    want = np.asarray(filters, np.float64) @ (np.arange(13) - 6)
    np.testing.assert_allclose(disparity, want, atol=1e-6)


@pytest.mark.parametrize(
    "filters, kernel_size, argument",
    [
        (jnp.ones((4, 9)), (3, 3), "kernel_size"),  # not a horizontal filter
        (jnp.ones((4, 13)), (13, 1), "kernel_size"),
        (jnp.ones((4, 12)), 12, "kernel_size"),  # even
        (jnp.ones((4, 11)), 13, "filters"),  # tap count
        (jnp.ones((4, 13), jnp.int32), 13, "filters"),
    ],
)
def test_disparity_bad_arguments_raise(filters, kernel_size, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        ops.filter_disparity(filters, kernel_size=kernel_size)


# ------------------------------------------------------------------------------------------
# flow_to_rgb and hsv_to_rgb


def _flow_image(dx, dy):
    """A 1x1 flow image ``[1, 1, 2]``."""
    return jnp.asarray([[[dx, dy]]], jnp.float32)


def test_flow_to_rgb_range_shape_dtype():
    flow = jnp.asarray(np.random.default_rng(2).standard_normal((2, 5, 6, 2)) * 4, jnp.float32)
    for max_magnitude in (None, 1.0, 100.0):
        rgb = np.asarray(ops.flow_to_rgb(flow, max_magnitude=max_magnitude))
        assert rgb.shape == (2, 5, 6, 3) and rgb.dtype == np.float32
        assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    # Value is 1 everywhere: the brightest channel of every pixel is 1.
    np.testing.assert_allclose(rgb.max(axis=-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("max_magnitude", [None, 1.0])
def test_zero_flow_is_white(max_magnitude):
    rgb = ops.flow_to_rgb(jnp.zeros((3, 4, 2)), max_magnitude=max_magnitude)
    np.testing.assert_array_equal(rgb, np.ones((3, 4, 3), np.float32))


@pytest.mark.parametrize(
    "dx, dy, want",
    [
        (2.0, 0.0, (1.0, 0.0, 0.0)),  # +x: hue 0, red
        (0.0, 2.0, colorsys.hsv_to_rgb(0.25, 1.0, 1.0)),  # +y: hue 0.25
        (-2.0, 0.0, (0.0, 1.0, 1.0)),  # -x: hue 0.5, cyan
        (0.0, -2.0, colorsys.hsv_to_rgb(0.75, 1.0, 1.0)),  # -y: hue 0.75
    ],
)
def test_direction_sets_hue(dx, dy, want):
    rgb = ops.flow_to_rgb(_flow_image(dx, dy), max_magnitude=2.0)
    np.testing.assert_allclose(rgb[0, 0], want, atol=1e-6)


def test_hue_rotates_with_angle():
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    flow = np.stack([np.cos(angles), np.sin(angles)], axis=-1).reshape(1, 24, 2)
    rgb = np.asarray(ops.flow_to_rgb(jnp.asarray(flow, jnp.float32), max_magnitude=1.0))
    want = [colorsys.hsv_to_rgb(a / (2 * np.pi), 1.0, 1.0) for a in angles]
    np.testing.assert_allclose(rgb[0], want, atol=1e-5)


def test_max_magnitude_sets_saturation_and_clips():
    flow = jnp.asarray([[[0.5, 0.0], [1.0, 0.0], [3.0, 0.0]]], jnp.float32)  # [1, 3, 2]
    rgb = np.asarray(ops.flow_to_rgb(flow, max_magnitude=1.0))
    np.testing.assert_allclose(rgb[0, 0], (1.0, 0.5, 0.5), atol=1e-6)  # half saturated
    np.testing.assert_allclose(rgb[0, 1], (1.0, 0.0, 0.0), atol=1e-6)
    np.testing.assert_allclose(rgb[0, 2], (1.0, 0.0, 0.0), atol=1e-6)  # clipped


def test_default_max_magnitude_is_per_image():
    flow = np.zeros((2, 1, 2, 2), np.float32)
    flow[0, 0, 0] = (1.0, 0.0)
    flow[0, 0, 1] = (0.5, 0.0)
    flow[1, 0, 0] = (10.0, 0.0)
    flow[1, 0, 1] = (5.0, 0.0)
    rgb = np.asarray(ops.flow_to_rgb(jnp.asarray(flow)))
    for image in rgb:
        np.testing.assert_allclose(image[0, 0], (1.0, 0.0, 0.0), atol=1e-6)
        np.testing.assert_allclose(image[0, 1], (1.0, 0.5, 0.5), atol=1e-6)


def test_flow_to_rgb_under_jit():
    flow = _flow_image(0.0, 1.0)
    np.testing.assert_allclose(
        jax.jit(ops.flow_to_rgb)(flow), ops.flow_to_rgb(flow), rtol=0, atol=0
    )


@pytest.mark.parametrize(
    "flow, options, argument",
    [
        (jnp.ones((4, 4, 3)), {}, "flow"),  # three components
        (jnp.ones((4, 2)), {}, "flow"),  # no image axes
        (jnp.ones((2,)), {}, "flow"),
        (jnp.ones((4, 4, 2), jnp.int32), {}, "flow"),
        (jnp.ones((4, 4, 2)), {"max_magnitude": 0.0}, "max_magnitude"),
        (jnp.ones((4, 4, 2)), {"max_magnitude": -1.0}, "max_magnitude"),
    ],
)
def test_flow_to_rgb_bad_arguments_raise(flow, options, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        ops.flow_to_rgb(flow, **options)


def test_hsv_to_rgb_matches_colorsys():
    hsv = np.random.default_rng(3).uniform(0, 1, (64, 3)).astype(np.float32)
    rgb = np.asarray(ops.hsv_to_rgb(jnp.asarray(hsv)))
    assert rgb.shape == (64, 3)
    want = [colorsys.hsv_to_rgb(*map(float, row)) for row in hsv]
    np.testing.assert_allclose(rgb, want, atol=1e-5)
