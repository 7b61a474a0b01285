"""Tests for dfn_jax.layers: dynamic filtering layers and convolutional recurrent cells."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dfn_jax import ops
from dfn_jax.layers import (
    AdditiveConvRNNCell,
    ConvLSTMCell,
    DynamicConvolution,
    DynamicLocalFilter,
    LSTMState,
)


def _random(shape, seed=0):
    # NumPy, not jax.random: eager threefry compiles cost seconds per new shape on CPU.
    return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


def _normal(shape, seed=0, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=shape), jnp.float32)


# ------------------------------------------------------------------------------------------
# DynamicLocalFilter


def test_softmax_filters_sum_to_one_and_shapes():
    layer = DynamicLocalFilter(5)
    x = _random((2, 8, 6, 3))
    params = _normal((2, 8, 6, 25), 1, 3.0)
    out, filters = jax.jit(layer.__call__)(x, params)
    assert out.shape == (2, 8, 6, 3)
    assert filters.shape == (2, 8, 6, 25)
    np.testing.assert_allclose(filters.sum(-1), 1.0, rtol=1e-5)
    assert float(filters.min()) >= 0.0
    # A convex combination of zero-padded neighbours never exceeds the input range.
    assert float(out.max()) <= float(x.max()) + 1e-6
    assert float(out.min()) >= -1e-6


def test_centred_one_hot_logits_return_the_input():
    kernel_size = (3, 5)
    layer = DynamicLocalFilter(kernel_size)
    x = _random((1, 7, 9, 2))
    centre = (kernel_size[0] // 2) * kernel_size[1] + kernel_size[1] // 2
    logits = jnp.zeros((1, 7, 9, 15)).at[..., centre].set(40.0)
    out, filters = layer(x, logits)
    np.testing.assert_allclose(out, x, atol=1e-5)
    np.testing.assert_allclose(filters[..., centre], 1.0, atol=1e-6)


def test_no_normalisation_passes_taps_through_and_matches_op():
    layer = DynamicLocalFilter(3, normalize=None, implementation="reference")
    x = _random((2, 5, 5, 1))
    params = _normal((2, 5, 5, 9), 2)
    out, filters = layer(x, params)
    np.testing.assert_array_equal(filters, params)
    expected = ops.dynamic_local_filter(x, params, kernel_size=3)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_dynamic_bias_is_added_to_the_input_before_filtering():
    layer = DynamicLocalFilter(3, dynamic_bias=True)
    x = _random((2, 6, 6, 2))
    taps = _normal((2, 6, 6, 9), 3)
    bias = _normal((2, 6, 6, 1), 4)
    apply = jax.jit(layer.__call__)
    out, filters = apply(x, jnp.concatenate([taps, bias], axis=-1))
    assert filters.shape == (2, 6, 6, 9)
    expected = ops.dynamic_local_filter(x + bias, jax.nn.softmax(taps, -1), kernel_size=3)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # With identity filters the output is exactly input + bias (bias shared by the channels).
    logits = jnp.zeros((2, 6, 6, 9)).at[..., 4].set(40.0)
    out, _ = apply(x, jnp.concatenate([logits, bias], axis=-1))
    np.testing.assert_allclose(out, x + bias, atol=1e-5)


def test_local_filter_errors():
    layer = DynamicLocalFilter(3)
    x = _random((1, 4, 4, 1))
    with pytest.raises(ValueError, match="filter_params"):
        layer(x, jnp.zeros((1, 4, 4, 10)))  # 10 channels without dynamic bias
    with pytest.raises(ValueError, match=r"\[B, H, W, 10\]"):
        DynamicLocalFilter(3, dynamic_bias=True)(x, jnp.zeros((1, 4, 4, 9)))
    with pytest.raises(ValueError, match="filter_params"):
        layer(x, jnp.zeros((1, 4, 5, 9)))  # spatial mismatch
    with pytest.raises(ValueError, match="inputs"):
        layer(x[0], jnp.zeros((4, 4, 9)))
    with pytest.raises(ValueError, match="inputs"):
        layer(jnp.zeros((1, 4, 4, 1), jnp.int32), jnp.zeros((1, 4, 4, 9)))
    with pytest.raises(ValueError, match="kernel_size"):
        DynamicLocalFilter(4)
    with pytest.raises(ValueError, match="normalize"):
        DynamicLocalFilter(3, normalize="sigmoid")
    assert not jax.tree.leaves(nnx.state(layer))  # no parameters


def test_local_filter_gradients_flow_to_the_filter_params():
    layer = DynamicLocalFilter(3)
    x = _random((1, 5, 5, 1))

    def loss(params):
        out, _ = layer(x, params)
        return jnp.sum(out**2)

    grad = jax.jit(jax.grad(loss))(jnp.zeros((1, 5, 5, 9)))
    assert grad.shape == (1, 5, 5, 9)
    assert float(jnp.abs(grad).max()) > 0


# ------------------------------------------------------------------------------------------
# DynamicConvolution


def test_dynamic_convolution_reshapes_flat_params():
    layer = DynamicConvolution(3, 2, 4)
    assert layer.num_params == 3 * 3 * 2 * 4
    x = _random((2, 6, 7, 2))
    params = _normal((2, layer.num_params), 5)
    out = layer(x, params)
    assert out.shape == (2, 6, 7, 4)
    kernels = params.reshape(2, 3, 3, 2, 4)
    np.testing.assert_allclose(out, ops.dynamic_convolution(x, kernels), atol=1e-5)
    np.testing.assert_allclose(layer(x, kernels), out, atol=1e-6)
    # Each sample uses its own bank.
    np.testing.assert_allclose(out[1], ops.dynamic_convolution(x[1:], kernels[1:])[0], atol=1e-5)


def test_dynamic_convolution_stride_and_padding():
    layer = DynamicConvolution(3, 1, 1, stride=2, padding="VALID")
    out = layer(_random((1, 9, 9, 1)), jnp.ones((1, 9)))
    assert out.shape == (1, 4, 4, 1)


def test_dynamic_convolution_errors():
    layer = DynamicConvolution(3, 2, 4)
    with pytest.raises(ValueError, match="kernel_params"):
        layer(_random((2, 5, 5, 2)), jnp.zeros((2, 71)))
    with pytest.raises(ValueError, match="kernel_params"):
        layer(_random((2, 5, 5, 2)), jnp.zeros((1, 72)))  # wrong batch
    with pytest.raises(ValueError, match="in_features"):
        layer(_random((2, 5, 5, 3)), jnp.zeros((2, 72)))
    with pytest.raises(ValueError, match="out_features"):
        DynamicConvolution(3, 2, 0)


# ------------------------------------------------------------------------------------------
# Recurrent cells


def test_additive_cell_first_step_and_param_count():
    cell = AdditiveConvRNNCell(8, rngs=nnx.Rngs(0))
    n = sum(leaf.size for leaf in jax.tree.leaves(nnx.state(cell, nnx.Param)))
    assert n == 2 * (3 * 3 * 8 * 8 + 8)
    state = cell.initial_state(2, 5, 6)
    assert state.shape == (2, 5, 6, 8)
    e = _random((2, 5, 6, 8))
    # h_0 = 0 and biases are zero, so h_1 = e_1 exactly.
    h1, out = cell(state, e)
    np.testing.assert_allclose(h1, e, atol=1e-6)
    np.testing.assert_array_equal(h1, out)
    h2, _ = cell(h1, e)
    assert h2.shape == e.shape
    assert float(jnp.abs(h2 - e).max()) > 0  # the recurrent branch contributes


def test_additive_cell_errors():
    cell = AdditiveConvRNNCell(4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="inputs"):
        cell(cell.initial_state(1, 3, 3), jnp.zeros((1, 3, 3, 5)))
    with pytest.raises(ValueError, match="features"):
        AdditiveConvRNNCell(0, rngs=nnx.Rngs(0))


def test_convlstm_cell_scan():
    cell = ConvLSTMCell(3, 6, rngs=nnx.Rngs(0))
    n = sum(leaf.size for leaf in jax.tree.leaves(nnx.state(cell, nnx.Param)))
    assert n == 3 * 3 * (3 + 6) * 24 + 24
    state = cell.initial_state(2, 4, 5)
    assert isinstance(state, LSTMState)
    assert state.cell.shape == state.hidden.shape == (2, 4, 5, 6)
    xs = _random((7, 2, 4, 5, 3))
    graphdef, params = nnx.split(cell)

    def step(carry, x):
        return nnx.merge(graphdef, params)(carry, x)

    final, hs = jax.lax.scan(step, state, xs)
    assert hs.shape == (7, 2, 4, 5, 6)
    assert float(jnp.abs(hs).max()) < 1.0  # h = o * tanh(c)
    np.testing.assert_array_equal(final.hidden, hs[-1])
    with pytest.raises(ValueError, match="inputs"):
        cell(state, jnp.zeros((2, 4, 5, 4)))
    with pytest.raises(ValueError, match="inputs"):
        cell(state, jnp.zeros((2, 4, 6, 3)))
