"""Tests of `ops.dynamic_convolution`: both implementations against a per-sample Python loop of
`lax.conv_general_dilated` over strides and paddings, gradients, the relation to ordinary and to
local filtering, dtypes and argument checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from dfn_jax import ops

IMPLEMENTATIONS = ("fast", "reference")

_STATIC = ("stride", "padding", "precision", "implementation")
_convolution_jit = jax.jit(ops.dynamic_convolution, static_argnames=_STATIC)


def _convolution(x, k, *, jit=False, **options):
    return (_convolution_jit if jit else ops.dynamic_convolution)(x, k, **options)


def _lax_padding(padding):
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    return padding.upper() if isinstance(padding, str) else padding


def _conv(x, k, stride, padding):
    """An ordinary convolution of ``x [B, H, W, Cin]`` with ``k [kh, kw, Cin, Cout]``."""
    strides = (stride, stride) if isinstance(stride, int) else stride
    return lax.conv_general_dilated(
        x,
        k,
        window_strides=strides,
        padding=_lax_padding(padding),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST,
    )


def _per_sample_loop(x, k, stride, padding):
    """The obvious definition: convolve each sample with its own kernel bank, in Python."""
    return jnp.concatenate(
        [_conv(x[n : n + 1], k[n], stride, padding) for n in range(x.shape[0])], axis=0
    )


_per_sample_loop_jit = jax.jit(_per_sample_loop, static_argnums=(2, 3))


def _random(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


# (B, H, W, Cin, Cout, kh, kw, stride, padding)
CASES = [
    (2, 8, 8, 3, 4, 3, 3, 1, "SAME"),
    (2, 9, 7, 3, 2, 3, 3, 2, "SAME"),
    (1, 7, 6, 2, 2, 5, 5, 1, "same"),
    (3, 8, 10, 1, 5, 5, 3, 1, "VALID"),
    (2, 9, 9, 2, 3, 3, 5, 2, "VALID"),
    (1, 7, 8, 3, 2, 3, 3, 1, 1),
    (2, 8, 7, 2, 2, 3, 3, 2, 2),
    (2, 6, 9, 3, 1, 3, 3, 1, ((1, 2), (0, 1))),
    (2, 9, 6, 2, 3, 1, 5, (2, 1), ((0, 0), (2, 2))),
    (2, 8, 8, 3, 2, 4, 4, 1, "SAME"),
]


def _case_id(case):
    b, h, w, cin, cout, kh, kw, stride, padding = case
    return f"B{b}-{h}x{w}x{cin}-{cout}-k{kh}x{kw}-s{stride}-p{padding}".replace(" ", "")


def _case_arrays(case, seed=0):
    b, h, w, cin, cout, kh, kw, _, _ = case
    return _random(seed, (b, h, w, cin)), _random(seed + 1, (b, kh, kw, cin, cout))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_matches_per_sample_loop(case, jit):
    stride, padding = case[-2:]
    x, k = _case_arrays(case)
    want = _per_sample_loop_jit(x, k, stride, padding)
    for implementation in IMPLEMENTATIONS:
        out = _convolution(
            x, k, stride=stride, padding=padding, implementation=implementation, jit=jit
        )
        assert out.shape == want.shape and out.dtype == jnp.float32, implementation
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5, err_msg=implementation)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_unbatched_matches_batched(implementation, jit):
    x, k = _random(2, (7, 6, 3)), _random(3, (3, 3, 3, 2))
    out = _convolution(x, k, stride=2, padding="SAME", implementation=implementation, jit=jit)
    want = _conv(x[None], k, 2, "SAME")[0]
    assert out.shape == want.shape
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def _loss(convolution, x, k, cotangent):
    return jnp.sum(convolution(x, k) * cotangent)


GRADIENT_CASES = [(CASES[1], False), (CASES[1], True), (CASES[4], True), (CASES[7], True)]


@pytest.mark.parametrize(
    "case, jit",
    GRADIENT_CASES,
    ids=[f"{_case_id(c)}-{'jit' if j else 'eager'}" for c, j in GRADIENT_CASES],
)
def test_gradients_match_per_sample_loop(case, jit):
    stride, padding = case[-2:]
    x, k = _case_arrays(case, seed=4)
    cotangent = _random(6, _per_sample_loop_jit(x, k, stride, padding).shape)

    def loop(x, k):
        return _per_sample_loop(x, k, stride, padding)

    want = jax.jit(jax.grad(lambda x, k, c: _loss(loop, x, k, c), argnums=(0, 1)))(x, k, cotangent)
    for implementation in IMPLEMENTATIONS:

        def convolution(x, k, implementation=implementation):
            return ops.dynamic_convolution(
                x, k, stride=stride, padding=padding, implementation=implementation
            )

        grad = jax.grad(lambda x, k, c: _loss(convolution, x, k, c), argnums=(0, 1))
        got = (jax.jit(grad) if jit else grad)(x, k, cotangent)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-4, err_msg=implementation)


def test_check_grads():
    x, k = _random(7, (2, 5, 4, 2)), _random(8, (2, 3, 3, 2, 2))

    @jax.jit
    def fn(x, k):
        return ops.dynamic_convolution(x, k, stride=2)

    check_grads(fn, (x, k), order=1, modes=["fwd", "rev"], eps=1e-2, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("stride, padding", [(1, "SAME"), (2, "VALID"), (1, ((2, 0), (1, 1)))])
def test_kernels_shared_over_batch_equal_ordinary_convolution(stride, padding):
    x, kernel = _random(9, (3, 8, 7, 2)), _random(10, (3, 3, 2, 4))
    kernels = jnp.broadcast_to(kernel, (3,) + kernel.shape)
    out = _convolution(x, kernels, stride=stride, padding=padding, jit=True)
    np.testing.assert_allclose(out, _conv(x, kernel, stride, padding), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_size", [(3, 3), (1, 5), (5, 3)])
def test_spatially_shared_local_filter_equals_dynamic_convolution(kernel_size):
    # Dynamic convolution is dynamic local filtering with the filter shared over all pixels: a
    # per-sample filter [B, kh*kw] applied to every channel is a diagonal kernel bank.
    kh, kw = kernel_size
    b, h, w, c = 2, 6, 7, 3
    x, f = _random(11, (b, h, w, c)), _random(12, (b, kh * kw))
    eye = jnp.eye(c, dtype=jnp.float32).reshape(1, 1, 1, c, c)
    kernels = f.reshape(b, kh, kw, 1, 1) * eye  # [B, kh, kw, C, C]
    local_filters = jnp.broadcast_to(f[:, None, None, :], (b, h, w, kh * kw))
    out = _convolution(x, kernels, padding="SAME", jit=True)
    want = ops.dynamic_local_filter(x, local_filters, kernel_size=kernel_size)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "dtype, atol", [(jnp.bfloat16, 5e-2), (jnp.float16, 5e-3)], ids=["bfloat16", "float16"]
)
def test_low_precision_dtypes(dtype, atol, implementation):
    rng = np.random.default_rng(13)
    x = jnp.asarray(rng.uniform(0, 1, (2, 6, 5, 2)), jnp.float32)
    k = jnp.asarray(rng.uniform(0, 1, (2, 3, 3, 2, 3)) / 18, jnp.float32)  # outputs in [0, 1]
    want = ops.dynamic_convolution(x, k, implementation="reference")
    out = ops.dynamic_convolution(x.astype(dtype), k.astype(dtype), implementation=implementation)
    assert out.dtype == dtype
    np.testing.assert_allclose(np.asarray(out, np.float32), want, rtol=0, atol=atol)


@pytest.mark.parametrize("argument", ["inputs", "kernels"])
def test_integer_dtypes_raise(argument):
    x, k = jnp.ones((1, 4, 4, 2)), jnp.ones((1, 3, 3, 2, 2))
    if argument == "inputs":
        x = x.astype(jnp.int32)
    else:
        k = k.astype(jnp.int32)
    with pytest.raises(ValueError, match=f"`{argument}`"):
        ops.dynamic_convolution(x, k)


@pytest.mark.parametrize(
    "inputs_shape, kernels_shape, options, argument",
    [
        ((4, 4), (3, 3, 4, 2), {}, "inputs"),
        ((1, 1, 4, 4, 2), (1, 3, 3, 2, 2), {}, "inputs"),
        ((2, 4, 4, 2), (3, 3, 2, 2), {}, "kernels"),  # batched inputs, unbatched kernels
        ((4, 4, 2), (1, 3, 3, 2, 2), {}, "kernels"),  # unbatched inputs, batched kernels
        ((2, 4, 4, 2), (3, 3, 3, 2, 2), {}, "kernels"),  # batch mismatch
        ((2, 4, 4, 2), (2, 3, 3, 3, 2), {}, "kernels"),  # Cin mismatch
        ((4, 4, 2), (3, 3, 1, 2), {}, "kernels"),  # unbatched Cin mismatch
        ((2, 4, 4, 2), (2, 3, 3, 2, 2), {"padding": "FULL"}, "padding"),
        ((2, 4, 4, 2), (2, 3, 3, 2, 2), {"padding": -1}, "padding"),
        ((2, 4, 4, 2), (2, 3, 3, 2, 2), {"padding": ((1, 1),)}, "padding"),
        ((2, 4, 4, 2), (2, 3, 3, 2, 2), {"padding": ((1, 1), (1, 1, 1))}, "padding"),
        ((2, 4, 4, 2), (2, 3, 3, 2, 2), {"stride": 0}, "stride"),
        ((2, 4, 4, 2), (2, 3, 3, 2, 2), {"stride": (1, -2)}, "stride"),
        ((2, 4, 4, 2), (2, 3, 3, 2, 2), {"stride": (1, 2, 3)}, "stride"),
        ((2, 4, 4, 2), (2, 3, 3, 2, 2), {"implementation": "cudnn"}, "implementation"),
    ],
)
def test_bad_arguments_raise(inputs_shape, kernels_shape, options, argument):
    x, k = jnp.ones(inputs_shape), jnp.ones(kernels_shape)
    with pytest.raises(ValueError, match=f"`{argument}`"):
        ops.dynamic_convolution(x, k, **options)
