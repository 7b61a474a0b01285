"""2-D convolution whose backward pass runs as matrix products on the CPU.

XLA:CPU runs a convolution's forward pass and its input gradient at a useful fraction of the
processor's peak, but the kernel gradient (a convolution that contracts over the batch and the
image) 2-5x slower than the forward, and a 1x1 convolution (a plain matrix product) several
times slower than the same product written as a ``dot`` (docs/BENCHMARKS.md, "Convolutions on
the CPU"). :func:`conv_general_dilated` is a drop-in for ``jax.lax.conv_general_dilated`` (and
the ``conv_general_dilated`` argument of ``flax.nnx.Conv``) that, for the 2-D channels-last
case, keeps XLA's forward and input gradient and computes

* the **kernel gradient** as one matrix product ``P(x)^T dy``, where ``P(x)`` are the input's
  ``kh*kw*C`` patches at each output position (im2col), rebuilt from the saved input during the
  backward pass so no patch matrix is kept between passes, when the convolution has at least
  ``MIN_PATCH_ROWS`` output positions (batch x height x width; measured crossover: below it,
  writing the patch matrix costs more than XLA's kernel gradient loses);
* a **1x1 convolution** without padding (forward, input and kernel gradients) as ``dot``.

The choice is made when the function is traced, from ``implementation``, whose default comes
from the environment variable ``DFN_JAX_CONV`` (``auto``, ``xla`` or ``matmul``): ``"auto"``
uses the matrix products when JAX's default backend is the CPU and XLA's own gradient elsewhere
(GPU and TPU convolutions are fast already), ``"xla"`` always XLA's, ``"matmul"`` always the
matrix products. Anything else (other layouts or ranks, dilation, feature or batch groups, an
``out_sharding``) goes to ``jax.lax.conv_general_dilated`` unchanged. Results agree with it up
to float rounding (the sums run in another order).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

CONV_ENV = "DFN_JAX_CONV"
# Output positions from which the im2col kernel gradient beats XLA:CPU's (benchmarks/conv.py on
# the paper model's layers: 0.6-0.9x XLA's speed at 2,048-8,192 positions, 1.1-1.6x from 16,384).
MIN_PATCH_ROWS = 16384
IMPLEMENTATIONS = ("auto", "xla", "matmul")
_NHWC = lax.ConvDimensionNumbers(
    lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1, 2)
)


def default_implementation() -> str:
    """The implementation ``"auto"`` resolves to now: ``DFN_JAX_CONV`` if set, then the backend."""
    value = os.environ.get(CONV_ENV, "auto").strip().lower()
    if value not in IMPLEMENTATIONS:
        raise ValueError(
            f"Environment variable {CONV_ENV} must be one of {IMPLEMENTATIONS}, got {value!r}."
        )
    if value == "auto":
        return "matmul" if jax.default_backend() == "cpu" else "xla"
    return value


def _is_unit(value: Any) -> bool:
    return value is None or all(int(v) == 1 for v in value)


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    out_sharding: Any = None,
    *,
    implementation: str = "auto",
    min_patch_rows: int | None = None,
) -> jax.Array:
    """``jax.lax.conv_general_dilated`` with the CPU's fast backward pass (module docstring).

    Same arguments and result as ``lax.conv_general_dilated``; ``implementation`` is
    ``"auto"``, ``"xla"`` or ``"matmul"`` (``"auto"``: ``DFN_JAX_CONV``, else ``"matmul"`` on
    the CPU backend and ``"xla"`` elsewhere). ``min_patch_rows``: the fewest output positions
    (batch x height x width) for which the kernel gradient is the im2col product; smaller
    convolutions keep XLA's (``None``: ``MIN_PATCH_ROWS``, 16,384).
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"`implementation` must be one of {IMPLEMENTATIONS}, got {implementation!r}."
        )
    xla = functools.partial(
        lax.conv_general_dilated,
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    if implementation == "auto":
        implementation = default_implementation()
    if implementation == "xla" or out_sharding is not None:
        return xla(**({} if out_sharding is None else {"out_sharding": out_sharding}))
    if lhs.ndim != 4 or rhs.ndim != 4 or feature_group_count != 1 or batch_group_count != 1:
        return xla()
    if not (_is_unit(lhs_dilation) and _is_unit(rhs_dilation)):
        return xla()
    if lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != _NHWC:
        return xla()
    kh, kw = rhs.shape[:2]
    strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
        pads = lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), strides, padding)
    else:
        pads = padding
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    rows = MIN_PATCH_ROWS if min_patch_rows is None else int(min_patch_rows)
    if not uses_matmul(lhs.shape, rhs.shape, strides, pads, rows):
        return xla()  # too small for the im2col kernel gradient to pay: XLA's, gradients too
    return _conv_nhwc(lhs, rhs, strides, pads, precision, preferred_element_type)


def uses_matmul(lhs_shape, rhs_shape, strides, pads, min_patch_rows: int = MIN_PATCH_ROWS) -> bool:
    """Whether an NHWC/HWIO convolution takes the matrix-product path: a 1x1 convolution without
    stride or padding (``dot``), or one with at least ``min_patch_rows`` output positions."""
    if _pointwise(rhs_shape, strides, pads):
        return True
    (kh, kw), (sh, sw) = rhs_shape[:2], strides
    ho = (lhs_shape[1] + sum(pads[0]) - kh) // sh + 1
    wo = (lhs_shape[2] + sum(pads[1]) - kw) // sw + 1
    return lhs_shape[0] * ho * wo >= min_patch_rows


def _xla_nhwc(x, w, strides, pads, precision, preferred_element_type):
    return lax.conv_general_dilated(
        x,
        w,
        strides,
        pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=precision,
        preferred_element_type=preferred_element_type,
    )


def _pointwise(rhs_shape, strides, pads) -> bool:
    return tuple(rhs_shape[:2]) == (1, 1) and strides == (1, 1) and pads == ((0, 0), (0, 0))


def _patches(x, kernel_hw, strides, pads, out_hw):
    """The patch matrix ``[B*Ho*Wo, kh*kw*C]`` of ``x`` ``[B, H, W, C]``, tap-major like the rows
    of an HWIO kernel. Strided slices, not ``lax.conv_general_dilated_patches``: that is itself a
    convolution (with an identity kernel of ``kh*kw*C`` outputs), slow on the CPU."""
    (kh, kw), (sh, sw), (ho, wo) = kernel_hw, strides, out_hw
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    taps = [
        lax.slice(
            xp,
            (0, i, j, 0),
            (xp.shape[0], i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, xp.shape[3]),
            (1, sh, sw, 1),
        )
        for i in range(kh)
        for j in range(kw)
    ]
    return jnp.stack(taps, axis=3).reshape(-1, kh * kw * x.shape[3])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv_nhwc(x, w, strides, pads, precision, preferred_element_type):
    """The matrix-product path (:func:`uses_matmul`): ``dot`` for 1x1, else XLA's forward."""
    if _pointwise(w.shape, strides, pads):
        y = jnp.dot(
            x.reshape(-1, x.shape[3]),
            w.reshape(w.shape[2], w.shape[3]),
            precision=precision,
            preferred_element_type=preferred_element_type,
        )
        return y.reshape(*x.shape[:3], w.shape[3])
    return _xla_nhwc(x, w, strides, pads, precision, preferred_element_type)


def _conv_fwd(x, w, strides, pads, precision, preferred_element_type):
    return _conv_nhwc(x, w, strides, pads, precision, preferred_element_type), (x, w)


def _conv_bwd(strides, pads, precision, preferred_element_type, residuals, dy):
    x, w = residuals
    kh, kw, cin, cout = w.shape
    dy2 = dy.reshape(-1, cout)
    if _pointwise(w.shape, strides, pads):
        dx = jnp.dot(dy2, w.reshape(cin, cout).T, precision=precision).reshape(x.shape)
        patches = x.reshape(-1, cin)
    else:
        _, vjp_x = jax.vjp(
            lambda v: _xla_nhwc(v, w, strides, pads, precision, preferred_element_type), x
        )
        (dx,) = vjp_x(dy)
        # The patches depend only on the saved input, and XLA:CPU builds every layer's patch
        # matrix during the forward pass and holds them all (3x the temporary memory of the
        # paper model's step at batch 16). Adding a zero computed from ``dy`` (NaN if ``dy``
        # has one, which the gradient would carry anyway) makes each wait for its layer's
        # backward pass. ``lax.optimization_barrier`` does not: XLA:CPU expands it first.
        after_dy = jnp.minimum(jnp.abs(dy2[0, 0]), 0).astype(x.dtype)
        patches = _patches(x + after_dy, (kh, kw), strides, pads, dy.shape[1:3])
    dw = jnp.dot(patches.T, dy2.astype(patches.dtype), precision=precision)
    return dx.astype(x.dtype), dw.reshape(w.shape).astype(w.dtype)


_conv_nhwc.defvjp(_conv_fwd, _conv_bwd)
