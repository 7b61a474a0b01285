"""Tests of `ops.dynamic_local_filter`: the fast path against the per-pixel reference and against
the authors' one-hot-convolution construction, its gradients, dtypes, exact properties of one-hot
and softmax filters, argument checks, and the memory the fused path avoids."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from dfn_jax import ops

IMPLEMENTATIONS = ("fast", "reference")

# One jitted entry point per function, shared by every test (kernel size and implementation are
# static; each new shape compiles once).
_local_filter_jit = jax.jit(
    ops.dynamic_local_filter, static_argnames=("kernel_size", "implementation")
)


def _local_filter(x, f, *, kernel_size, implementation="fast", jit=False):
    fn = _local_filter_jit if jit else ops.dynamic_local_filter
    return fn(x, f, kernel_size=kernel_size, implementation=implementation)


def _grads(x, f, cotangent, *, kernel_size, implementation):
    """Gradients of ``<filter(x, f), cotangent>`` w.r.t. ``x`` and ``f``."""

    def loss(x, f):
        out = ops.dynamic_local_filter(x, f, kernel_size=kernel_size, implementation=implementation)
        return jnp.sum(out * cotangent)

    return jax.grad(loss, argnums=(0, 1))(x, f)


_grads_jit = jax.jit(_grads, static_argnames=("kernel_size", "implementation"))


def _random_case(seed, batch, h, w, c, kh, kw, *, per_channel, unbatched=False):
    rng = np.random.default_rng(seed)
    lead = () if unbatched else (batch,)
    x = rng.standard_normal(lead + (h, w, c)).astype(np.float32)
    f_shape = lead + (h, w) + ((c,) if per_channel else ()) + (kh * kw,)
    f = rng.standard_normal(f_shape).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(f)


def _softmax_filters(seed, shape, *, sharpness=3.0):
    logits = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return jax.nn.softmax(jnp.asarray(logits) * sharpness, axis=-1)


def _theano_local_filter(x, f, kh, kw):
    """The authors' construction: a convolution with ``kh*kw`` one-hot kernels (cross-correlation,
    SAME zero padding) gives a ``[B, H, W, kh*kw]`` patch stack per channel, which is multiplied by
    the filters and summed over taps."""
    b, h, w, c = x.shape
    taps = kh * kw
    bank = jnp.asarray(np.eye(taps, dtype=np.float32).reshape(kh, kw, 1, taps))
    channels_as_batch = x.transpose(0, 3, 1, 2).reshape(b * c, h, w, 1)
    patches = lax.conv_general_dilated(
        channels_as_batch,
        bank,
        window_strides=(1, 1),
        padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST,
    )  # [B*C, H, W, T]
    patches = patches.reshape(b, c, h, w, taps).transpose(0, 2, 3, 1, 4)  # [B, H, W, C, T]
    if f.ndim == 4:
        f = f[..., None, :]
    return jnp.sum(patches * f, axis=-1)


def _shifted(x, dy, dx):
    """``out[:, y, x] = x[:, y + dy, x + dx]``, zero outside the image (numpy)."""
    x = np.asarray(x)
    _, h, w, _ = x.shape
    ph, pw = abs(dy), abs(dx)
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    return xp[:, ph + dy : ph + dy + h, pw + dx : pw + dx + w]


def _one_hot_filters(batch, h, w, taps, tap):
    f = np.zeros((batch, h, w, taps), np.float32)
    f[..., tap] = 1.0
    return jnp.asarray(f)


# (batch, H, W, C, kh, kw, per_channel): odd kernels from 1x1 to 13x13, non-square images and
# kernels, kernels larger than the image, C in {1, 3, 8}, shared and per-channel filters.
SHAPES = [
    (2, 8, 8, 3, 3, 3, False),
    (1, 7, 12, 1, 1, 13, False),
    (2, 14, 12, 1, 11, 11, False),
    (1, 12, 5, 8, 13, 1, True),
    (3, 6, 9, 8, 1, 1, False),
    (2, 9, 7, 3, 3, 5, True),
    (1, 5, 4, 3, 11, 11, True),
    (2, 10, 6, 8, 5, 3, False),
]


def _shape_id(shape):
    b, h, w, c, kh, kw, per_channel = shape
    return f"B{b}-{h}x{w}x{c}-k{kh}x{kw}-{'perchannel' if per_channel else 'shared'}"


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
def test_fast_matches_reference(shape, jit):
    b, h, w, c, kh, kw, per_channel = shape
    x, f = _random_case(0, b, h, w, c, kh, kw, per_channel=per_channel)
    fast = _local_filter(x, f, kernel_size=(kh, kw), implementation="fast", jit=jit)
    ref = _local_filter(x, f, kernel_size=(kh, kw), implementation="reference", jit=True)
    assert fast.shape == (b, h, w, c)
    assert fast.dtype == ref.dtype == jnp.float32
    np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "perchannel"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_unbatched_matches_batched(implementation, per_channel, jit):
    x, f = _random_case(1, None, 6, 7, 3, 3, 5, per_channel=per_channel, unbatched=True)
    out = _local_filter(x, f, kernel_size=(3, 5), implementation=implementation, jit=jit)
    batched = _local_filter(x[None], f[None], kernel_size=(3, 5), implementation="reference")
    assert out.shape == (6, 7, 3)
    np.testing.assert_allclose(out, batched[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "shape",
    [(2, 7, 9, 3, 3, 3, False), (1, 6, 8, 1, 1, 13, False), (2, 5, 6, 3, 5, 3, True)],
    ids=_shape_id,
)
def test_tap_order_matches_theano_one_hot_convolution(shape, implementation):
    b, h, w, c, kh, kw, per_channel = shape
    x, f = _random_case(2, b, h, w, c, kh, kw, per_channel=per_channel)
    expected = _theano_local_filter(x, f, kh, kw)
    out = _local_filter(x, f, kernel_size=(kh, kw), implementation=implementation)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


# (shape, jit): large kernels only once, their unrolled backward pass is slow to compile.
GRADIENT_CASES = [
    ((2, 6, 7, 3, 3, 3, False), False),
    ((2, 6, 7, 3, 3, 3, False), True),
    ((2, 8, 6, 8, 5, 3, True), False),
    ((2, 8, 6, 8, 5, 3, True), True),
    ((1, 5, 9, 1, 1, 13, False), True),
    ((1, 6, 6, 3, 11, 11, False), False),
]


@pytest.mark.parametrize(
    "shape, jit",
    GRADIENT_CASES,
    ids=[f"{_shape_id(s)}-{'jit' if j else 'eager'}" for s, j in GRADIENT_CASES],
)
def test_fast_gradients_match_reference(shape, jit):
    b, h, w, c, kh, kw, per_channel = shape
    x, f = _random_case(3, b, h, w, c, kh, kw, per_channel=per_channel)
    cotangent = jnp.asarray(np.random.default_rng(4).standard_normal((b, h, w, c)), jnp.float32)
    grads = _grads_jit if jit else _grads
    dx_fast, df_fast = grads(x, f, cotangent, kernel_size=(kh, kw), implementation="fast")
    dx_ref, df_ref = _grads_jit(x, f, cotangent, kernel_size=(kh, kw), implementation="reference")
    assert dx_fast.shape == x.shape and df_fast.shape == f.shape
    assert dx_fast.dtype == x.dtype and df_fast.dtype == f.dtype
    np.testing.assert_allclose(dx_fast, dx_ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(df_fast, df_ref, rtol=1e-5, atol=1e-4)


def test_unbatched_gradients_match_reference():
    x, f = _random_case(5, None, 5, 6, 2, 3, 3, per_channel=False, unbatched=True)
    cotangent = jnp.asarray(np.random.default_rng(6).standard_normal((5, 6, 2)), jnp.float32)
    fast = _grads_jit(x, f, cotangent, kernel_size=3, implementation="fast")
    ref = _grads_jit(x, f, cotangent, kernel_size=3, implementation="reference")
    for got, want in zip(fast, ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "perchannel"])
def test_fast_check_grads(per_channel, order):
    # float32: the fast path computes in float32 whatever the input dtype, so float64 inputs would
    # not make the finite differences more accurate. The op is bilinear in (inputs, filters), so
    # central differences are exact up to rounding and a large eps is safe.
    x, f = _random_case(7, 1, 4, 5, 2, 3, 3, per_channel=per_channel)

    @jax.jit
    def fn(x, f):
        return ops.dynamic_local_filter(x, f, kernel_size=3)

    check_grads(fn, (x, f), order=order, modes=["rev"], eps=1e-2, atol=1e-2, rtol=1e-2)


# ------------------------------------------------------------------------------------------
# dtypes

_DTYPE_ATOL = {jnp.float32: 1e-5, jnp.bfloat16: 2e-2, jnp.float16: 3e-3}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "dtype", [jnp.float32, jnp.bfloat16, jnp.float16], ids=lambda d: jnp.dtype(d).name
)
def test_low_precision_dtypes(dtype, implementation):
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.uniform(0.0, 1.0, (2, 6, 7, 3)), jnp.float32)
    f = _softmax_filters(9, (2, 6, 7, 9))  # outputs lie in [0, 1]
    want = _local_filter(x, f, kernel_size=3, implementation="reference")
    out = _local_filter(
        x.astype(dtype), f.astype(dtype), kernel_size=3, implementation=implementation
    )
    assert out.dtype == dtype
    np.testing.assert_allclose(np.asarray(out, np.float32), want, rtol=0, atol=_DTYPE_ATOL[dtype])


def test_mixed_dtypes_promote():
    x = jnp.ones((1, 4, 4, 2), jnp.bfloat16)
    f = _softmax_filters(10, (1, 4, 4, 9))
    out = ops.dynamic_local_filter(x, f, kernel_size=3)
    assert out.dtype == jnp.float32


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=lambda d: jnp.dtype(d).name)
def test_low_precision_gradients_keep_dtype(dtype):
    x, f = _random_case(11, 1, 5, 5, 2, 3, 3, per_channel=False)
    cotangent = jnp.ones((1, 5, 5, 2), dtype)
    dx, df = _grads_jit(
        x.astype(dtype), f.astype(dtype), cotangent, kernel_size=3, implementation="fast"
    )
    assert dx.dtype == dtype and df.dtype == dtype
    dx32, df32 = _grads_jit(
        x, f, cotangent.astype(jnp.float32), kernel_size=3, implementation="fast"
    )
    np.testing.assert_allclose(np.asarray(dx, np.float32), dx32, rtol=5e-2, atol=1e-1)
    np.testing.assert_allclose(np.asarray(df, np.float32), df32, rtol=5e-2, atol=1e-1)


@pytest.mark.parametrize("argument", ["inputs", "filters"])
@pytest.mark.parametrize(
    "dtype", [jnp.int32, jnp.uint8, jnp.bool_], ids=lambda d: jnp.dtype(d).name
)
def test_non_floating_dtypes_raise(dtype, argument):
    x = jnp.ones((1, 4, 4, 2), jnp.float32)
    f = jnp.ones((1, 4, 4, 9), jnp.float32)
    if argument == "inputs":
        x = x.astype(dtype)
    else:
        f = f.astype(dtype)
    with pytest.raises(ValueError, match=f"`{argument}`"):
        ops.dynamic_local_filter(x, f, kernel_size=3)


# ------------------------------------------------------------------------------------------
# Properties of one-hot and softmax filters.


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("kernel_size", [(1, 1), (3, 3), (1, 13), (13, 1), (5, 3), (11, 11)])
def test_centred_one_hot_is_identity(kernel_size, implementation):
    kh, kw = kernel_size
    x, _ = _random_case(12, 2, 7, 6, 3, kh, kw, per_channel=False)
    f = _one_hot_filters(2, 7, 6, kh * kw, (kh // 2) * kw + kw // 2)
    out = _local_filter(x, f, kernel_size=kernel_size, implementation=implementation, jit=True)
    np.testing.assert_array_equal(out, x)


# (kh, kw, i, j): tap t = i*kw + j reads offset (dy, dx) = (i - kh//2, j - kw//2).
ONE_HOT_TAPS = [
    (3, 3, 0, 0),
    (3, 3, 2, 1),
    (5, 5, 0, 4),
    (1, 13, 0, 0),
    (1, 13, 0, 11),
    (13, 1, 12, 0),
    (3, 5, 1, 4),
    (11, 11, 2, 9),
]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("tap", ONE_HOT_TAPS, ids=lambda t: f"k{t[0]}x{t[1]}-i{t[2]}j{t[3]}")
def test_offset_one_hot_shifts_image(tap, implementation):
    kh, kw, i, j = tap
    dy, dx = i - kh // 2, j - kw // 2
    b, h, w, c = 2, 8, 7, 3
    x, _ = _random_case(13, b, h, w, c, kh, kw, per_channel=False)
    f = _one_hot_filters(b, h, w, kh * kw, i * kw + j)
    out = _local_filter(x, f, kernel_size=(kh, kw), implementation=implementation, jit=True)
    np.testing.assert_array_equal(out, _shifted(x, dy, dx))
    flow = ops.filter_flow(f, kernel_size=(kh, kw))
    assert flow.shape == (b, h, w, 2)
    np.testing.assert_array_equal(flow[..., 0], np.full((b, h, w), dx, np.float32))
    np.testing.assert_array_equal(flow[..., 1], np.full((b, h, w), dy, np.float32))


def test_per_channel_one_hot_shifts_each_channel_separately():
    kh, kw = 3, 5
    x, _ = _random_case(14, 1, 6, 7, 3, kh, kw, per_channel=False)
    taps = [0, 7, 14]  # a different offset for each channel
    f = np.zeros((1, 6, 7, 3, kh * kw), np.float32)
    for c, t in enumerate(taps):
        f[..., c, t] = 1.0
    out = ops.dynamic_local_filter(x, jnp.asarray(f), kernel_size=(kh, kw))
    for c, t in enumerate(taps):
        dy, dx = t // kw - kh // 2, t % kw - kw // 2
        np.testing.assert_array_equal(out[..., c], _shifted(x, dy, dx)[..., c])


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("kernel_size", [(3, 3), (1, 13), (9, 9)])
def test_softmax_filters_stay_within_input_range(kernel_size, implementation):
    kh, kw = kernel_size
    b, h, w, c = 2, 12, 13, 3
    rng = np.random.default_rng(15)
    # Positive inputs: zero padding at the borders can pull an output below min(x) towards 0.
    x = jnp.asarray(rng.uniform(1.0, 2.0, (b, h, w, c)), jnp.float32)
    f = _softmax_filters(16, (b, h, w, kh * kw), sharpness=1.0)
    out = _local_filter(x, f, kernel_size=kernel_size, implementation=implementation, jit=True)
    out = np.asarray(out)
    lo, hi = float(jnp.min(x)), float(jnp.max(x))
    slack = 1e-5
    assert out.min() >= min(0.0, lo) - slack and out.max() <= max(0.0, hi) + slack
    # Away from the borders every window lies inside the image: a convex combination of pixels.
    interior = out[:, kh // 2 : h - kh // 2, kw // 2 : w - kw // 2]
    assert interior.min() >= lo - slack and interior.max() <= hi + slack
    # A border pixel whose filter reads outside the image sees the zero padding.
    assert out[:, 0].min() < lo


# ------------------------------------------------------------------------------------------
# Argument checks: every bad input fails with a ValueError naming the argument.


def _ok():
    return jnp.ones((2, 5, 6, 3), jnp.float32), jnp.ones((2, 5, 6, 9), jnp.float32)


@pytest.mark.parametrize(
    "inputs_shape, filters_shape, kernel_size, argument",
    [
        ((5, 6), (5, 6, 9), 3, "inputs"),  # inputs rank 2
        ((1, 2, 5, 6, 3), (1, 2, 5, 6, 9), 3, "inputs"),  # inputs rank 5
        ((2, 5, 6, 3), (2, 5, 9), 3, "filters"),  # filters rank too low
        ((2, 5, 6, 3), (2, 5, 6, 3, 1, 9), 3, "filters"),  # filters rank too high
        ((5, 6, 3), (5, 6, 3, 1, 9), 3, "filters"),  # unbatched, filters rank too high
        ((2, 5, 6, 3), (2, 5, 6, 8), 3, "filters"),  # 8 taps for a 3x3 kernel
        ((2, 5, 6, 3), (2, 5, 6, 9), (1, 13), "filters"),  # 9 taps for 1x13
        ((2, 5, 6, 3), (2, 5, 6, 3, 25), 3, "filters"),  # per-channel, wrong taps
        ((2, 5, 6, 3), (1, 5, 6, 9), 3, "filters"),  # batch mismatch
        ((2, 5, 6, 3), (2, 6, 5, 9), 3, "filters"),  # spatial mismatch
        ((2, 5, 6, 3), (2, 5, 7, 9), 3, "filters"),  # width mismatch
        ((2, 5, 6, 3), (2, 5, 6, 2, 9), 3, "filters"),  # per-channel channel mismatch
        ((5, 6, 3), (5, 7, 9), 3, "filters"),  # unbatched spatial mismatch
        ((2, 5, 6, 3), (2, 5, 6, 16), 4, "kernel_size"),  # even
        ((2, 5, 6, 3), (2, 5, 6, 12), (3, 4), "kernel_size"),  # even width
        ((2, 5, 6, 3), (2, 5, 6, 1), 0, "kernel_size"),  # zero
        ((2, 5, 6, 3), (2, 5, 6, 9), -3, "kernel_size"),  # negative
        ((2, 5, 6, 3), (2, 5, 6, 9), (3, -3), "kernel_size"),  # negative width
        ((2, 5, 6, 3), (2, 5, 6, 27), (3, 3, 3), "kernel_size"),  # three sizes
        ((2, 5, 6, 3), (2, 5, 6, 9), "3x3", "kernel_size"),  # not a number
    ],
)
def test_bad_arguments_raise(inputs_shape, filters_shape, kernel_size, argument):
    x = jnp.ones(inputs_shape, jnp.float32)
    f = jnp.ones(filters_shape, jnp.float32)
    with pytest.raises(ValueError, match=f"`{argument}`"):
        ops.dynamic_local_filter(x, f, kernel_size=kernel_size)


def test_unknown_implementation_raises():
    x, f = _ok()
    with pytest.raises(ValueError, match="`implementation`"):
        ops.dynamic_local_filter(x, f, kernel_size=3, implementation="cuda")


def test_errors_raise_under_jit():
    x, f = _ok()
    with pytest.raises(ValueError, match="`filters`"):
        _local_filter_jit(x, f[..., :8], kernel_size=3)


# ------------------------------------------------------------------------------------------
# Memory: the fused path never keeps the [B, H, W, C, kh*kw] patch tensor.

MEMORY_SHAPES = [(4, 32, 32, 8, 9, 9), (2, 32, 32, 1, 9, 9)]


def _patch_bytes(b, h, w, c, kh, kw):
    return b * h * w * c * kh * kw * np.dtype(np.float32).itemsize


def _abstract_args(b, h, w, c, kh, kw):
    return (
        jax.ShapeDtypeStruct((b, h, w, c), jnp.float32),
        jax.ShapeDtypeStruct((b, h, w, kh * kw), jnp.float32),
    )


def _temp_bytes(fn, args):
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    if stats is None:
        pytest.skip("this backend reports no memory analysis")
    return stats.temp_size_in_bytes


@pytest.mark.parametrize("shape", MEMORY_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fast_forward_temp_memory_below_patch_tensor(shape):
    kh, kw = shape[-2:]

    def forward(x, f):
        return ops.dynamic_local_filter(x, f, kernel_size=(kh, kw))

    temp = _temp_bytes(forward, _abstract_args(*shape))
    assert temp < _patch_bytes(*shape), (temp, _patch_bytes(*shape))


@pytest.mark.parametrize("shape", MEMORY_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_fast_backward_temp_memory_below_patch_tensor(shape):
    kh, kw = shape[-2:]

    def loss(x, f):
        return jnp.sum(ops.dynamic_local_filter(x, f, kernel_size=(kh, kw)))

    temp = _temp_bytes(jax.grad(loss, argnums=(0, 1)), _abstract_args(*shape))
    assert temp < _patch_bytes(*shape), (temp, _patch_bytes(*shape))
