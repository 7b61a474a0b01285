"""Factorised predicted layers (learnets, Bertinetto et al. 2016) against the dense layers built
from the same factors, the shared dynamic convolution op and an example-by-example loop."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from dfn_jax import ops
from dfn_jax.layers.factorized import (
    IMPLEMENTATIONS,
    FactorizedConv,
    FactorizedLinear,
    conv_dense_from_factors,
    dense_from_factors,
    factorized_conv,
    factorized_linear,
)


def _normal(shape, seed, dtype=jnp.float32):
    # NumPy, not jax.random: eager threefry compiles cost seconds per new shape on CPU.
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


def _conv_case(seed):
    """Random shapes: B, H, W, Cin, R, Cout, a kernel size, stride and padding."""
    rng = np.random.default_rng(seed)
    b, h, w = rng.integers(1, 4), rng.integers(5, 10), rng.integers(5, 10)
    cin, r, cout = rng.integers(1, 5), rng.integers(1, 6), rng.integers(1, 5)
    k = int(rng.choice([1, 3, 5]))
    stride = [1, 2, (2, 1)][rng.integers(3)]
    padding = ["SAME", "VALID", 1, ((0, 2), (1, 0))][rng.integers(4)]
    x = _normal((b, h, w, cin), seed + 1)
    filters = _normal((b, k, k, r), seed + 2)
    proj_in = _normal((cin, r), seed + 3)
    proj_out = _normal((r, cout), seed + 4)
    return x, filters, proj_in, proj_out, stride, padding


# ------------------------------------------------------------------------------------------
# Linear


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("jit", [False, True])
def test_factorized_linear_equals_the_dense_matrix_of_its_factors(seed, jit):
    rng = np.random.default_rng(seed)
    b, din, r, dout = (int(n) for n in rng.integers(1, 9, size=4))
    x, w = _normal((b, din), seed), _normal((b, r), seed + 1)
    m_in, m_out = _normal((din, r), seed + 2), _normal((r, dout), seed + 3)
    fn = jax.jit(factorized_linear) if jit else factorized_linear
    y = fn(x, w, m_in=m_in, m_out=m_out)
    dense = dense_from_factors(w, m_in=m_in, m_out=m_out)
    assert y.shape == (b, dout) and dense.shape == (b, din, dout)
    np.testing.assert_allclose(y, jnp.einsum("bi,bio->bo", x, dense), rtol=1e-5, atol=1e-5)
    # The paper's form, example by example: W(z) = M' diag(w(z)) M with M = m_in.T, M' = m_out.T.
    for i in range(b):
        matrix = np.asarray(m_out).T @ np.diag(np.asarray(w[i])) @ np.asarray(m_in).T
        np.testing.assert_allclose(dense[i], matrix.T, rtol=1e-5, atol=1e-5)


def test_factorized_linear_gradients_match_the_dense_form():
    x, w = _normal((3, 5), 0), _normal((3, 4), 1)
    m_in, m_out = _normal((5, 4), 2), _normal((4, 6), 3)

    def factorised(*args):
        return jnp.sum(jnp.sin(factorized_linear(args[0], args[1], m_in=args[2], m_out=args[3])))

    def dense(*args):
        matrices = dense_from_factors(args[1], m_in=args[2], m_out=args[3])
        return jnp.sum(jnp.sin(jnp.einsum("bi,bio->bo", args[0], matrices)))

    for got, want in zip(
        jax.grad(factorised, argnums=(0, 1, 2, 3))(x, w, m_in, m_out),
        jax.grad(dense, argnums=(0, 1, 2, 3))(x, w, m_in, m_out),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------
# Convolution


def test_conv_dense_from_factors_by_hand():
    filters, proj_in, proj_out = _normal((2, 3, 3, 4), 0), _normal((3, 4), 1), _normal((4, 5), 2)
    dense = np.asarray(conv_dense_from_factors(filters, proj_in=proj_in, proj_out=proj_out))
    f, pi, po = (np.asarray(a) for a in (filters, proj_in, proj_out))
    assert dense.shape == (2, 3, 3, 3, 5)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                expected = pi @ np.diag(f[b, i, j]) @ po  # [Cin, Cout]
                np.testing.assert_allclose(dense[b, i, j], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(8))
def test_factorized_conv_equals_dynamic_convolution_with_the_dense_kernel(seed):
    x, filters, proj_in, proj_out, stride, padding = _conv_case(seed)
    kernels = conv_dense_from_factors(filters, proj_in=proj_in, proj_out=proj_out)
    want = ops.dynamic_convolution(
        x, kernels, stride=stride, padding=padding, implementation="reference"
    )
    for implementation in IMPLEMENTATIONS:
        got = factorized_conv(
            x,
            filters,
            proj_in=proj_in,
            proj_out=proj_out,
            stride=stride,
            padding=padding,
            implementation=implementation,
        )
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=implementation)


@pytest.mark.parametrize("implementation", ["fast", "grouped", "dense"])
def test_factorized_conv_under_jit_equals_the_per_example_reference(implementation):
    x, filters, proj_in, proj_out = (
        _normal((3, 7, 6, 2), 0),
        _normal((3, 3, 3, 4), 1),
        _normal((2, 4), 2),
        _normal((4, 3), 3),
    )
    fn = jax.jit(
        functools.partial(factorized_conv, implementation=implementation, stride=(1, 2)),
    )
    got = fn(x, filters, proj_in=proj_in, proj_out=proj_out)
    want = factorized_conv(
        x, filters, proj_in=proj_in, proj_out=proj_out, stride=(1, 2), implementation="reference"
    )
    assert got.shape == (3, 7, 3, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _loss(implementation, x, filters, proj_in, proj_out):
    y = factorized_conv(
        x, filters, proj_in=proj_in, proj_out=proj_out, implementation=implementation
    )
    return jnp.sum(jnp.sin(y))


@pytest.mark.parametrize("implementation", ["fast", "grouped", "dense"])
def test_factorized_conv_gradients_equal_the_reference(implementation):
    args = (_normal((2, 6, 5, 3), 0), _normal((2, 3, 3, 4), 1))
    args += (_normal((3, 4), 2), _normal((4, 2), 3))
    grad = jax.grad(_loss, argnums=(1, 2, 3, 4))
    got = jax.jit(grad, static_argnums=0)(implementation, *args)
    want = grad("reference", *args)
    for name, g, w in zip(("x", "filters", "proj_in", "proj_out"), got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4, err_msg=name)


def test_factorized_conv_gradients_are_numerically_right():
    with jax.enable_x64(True):
        args = (
            _normal((2, 5, 4, 2), 0, jnp.float64),
            _normal((2, 3, 3, 3), 1, jnp.float64),
            _normal((2, 3), 2, jnp.float64),
            _normal((3, 2), 3, jnp.float64),
        )
        check_grads(
            functools.partial(_loss, "fast"), args, order=2, modes=("rev",), atol=1e-3, rtol=1e-3
        )


# ------------------------------------------------------------------------------------------
# Modules


def test_factorized_conv_module_takes_flat_or_shaped_filters_and_adds_its_bias():
    layer = FactorizedConv(3, 5, 4, 3, rngs=nnx.Rngs(0))
    layer.bias[...] = _normal((5,), 9)
    assert layer.predicted_shape == (3, 3, 4)
    x, filters = _normal((2, 6, 6, 3), 0), _normal((2, 3, 3, 4), 1)
    flat = layer(x, filters.reshape(2, -1))
    shaped = layer(x, filters)
    want = ops.dynamic_convolution(
        x,
        conv_dense_from_factors(filters, proj_in=layer.proj_in[...], proj_out=layer.proj_out[...]),
    ) + layer.bias[...].reshape(1, 1, 1, 5)
    np.testing.assert_allclose(flat, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(shaped, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"`filters` must have shape \[2, 3, 3, 4\] or \[2, 36\]"):
        layer(x, filters[..., :3])
    with pytest.raises(ValueError, match=r"`x` must have shape \[B, H, W, 3\]"):
        layer(x[..., :2], filters)


def test_factorized_linear_module():
    layer = FactorizedLinear(6, 4, 3, rngs=nnx.Rngs(0))
    layer.bias[...] = _normal((4,), 9)
    x, w = _normal((2, 6), 0), _normal((2, 3), 1)
    want = jnp.einsum(
        "bi,bio->bo", x, dense_from_factors(w, m_in=layer.m_in[...], m_out=layer.m_out[...])
    )
    np.testing.assert_allclose(layer(x, w), want + layer.bias[...][None], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"`w` must have shape \[2, 3\]"):
        layer(x, w[:1])


def test_errors_name_the_argument_and_the_expected_shape():
    x, filters = _normal((2, 6, 6, 3), 0), _normal((2, 3, 3, 4), 1)
    proj_in, proj_out = _normal((3, 4), 2), _normal((4, 5), 3)
    with pytest.raises(ValueError, match=r"`x` must have shape \[B, H, W, Cin\] with B = 2"):
        factorized_conv(x[:1], filters, proj_in=proj_in, proj_out=proj_out)
    with pytest.raises(ValueError, match=r"`proj_in` .* must have shapes \[Cin, R\]"):
        factorized_conv(x, filters, proj_in=proj_in[:, :3], proj_out=proj_out)
    with pytest.raises(ValueError, match=r"`filters` must have shape \[B, kh, kw, R\]"):
        factorized_conv(x, filters[0], proj_in=proj_in, proj_out=proj_out)
    with pytest.raises(ValueError, match="`implementation` must be one of"):
        factorized_conv(x, filters, proj_in=proj_in, proj_out=proj_out, implementation="loop")
    with pytest.raises(ValueError, match="`padding` must be"):
        factorized_conv(x, filters, proj_in=proj_in, proj_out=proj_out, padding="FULL")
    with pytest.raises(ValueError, match="floating-point"):
        factorized_conv(x.astype(jnp.int32), filters, proj_in=proj_in, proj_out=proj_out)
    with pytest.raises(ValueError, match=r"`x` must have shape \[B, Din\] = \[2, 3\]"):
        factorized_linear(x[:, 0, 0, :2], filters[:, 0, 0], m_in=proj_in, m_out=proj_out)
    with pytest.raises(ValueError, match="`rank` must be a positive int"):
        FactorizedLinear(3, 4, 0, rngs=nnx.Rngs(0))
