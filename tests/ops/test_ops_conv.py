"""Tests of `ops.conv_general_dilated` (the CPU's matrix-product backward pass) and `layers.Conv`:
values and gradients against `jax.lax.conv_general_dilated` on random shapes, strides, paddings
and kernel sizes, under jit and not; second-order gradients; the cases handed to XLA unchanged;
the `DFN_JAX_CONV` switch and its errors; `Conv` against `nnx.Conv`; and a short training run
that gives the same losses with either implementation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from dfn_jax import ops
from dfn_jax.layers import Conv
from dfn_jax.ops import _conv

NHWC = ("NHWC", "HWIO", "NHWC")

# (batch, height, width, in, out, kh, kw, strides, padding)
CASES = [
    (2, 9, 7, 3, 5, 3, 3, (1, 1), "SAME"),
    (3, 8, 8, 4, 6, 3, 3, (2, 2), "SAME"),
    (1, 11, 6, 2, 3, 5, 3, (1, 2), "VALID"),
    (2, 10, 9, 3, 4, 4, 2, (2, 1), ((1, 2), (0, 1))),
    (2, 6, 5, 7, 3, 1, 1, (1, 1), "SAME"),  # pointwise: dot
    (2, 6, 5, 7, 3, 1, 1, (2, 2), "VALID"),  # 1x1 with a stride: XLA forward, patch gradient
    (1, 4, 4, 2, 2, 3, 3, (1, 1), ((2, 2), (2, 2))),  # padding wider than the image's half
]


def _case(seed, b, h, w, cin, cout, kh, kw):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((b, h, w, cin)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((kh, kw, cin, cout)), jnp.float32)
    return x, k


def _value_and_grads(conv, x, k, strides, padding, cotangent):
    def loss(x, k):
        return jnp.sum(conv(x, k, strides, padding, dimension_numbers=NHWC) * cotangent)

    out = conv(x, k, strides, padding, dimension_numbers=NHWC)
    return out, jax.grad(loss, argnums=(0, 1))(x, k)


def _matmul(*args, **kwargs):
    """The matmul path with the im2col kernel gradient at every size."""
    return ops.conv_general_dilated(*args, implementation="matmul", min_patch_rows=0, **kwargs)


def _matmul_small(*args, **kwargs):
    """The matmul path below ``min_patch_rows``: XLA's kernel gradient, 1x1 still as dot."""
    return ops.conv_general_dilated(*args, implementation="matmul", min_patch_rows=10**9, **kwargs)


@pytest.mark.parametrize("conv", [_matmul, _matmul_small], ids=["patches", "small"])
@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_matches_lax_values_and_gradients(case, jit, conv):
    b, h, w, cin, cout, kh, kw, strides, padding = CASES[case]
    x, k = _case(case, b, h, w, cin, cout, kh, kw)
    ref_out = lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=NHWC)
    cotangent = jnp.asarray(np.random.default_rng(100 + case).standard_normal(ref_out.shape))
    fn = _value_and_grads
    if jit:
        fn = jax.jit(fn, static_argnums=(0, 3, 4))
    out, (dx, dk) = fn(conv, x, k, strides, padding, cotangent)
    ref_out, (ref_dx, ref_dk) = _value_and_grads(
        lax.conv_general_dilated, x, k, strides, padding, cotangent
    )
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dk, ref_dk, rtol=1e-5, atol=1e-4)


def test_second_order_gradients_match_lax():
    x, k = _case(7, 2, 6, 6, 3, 4, 3, 3)

    def grad_norm(conv):
        def inner(k):
            return jnp.sum(jnp.tanh(conv(x, k, (1, 1), "SAME", dimension_numbers=NHWC)))

        return jax.grad(lambda k: jnp.sum(jax.grad(inner)(k) ** 2))(k)

    np.testing.assert_allclose(
        grad_norm(_matmul), grad_norm(lax.conv_general_dilated), rtol=1e-4, atol=1e-4
    )


def test_vmap_matches_lax():
    x, k = _case(8, 3, 7, 7, 2, 3, 3, 3)
    batched_k = jnp.stack([k, 2 * k, -k])

    def per_example(conv):
        def one(xi, ki):
            return conv(xi[None], ki, (1, 1), "SAME", dimension_numbers=NHWC)[0]

        return jax.vmap(jax.grad(lambda xi, ki: jnp.sum(one(xi, ki) ** 2), argnums=1))(x, batched_k)

    np.testing.assert_allclose(
        per_example(_matmul), per_example(lax.conv_general_dilated), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize(
    "kwargs, lhs_shape, rhs_shape, dimension_numbers",
    [
        ({"rhs_dilation": (2, 2)}, (1, 8, 8, 2), (3, 3, 2, 3), NHWC),
        ({"lhs_dilation": (2, 1), "padding": ((1, 1), (1, 1))}, (1, 5, 5, 2), (3, 3, 2, 3), NHWC),
        ({"feature_group_count": 2}, (1, 6, 6, 4), (3, 3, 2, 4), NHWC),
        ({}, (1, 2, 6, 6), (3, 2, 3, 3), ("NCHW", "OIHW", "NCHW")),
        ({}, (1, 9, 2), (3, 2, 4), ("NWC", "WIO", "NWC")),
    ],
)
def test_other_cases_go_to_xla_unchanged(kwargs, lhs_shape, rhs_shape, dimension_numbers):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal(lhs_shape), jnp.float32)
    k = jnp.asarray(rng.standard_normal(rhs_shape), jnp.float32)
    strides = (1,) * (len(lhs_shape) - 2)
    args = (x, k, strides, kwargs.pop("padding", "SAME"))
    expected = lax.conv_general_dilated(*args, dimension_numbers=dimension_numbers, **kwargs)
    got = _matmul(*args, dimension_numbers=dimension_numbers, **kwargs)
    np.testing.assert_array_equal(got, expected)


def test_xla_implementation_is_lax_exactly():
    x, k = _case(4, 2, 8, 8, 3, 4, 3, 3)

    def kernel_grad(conv):
        return jax.grad(lambda k: jnp.sum(conv(x, k, (1, 1), "SAME", dimension_numbers=NHWC) ** 2))(
            k
        )

    def xla(*args, **kwargs):
        return ops.conv_general_dilated(*args, implementation="xla", **kwargs)

    np.testing.assert_array_equal(kernel_grad(xla), kernel_grad(lax.conv_general_dilated))


def test_matmul_backward_has_no_kernel_gradient_convolution():
    """The point of the module: on the matmul path the kernel gradient is a dot."""
    x, k = _case(5, 2, 8, 8, 3, 4, 3, 3)

    def loss(k, implementation, min_patch_rows):
        out = ops.conv_general_dilated(
            x, k, (1, 1), "SAME", dimension_numbers=NHWC, implementation=implementation,
            min_patch_rows=min_patch_rows,
        )  # fmt: skip
        return jnp.sum(out**2)

    def count_convs(implementation, min_patch_rows):
        grad = jax.grad(lambda k: loss(k, implementation, min_patch_rows))
        return jax.jit(grad).lower(k).as_text().count("stablehlo.convolution")

    # xla: forward + kernel gradient; matmul: the forward only (the kernel gradient is a dot),
    # unless the convolution has fewer output positions (here 2*8*8) than min_patch_rows.
    assert count_convs("xla", 0) == 2
    assert count_convs("matmul", 128) == 1
    assert count_convs("matmul", 129) == 2


def test_environment_switch(monkeypatch):
    monkeypatch.setenv(_conv.CONV_ENV, "xla")
    assert _conv.default_implementation() == "xla"
    monkeypatch.setenv(_conv.CONV_ENV, " MatMul ")
    assert _conv.default_implementation() == "matmul"
    monkeypatch.delenv(_conv.CONV_ENV)
    expected = "matmul" if jax.default_backend() == "cpu" else "xla"
    assert _conv.default_implementation() == expected


def test_bad_settings_raise(monkeypatch):
    x, k = _case(6, 1, 4, 4, 1, 1, 3, 3)
    with pytest.raises(ValueError, match="implementation"):
        ops.conv_general_dilated(x, k, (1, 1), "SAME", implementation="fast")
    monkeypatch.setenv(_conv.CONV_ENV, "cudnn")
    with pytest.raises(ValueError, match="DFN_JAX_CONV"):
        ops.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=NHWC)


@pytest.mark.parametrize(
    "conv_kwargs",
    [
        {"kernel_size": (3, 3)},
        {"kernel_size": (3, 3), "strides": 2, "use_bias": False},
        {"kernel_size": (1, 1)},
        {"kernel_size": (5, 5), "padding": "VALID"},
    ],
)
def test_conv_layer_matches_nnx_conv(conv_kwargs):
    ours = Conv(3, 5, rngs=nnx.Rngs(0), **conv_kwargs)
    theirs = nnx.Conv(3, 5, rngs=nnx.Rngs(0), **conv_kwargs)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 10, 10, 3)), jnp.float32)
    assert jax.tree.structure(nnx.state(ours)) == jax.tree.structure(nnx.state(theirs))

    def loss(model):
        return jnp.sum(jnp.sin(model(x)))

    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    ours_grads = nnx.grad(loss)(ours)
    theirs_grads = nnx.grad(loss)(theirs)
    for a, b in zip(jax.tree.leaves(ours_grads), jax.tree.leaves(theirs_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_training_is_the_same_with_either_implementation(monkeypatch):
    """Switching the setting off (DFN_JAX_CONV=xla) changes nothing but float rounding."""
    import optax

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((4, 12, 12, 2)), jnp.float32)
    y = jnp.asarray(rng.standard_normal((4, 6, 6, 3)), jnp.float32)

    def losses(implementation):
        monkeypatch.setenv(_conv.CONV_ENV, implementation)
        monkeypatch.setattr(_conv, "MIN_PATCH_ROWS", 0)  # the im2col kernel gradient at any size

        class Net(nnx.Module):
            def __init__(self, rngs):
                self.a = Conv(2, 8, (3, 3), strides=2, rngs=rngs)
                self.b = Conv(8, 8, (1, 1), rngs=rngs)
                self.c = Conv(8, 3, (3, 3), rngs=rngs)

            def __call__(self, x):
                return self.c(jax.nn.relu(self.b(jax.nn.relu(self.a(x)))))

        model = Net(nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

        @nnx.jit
        def step(model, optimizer):
            loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
            optimizer.update(model, grads)
            return loss

        return np.array([step(model, optimizer) for _ in range(20)])

    matmul, xla = losses("matmul"), losses("xla")
    assert matmul[-1] < 0.7 * matmul[0]
    np.testing.assert_allclose(matmul, xla, rtol=1e-4, atol=1e-5)


def test_the_zoo_builds_every_convolution_with_layers_conv():
    """A model that used ``nnx.Conv`` directly would miss the CPU's fast gradients."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    offenders = [
        str(path.relative_to(root))
        for folder in ("dfn_jax", "experiments")
        for path in (root / folder).rglob("*.py")
        if "nnx.Conv(" in path.read_text()
    ]
    assert not offenders, f"use dfn_jax.layers.Conv instead of nnx.Conv in {offenders}"
