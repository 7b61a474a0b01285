"""Tests of `ops.dynamic_local_filter`: the fast path (C++ kernels on CPU) and the fused XLA path
against the per-pixel reference and against the authors' one-hot-convolution construction, their
gradients of first and second order, vmap, sharded inputs, dtypes, exact properties of one-hot and
softmax filters, argument checks, the memory the fused paths avoid, and the kernel build and its
fallback."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from dfn_jax import ops
from dfn_jax.ops import _cpu_kernels

IMPLEMENTATIONS = ("fast", "xla", "reference")
FUSED = ("fast", "xla")  # "fast" is the C++ kernel on CPU when it could be built

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
    (2, 16, 12, 1, 9, 9, True),
    (1, 6, 40, 2, 3, 19, False),  # kw > 16: several vectors per window row in the kernel
    (1, 5, 45, 1, 1, 37, True),
]


def _shape_id(shape):
    b, h, w, c, kh, kw, per_channel = shape
    return f"B{b}-{h}x{w}x{c}-k{kh}x{kw}-{'perchannel' if per_channel else 'shared'}"


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
@pytest.mark.parametrize("implementation", FUSED)
def test_fused_matches_reference(implementation, shape, jit):
    b, h, w, c, kh, kw, per_channel = shape
    x, f = _random_case(0, b, h, w, c, kh, kw, per_channel=per_channel)
    fast = _local_filter(x, f, kernel_size=(kh, kw), implementation=implementation, jit=jit)
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
    _check_gradients_match_reference(shape, jit, "fast")


@pytest.mark.parametrize(
    "shape",
    [(2, 6, 7, 3, 3, 3, False), (2, 8, 6, 8, 5, 3, True), (1, 5, 30, 2, 3, 19, True)],
    ids=_shape_id,
)
def test_xla_gradients_match_reference(shape):
    _check_gradients_match_reference(shape, True, "xla")


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
    "shape",
    [(2, 6, 7, 1, 3, 3, False), (2, 8, 6, 3, 5, 3, False), (1, 5, 9, 2, 3, 5, True)],
    ids=_shape_id,
)
def test_filter_gradient_forms_agree(shape, jit):
    """``H``'s accelerator form (the gather) equals its CPU form (window rows), shared filters
    summed over channels and per-channel filters alike."""
    from dfn_jax.ops import _local_filter as lf

    b, h, w, c, kh, kw, per_channel = shape
    x, _ = _random_case(5, b, h, w, c, kh, kw, per_channel=per_channel)
    g = jnp.asarray(np.random.default_rng(6).standard_normal((b, h, w, c)), jnp.float32)
    forms = (lf._xla_outer_rows, lf._xla_outer_gather)
    if jit:
        forms = tuple(jax.jit(form, static_argnums=(2, 3, 4)) for form in forms)
    rows, gather = (form(g, x, kh, kw, per_channel) for form in forms)
    assert (
        gather.shape == rows.shape == ((b, h, w, c, kh * kw) if per_channel else (b, h, w, kh * kw))
    )
    np.testing.assert_allclose(gather, rows, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "perchannel"])
def test_accelerator_dispatch_gradients_match_reference(per_channel, monkeypatch):
    """The op as it runs off the CPU (the backend faked: XLA forms, the gather for ``H``), first-
    and second-order gradients against the reference."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    jax.clear_caches()  # traces made on the CPU path must not be reused
    try:
        _check_gradients_match_reference((2, 7, 6, 2, 3, 5, per_channel), True, "fast")
        x, f = _random_case(8, 1, 4, 5, 2, 3, 3, per_channel=per_channel)
        grad_f = jax.grad(lambda f: jnp.sum(ops.dynamic_local_filter(x, f, kernel_size=3)))
        hlo = jax.jit(grad_f).lower(f).as_text()
        assert "gather" in hlo and "custom_call" not in hlo
        x, f = _random_case(7, 1, 5, 6, 2, 3, 3, per_channel=per_channel)
        check_grads(
            functools.partial(ops.dynamic_local_filter, kernel_size=3),
            (x, f),
            order=2,
            modes=("rev",),
            atol=1e-2,
            rtol=1e-2,
        )
    finally:
        monkeypatch.undo()
        jax.clear_caches()


def _check_gradients_match_reference(shape, jit, implementation):
    b, h, w, c, kh, kw, per_channel = shape
    x, f = _random_case(3, b, h, w, c, kh, kw, per_channel=per_channel)
    cotangent = jnp.asarray(np.random.default_rng(4).standard_normal((b, h, w, c)), jnp.float32)
    grads = _grads_jit if jit else _grads
    dx_fast, df_fast = grads(x, f, cotangent, kernel_size=(kh, kw), implementation=implementation)
    dx_ref, df_ref = _grads_jit(x, f, cotangent, kernel_size=(kh, kw), implementation="reference")
    assert dx_fast.shape == x.shape and df_fast.shape == f.shape
    assert dx_fast.dtype == x.dtype and df_fast.dtype == f.dtype
    np.testing.assert_allclose(dx_fast, dx_ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(df_fast, df_ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("implementation", FUSED)
@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "perchannel"])
def test_one_argument_gradients_match_reference(implementation, per_channel):
    """Differentiating in one argument only (filters applied to data, or fixed filters) computes
    that gradient alone, correctly; also inside ``lax.scan``, where the carried image becomes
    differentiated from the second step on."""
    x, f = _random_case(8, 2, 6, 7, 3, 3, 5, per_channel=per_channel)

    def loss(x, f, implementation):
        out = ops.dynamic_local_filter(x, f, kernel_size=(3, 5), implementation=implementation)
        return jnp.sum(jnp.sin(out))

    def rollout(x, f, implementation):
        def step(image, _):
            out = ops.dynamic_local_filter(
                image, f, kernel_size=(3, 5), implementation=implementation
            )
            return out, jnp.sum(out**2)

        return jnp.sum(lax.scan(step, x, None, length=3)[1])

    for fn in (loss, rollout):
        for argnum in (0, 1):
            grad = jax.jit(jax.grad(fn, argnums=argnum), static_argnames="implementation")
            got = grad(x, f, implementation=implementation)
            want = grad(x, f, implementation="reference")
            atol = 1e-5 * float(np.max(np.abs(want)))  # the rollout's gradients reach ~1e4
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol, err_msg=f"{fn} {argnum}")


def test_unbatched_gradients_match_reference():
    x, f = _random_case(5, None, 5, 6, 2, 3, 3, per_channel=False, unbatched=True)
    cotangent = jnp.asarray(np.random.default_rng(6).standard_normal((5, 6, 2)), jnp.float32)
    fast = _grads_jit(x, f, cotangent, kernel_size=3, implementation="fast")
    ref = _grads_jit(x, f, cotangent, kernel_size=3, implementation="reference")
    for got, want in zip(fast, ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "perchannel"])
@pytest.mark.parametrize("implementation", FUSED)
def test_fused_check_grads(implementation, per_channel, order):
    # float32: the fast path computes in float32 whatever the input dtype, so float64 inputs would
    # not make the finite differences more accurate. The op is bilinear in (inputs, filters), so
    # central differences are exact up to rounding and a large eps is safe. Order 2 runs the
    # VJPs of the input-gradient and filter-gradient ops too.
    x, f = _random_case(7, 1, 4, 5, 2, 3, 3, per_channel=per_channel)

    @jax.jit
    def fn(x, f):
        return ops.dynamic_local_filter(x, f, kernel_size=3, implementation=implementation)

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
@pytest.mark.parametrize("implementation", FUSED)
def test_fused_forward_temp_memory_below_patch_tensor(implementation, shape):
    kh, kw = shape[-2:]

    def forward(x, f):
        return ops.dynamic_local_filter(x, f, kernel_size=(kh, kw), implementation=implementation)

    temp = _temp_bytes(forward, _abstract_args(*shape))
    assert temp < _patch_bytes(*shape), (temp, _patch_bytes(*shape))


@pytest.mark.parametrize("shape", MEMORY_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("implementation", FUSED)
def test_fused_backward_temp_memory_below_patch_tensor(implementation, shape):
    kh, kw = shape[-2:]

    def loss(x, f):
        out = ops.dynamic_local_filter(x, f, kernel_size=(kh, kw), implementation=implementation)
        return jnp.sum(out)

    temp = _temp_bytes(jax.grad(loss, argnums=(0, 1)), _abstract_args(*shape))
    assert temp < _patch_bytes(*shape), (temp, _patch_bytes(*shape))


# ------------------------------------------------------------------------------------------
# The C++ kernels: dispatch, agreement with the XLA ops, vmap, sharding, build and fallback.


@pytest.fixture
def cpu_kernel():
    if jax.default_backend() != "cpu":
        pytest.skip("the C++ kernels run on the CPU backend only")
    if not _cpu_kernels.available():
        pytest.skip(f"C++ kernels unavailable here: {_cpu_kernels.status()['reason']}")


def _hlo(fn, *args):
    return jax.jit(fn).lower(*args).as_text()


@pytest.mark.parametrize(
    "argnums, kernels",
    [
        ((0, 1), {"dfn_jax_local_filter", "dfn_jax_local_filter_backward"}),
        (0, {"dfn_jax_local_filter", "dfn_jax_local_filter_adjoint"}),
        (1, {"dfn_jax_local_filter", "dfn_jax_local_filter_outer"}),
    ],
)
def test_fast_path_calls_only_the_kernels_needed_on_cpu(cpu_kernel, argnums, kernels):
    """Both gradients: one fused backward kernel; one gradient (e.g. filters applied to data):
    only its kernel, the other gradient is never computed."""
    x, f = _random_case(20, 2, 6, 7, 3, 3, 3, per_channel=False)

    def loss(x, f, implementation):
        out = ops.dynamic_local_filter(x, f, kernel_size=3, implementation=implementation)
        return jnp.sum(out**2)

    hlo = _hlo(jax.grad(lambda x, f: loss(x, f, "fast"), argnums=argnums), x, f)
    called = {t for t in _cpu_kernels.TARGETS if f"custom_call @{t}(" in hlo}
    assert called == kernels
    assert "dfn_jax_local_filter" not in _hlo(lambda x, f: loss(x, f, "xla"), x, f)


def _random_kernel_cases(count, seed):
    """Random shapes: any odd kernel up to 13x13 (larger than the image too), C in {1, 3, 8},
    images down to one row or column, shared or per-channel filters, batched or not."""
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(count):
        kh, kw = (int(v) for v in rng.choice([1, 3, 5, 7, 9, 11, 13], 2))
        h, w = (int(v) for v in rng.integers(1, 14, 2))
        c = int(rng.choice([1, 3, 8]))
        cases.append((int(rng.integers(1, 4)), h, w, c, kh, kw, bool(rng.integers(2))))
    return cases


KERNEL_CASES = _random_kernel_cases(8, seed=21) + [
    (2, 6, 7, 20, 3, 3, False),  # channel-vectorised kernels, a partial last vector
    (1, 5, 6, 70, 3, 5, False),  # too many channels for those: per-channel planes
    (1, 3, 70, 2, 1, 67, False),  # wider than the kernels take: XLA
]


@pytest.mark.parametrize("unbatched", [False, True], ids=["batched", "unbatched"])
@pytest.mark.parametrize("shape", KERNEL_CASES, ids=_shape_id)
def test_kernel_ops_match_xla_ops(cpu_kernel, shape, unbatched):
    """F, G, H and the fused backward (G and H) of the C++ kernels against their XLA versions,
    under jit."""
    from dfn_jax.ops import _local_filter as lf

    b, h, w, c, kh, kw, per_channel = shape
    x, f = _random_case(22, b, h, w, c, kh, kw, per_channel=per_channel, unbatched=unbatched)
    g = jnp.asarray(np.random.default_rng(23).standard_normal(x.shape), jnp.float32)
    if unbatched:
        out = _local_filter(x, f, kernel_size=(kh, kw), jit=True)
        want = _local_filter(x, f, kernel_size=(kh, kw), implementation="reference", jit=True)
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-4)
        return

    @functools.partial(jax.jit, static_argnames="implementation")
    def kernel_ops(x, f, g, implementation):
        static = (kh, kw, implementation, per_channel)
        return (
            lf._filter(x, f, *static),
            lf._adjoint(g, f, *static),
            lf._outer(g, x, *static),
            *lf._backward(g, x, f, *static),  # G and H in one kernel
        )

    got, want = kernel_ops(x, f, g, "fast"), kernel_ops(x, f, g, "xla")
    for name, a, e in zip(["F", "G", "H", "fused G", "fused H"], got, want, strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype == jnp.float32, name
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "perchannel"])
@pytest.mark.parametrize("implementation", FUSED)
def test_vmap_matches_batch(implementation, per_channel):
    """Mapped axes in front of the batch axis (nested, and with one argument not mapped) and the
    mapped gradient give what one call on the flattened batch gives."""
    kernel_size = (3, 5)
    x, f = _random_case(24, 12, 6, 7, 3, *kernel_size, per_channel=per_channel)

    def fn(x, f):
        return ops.dynamic_local_filter(
            x, f, kernel_size=kernel_size, implementation=implementation
        )

    def loss(x, f):
        return jnp.sum(jnp.sin(fn(x, f)))

    want = fn(x, f)
    nested = jax.jit(jax.vmap(jax.vmap(fn)))(
        x.reshape(2, 3, 2, *x.shape[1:]), f.reshape(2, 3, 2, *f.shape[1:])
    )
    np.testing.assert_allclose(nested.reshape(want.shape), want, rtol=1e-5, atol=1e-5)
    one_image = jax.jit(jax.vmap(fn, in_axes=(None, 0)))(x[:2], f.reshape(6, 2, *f.shape[1:]))
    for k in range(6):
        np.testing.assert_allclose(
            one_image[k], fn(x[:2], f[2 * k : 2 * k + 2]), rtol=1e-5, atol=1e-5
        )
    mapped = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(x[:, None], f[:, None])
    batched = jax.grad(
        lambda x, f: jnp.sum(
            jnp.sin(
                ops.dynamic_local_filter(x, f, kernel_size=kernel_size, implementation="reference")
            )
        ),
        argnums=(0, 1),
    )(x, f)
    for got, ref in zip(mapped, batched, strict=True):
        np.testing.assert_allclose(got[:, 0], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("implementation", FUSED)
def test_sharded_inputs_match_unsharded(implementation):
    """Under jit with the batch sharded over 8 (fake) devices, values and gradients equal the
    unsharded ones, both without a context mesh (the partitioner replicates the custom calls) and
    with one (``jax.set_mesh``: the kernels run on each device's rows)."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    if jax.device_count() < 8:
        pytest.skip("needs 8 devices (tests/conftest.py fakes them on CPU)")
    mesh = Mesh(np.array(jax.devices()[:8]), ("batch",))
    sharding = NamedSharding(mesh, PartitionSpec("batch"))
    x, f = _random_case(25, 8, 6, 7, 3, 5, 5, per_channel=False)

    @jax.jit
    def value_and_grads(x, f):
        def loss(x, f):
            out = ops.dynamic_local_filter(x, f, kernel_size=5, implementation=implementation)
            return jnp.sum(out * jnp.cos(out)), out

        return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, f)

    xs, fs = jax.device_put(x, sharding), jax.device_put(f, sharding)
    sharded = value_and_grads(xs, fs)
    with jax.set_mesh(mesh):  # the context mesh: kernels run per device under shard_map
        on_mesh = value_and_grads.lower(xs, fs).compile()
        on_mesh_results = on_mesh(xs, fs)
    unsharded = value_and_grads(x, f)
    for results in (sharded, on_mesh_results):
        for got, want in zip(jax.tree.leaves(results), jax.tree.leaves(unsharded), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if implementation == "fast" and _cpu_kernels.available():
        # Each device filters its own rows: nothing is gathered across devices.
        assert "all-gather" not in on_mesh.as_text()


def test_kernel_build_is_cached_and_safe_to_race(tmp_path, monkeypatch):
    """Two builds racing into an empty cache compile once, leave no temporary file, and later
    builds load the cached library."""
    cxx = _cpu_kernels._compiler()
    if cxx is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setenv(_cpu_kernels.CACHE_ENV, str(tmp_path))
    results = [None, None]

    def build(k):
        results[k] = _cpu_kernels._build(cxx)

    threads = [threading.Thread(target=build, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (path_a, seconds_a), (path_b, seconds_b) = results
    assert path_a == path_b and path_a.parent == tmp_path and path_a.is_file()
    assert sorted([seconds_a, seconds_b])[0] == 0.0 < max(seconds_a, seconds_b)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path_a.name, path_a.name + ".lock"]
    assert _cpu_kernels._build(cxx) == (path_a, 0.0)


_FALLBACK_SCRIPT = textwrap.dedent(
    """
    import json, warnings
    import jax, jax.numpy as jnp, numpy as np
    from dfn_jax import ops

    rng = np.random.default_rng(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        errors, hlo = [], ""
        for shape in [(2, 6, 7, 3), (1, 5, 4, 1)]:
            x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
            f = jnp.asarray(rng.standard_normal(shape[:-1] + (9,)), jnp.float32)
            loss = lambda x, f, i: jnp.sum(
                jnp.sin(ops.dynamic_local_filter(x, f, kernel_size=3, implementation=i))
            )
            got = jax.value_and_grad(loss, argnums=(0, 1))(x, f, "fast")
            want = jax.value_and_grad(loss, argnums=(0, 1))(x, f, "reference")
            pairs = zip(jax.tree.leaves(got), jax.tree.leaves(want))
            errors += [float(jnp.max(jnp.abs(a - b))) for a, b in pairs]
            hlo += jax.jit(loss, static_argnums=2).lower(x, f, "fast").as_text()
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    kernel = "dfn_jax_local" in hlo
    print(json.dumps({"messages": messages, "error": max(errors), "kernel": kernel}))
    """
)


@pytest.mark.parametrize("cause", ["disabled", "compiler_fails"])
def test_fallback_warns_once_and_uses_xla(tmp_path, cause):
    import json

    env = dict(os.environ, JAX_PLATFORMS="cpu", DFN_JAX_CACHE_DIR=str(tmp_path))
    env.pop("XLA_FLAGS", None)
    if cause == "disabled":
        env["DFN_JAX_CPU_KERNEL"] = "0"
        reason = "DFN_JAX_CPU_KERNEL=0"
    else:  # a "compiler" that reports a version and fails to compile anything
        fake = tmp_path / "fake-c++"
        fake.write_text('#!/bin/sh\n[ "$1" = --version ] && echo fake 1.0 && exit 0\nexit 1\n')
        fake.chmod(0o755)
        env.pop("DFN_JAX_CPU_KERNEL", None)
        env["CXX"] = str(fake)
        reason = "compiling local_filter.cc failed"
    proc = subprocess.run(
        [sys.executable, "-c", _FALLBACK_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    (message,) = result["messages"]  # once, whatever the number of calls
    assert reason in message and "XLA fused implementation" in message, message
    assert result["error"] < 1e-4 and not result["kernel"]
