"""Factorised predicted layers of learnets (Bertinetto, Henriques, Valmadre, Torr, Vedaldi,
"Learning feed-forward one-shot learners", NIPS 2016, arXiv 1606.05233).

A learnet predicts a pupil layer's parameters from one exemplar. Predicting a whole ``Din x Dout``
matrix or ``k x k x Cin x Cout`` kernel per exemplar needs an output layer of that size times the
learnet's features, so the paper factorises the predicted layers and predicts only a few numbers
per example (the paper's equations as summarised in ``REFERENCE.md``, UNVERIFIED against its
text):

* linear: ``W(z) = M' diag(w(z)) M`` ("reminiscent of an SVD"), only ``w(z)`` (R numbers) is
  predicted, ``M`` and ``M'`` are ordinary learned parameters;
* convolution: a 1x1 projection, a predicted ``k x k`` filter per channel (depthwise), a second
  1x1 projection ("pixel-wise projections and predicted filters").

Layout here (row vectors, channels last; the paper's column-vector ``M`` is ``m_in.T`` and ``M'``
is ``m_out.T``):

* :func:`factorized_linear`: ``y[b] = x[b] @ m_in @ diag(w[b]) @ m_out`` with ``x [B, Din]``,
  ``w [B, R]``, ``m_in [Din, R]``, ``m_out [R, Dout]``; :func:`dense_from_factors` is the dense
  per-example matrix ``[B, Din, Dout]`` of the same factors.
* :func:`factorized_conv`: ``x [B, H, W, Cin] -> x @ proj_in [Cin, R] -> depthwise conv with
  filters [B, kh, kw, R] (one filter per channel and per example) -> @ proj_out [R, Cout]``;
  :func:`conv_dense_from_factors` is the dense per-example kernel ``[B, kh, kw, Cin, Cout]``
  (``K[b, i, j, c, o] = sum_r proj_in[c, r] filters[b, i, j, r] proj_out[r, o]``), for which
  ``dfn_jax.ops.dynamic_convolution(x, K)`` gives the same output (zero padding and no bias
  inside the projections make the two equal exactly).

The per-example depthwise convolution has four implementations, none with a Python loop over the
batch except the reference:

* ``"fast"`` (default): ``kh * kw`` shifted windows of the padded input times the examples' taps,
  summed; XLA fuses it into one elementwise loop. On this repository's 2-core CPU it was about 20x
  (forward) and 20-300x (backward) faster than the grouped convolution (measured at
  ``[32, 14, 14, 32]`` and ``[400, 14, 14, 32]``, 3x3 filters).
* ``"grouped"``: one ``lax.conv_general_dilated`` with the batch folded into the channels
  (``feature_group_count = B * R``), what ``vmap`` of a depthwise convolution lowers to. Its
  backward pass is very slow on CPU (23 s at ``B = 400``); on GPU, measure before choosing it.
* ``"dense"``: :func:`dfn_jax.ops.dynamic_convolution` with the block-diagonal ``[B, kh, kw, R,
  R]`` kernel (``R`` times the work of the depthwise one; for tests and comparisons).
* ``"reference"``: a Python loop over examples and taps, obviously correct and slow.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from dfn_jax import ops
from dfn_jax._src import checks as _checks

IMPLEMENTATIONS = ("fast", "grouped", "dense", "reference")
"""Implementations of the per-example depthwise convolution of :func:`factorized_conv`."""

Padding = str | int | Sequence[tuple[int, int]]
Precision = lax.Precision | str | None


# ------------------------------------------------------------------------------------------
# Linear


def _factors(predicted, proj_in, proj_out, *, names, layouts):
    """Checks a factorised layer's predicted part ``[B, ..., R]`` and its projections ``[Din,
    R]``, ``[R, Dout]``; returns the three as arrays."""
    given = (predicted, proj_in, proj_out)
    arrays = [_checks.floating_array(a, name=n) for a, n in zip(given, names, strict=True)]
    for array, name, layout in zip(arrays, names, layouts, strict=True):
        _checks.rank(array, (layout.count(",") + 1,), name=name, layout=layout)
    predicted, proj_in, proj_out = arrays
    r = predicted.shape[-1]
    if proj_in.shape[1] != r or proj_out.shape[0] != r:
        raise ValueError(
            f"`{names[1]}` {tuple(proj_in.shape)} and `{names[2]}` {tuple(proj_out.shape)} must "
            f"have shapes {layouts[1]} and {layouts[2]} with R = {r} (the last axis of "
            f"`{names[0]}` {tuple(predicted.shape)})."
        )
    return predicted, proj_in, proj_out


def _linear_factors(w, m_in, m_out):
    return _factors(
        w, m_in, m_out, names=("w", "m_in", "m_out"), layouts=("[B, R]", "[Din, R]", "[R, Dout]")
    )


def factorized_linear(
    x: jax.Array,
    w: jax.Array,
    *,
    m_in: jax.Array,
    m_out: jax.Array,
    precision: Precision = "highest",
) -> jax.Array:
    """A per-example linear map ``W(z) = M' diag(w(z)) M`` in factorised form.

    Computes ``y[b] = ((x[b] @ m_in) * w[b]) @ m_out`` without forming the ``Din x Dout`` matrix.

    Args:
      x: ``[B, Din]`` inputs.
      w: ``[B, R]`` predicted diagonal, one per example.
      m_in: ``[Din, R]`` input projection (the paper's ``M``, transposed).
      m_out: ``[R, Dout]`` output projection (the paper's ``M'``, transposed).
      precision: ``lax`` precision of the two matrix products.

    Returns:
      ``[B, Dout]``.
    """
    x = _checks.floating_array(x, name="x")
    w, m_in, m_out = _linear_factors(w, m_in, m_out)
    _checks.rank(x, (2,), name="x", layout="[B, Din]")
    if x.shape[0] != w.shape[0] or x.shape[1] != m_in.shape[0]:
        raise ValueError(
            f"`x` must have shape [B, Din] = [{w.shape[0]}, {m_in.shape[0]}] (B of `w`, Din of "
            f"`m_in`), got {tuple(x.shape)}."
        )
    h = jnp.matmul(x, m_in, precision=precision) * w
    return jnp.matmul(h, m_out, precision=precision)


def dense_from_factors(w: jax.Array, *, m_in: jax.Array, m_out: jax.Array) -> jax.Array:
    """The dense per-example matrices ``m_in @ diag(w[b]) @ m_out``: ``[B, Din, Dout]``, so that
    ``factorized_linear(x, w, ...)[b] == x[b] @ dense_from_factors(w, ...)[b]``."""
    w, m_in, m_out = _linear_factors(w, m_in, m_out)
    return jnp.einsum("ir,br,ro->bio", m_in, w, m_out, precision="highest")


# ------------------------------------------------------------------------------------------
# Convolution


def _conv_factors(filters, proj_in, proj_out):
    return _factors(
        filters, proj_in, proj_out, names=("filters", "proj_in", "proj_out"),
        layouts=("[B, kh, kw, R]", "[Cin, R]", "[R, Cout]"),
    )  # fmt: skip


def factorized_conv(
    x: jax.Array,
    filters: jax.Array,
    *,
    proj_in: jax.Array,
    proj_out: jax.Array,
    stride: int | Sequence[int] = 1,
    padding: Padding = "SAME",
    precision: Precision = "highest",
    implementation: str = "fast",
) -> jax.Array:
    """A per-example convolution factorised as projection, predicted depthwise filters,
    projection (cross-correlation, no bias).

    Args:
      x: ``[B, H, W, Cin]``.
      filters: ``[B, kh, kw, R]``: example ``b``'s ``kh x kw`` filter for projected channel ``r``.
      proj_in: ``[Cin, R]``, the first 1x1 projection.
      proj_out: ``[R, Cout]``, the second 1x1 projection.
      stride: int or ``(sh, sw)`` of the depthwise convolution.
      padding: ``"SAME"``, ``"VALID"``, an int or ``((top, bottom), (left, right))``; zero
        padding of the projected input (the same as zero padding ``x``, the projection having no
        bias).
      precision: ``lax`` precision of the projections and convolutions.
      implementation: one of :data:`IMPLEMENTATIONS` (module docstring).

    Returns:
      ``[B, H', W', Cout]``, equal to ``dfn_jax.ops.dynamic_convolution(x,
      conv_dense_from_factors(filters, proj_in=proj_in, proj_out=proj_out), stride=stride,
      padding=padding)``.
    """
    x = _checks.floating_array(x, name="x")
    filters, proj_in, proj_out = _conv_factors(filters, proj_in, proj_out)
    _checks.rank(x, (4,), name="x", layout="[B, H, W, Cin]")
    if x.shape[0] != filters.shape[0] or x.shape[3] != proj_in.shape[0]:
        raise ValueError(
            f"`x` must have shape [B, H, W, Cin] with B = {filters.shape[0]} (of `filters`) and "
            f"Cin = {proj_in.shape[0]} (of `proj_in`), got {tuple(x.shape)}."
        )
    _checks.choice(implementation, IMPLEMENTATIONS, name="implementation")
    strides = _checks.int_pair(stride, name="stride")
    kernel_hw = tuple(filters.shape[1:3])
    pads = _checks.explicit_padding(padding, kernel_hw, tuple(x.shape[1:3]), strides)
    (pt, pb), (pl, pr) = pads
    if x.shape[1] + pt + pb < kernel_hw[0] or x.shape[2] + pl + pr < kernel_hw[1]:
        raise ValueError(
            f"`filters` of size {kernel_hw} do not fit in `x` {tuple(x.shape)} padded by {pads}."
        )
    dtype = jnp.result_type(x.dtype, filters.dtype, proj_in.dtype, proj_out.dtype)
    if implementation == "reference":
        out = _factorized_conv_reference(x, filters, proj_in, proj_out, strides, pads)
    else:
        out = _factorized_conv(
            x,
            filters,
            proj_in,
            proj_out,
            strides=strides,
            pads=pads,
            precision=precision,
            implementation=implementation,
        )
    return out.astype(dtype)


def conv_dense_from_factors(
    filters: jax.Array, *, proj_in: jax.Array, proj_out: jax.Array
) -> jax.Array:
    """The dense per-example kernels of a factorised convolution: ``[B, kh, kw, Cin, Cout]``,
    ``K[b, i, j, c, o] = sum_r proj_in[c, r] filters[b, i, j, r] proj_out[r, o]`` (the layout of
    :func:`dfn_jax.ops.dynamic_convolution`)."""
    filters, proj_in, proj_out = _conv_factors(filters, proj_in, proj_out)
    return jnp.einsum("cr,bijr,ro->bijco", proj_in, filters, proj_out, precision="highest")


@functools.partial(jax.jit, static_argnames=("strides", "pads", "precision", "implementation"))
def _factorized_conv(x, filters, proj_in, proj_out, *, strides, pads, precision, implementation):
    h = jnp.matmul(x, proj_in, precision=precision)
    if implementation == "fast":
        h = _depthwise_taps(h, filters, strides, pads)
    elif implementation == "grouped":
        h = _depthwise_grouped(h, filters, strides, pads, precision)
    else:  # "dense": the block-diagonal kernel through the shared op.
        r = filters.shape[-1]
        eye = jnp.eye(r, dtype=filters.dtype).reshape(1, 1, 1, r, r)
        kernels = filters[..., None] * eye  # [B, kh, kw, R, R], diagonal in (R, R)
        h = ops.dynamic_convolution(h, kernels, stride=strides, padding=pads, precision=precision)
    return jnp.matmul(h, proj_out, precision=precision)


def _output_size(size, pad, kernel, stride):
    return (size + pad[0] + pad[1] - kernel) // stride + 1


def _depthwise_taps(h, filters, strides, pads):
    """Sum over taps of shifted windows times each example's per-channel tap weights."""
    _, height, width, _ = h.shape
    _, kh, kw, _ = filters.shape
    (sh, sw), (pad_h, pad_w) = strides, pads
    ho = _output_size(height, pad_h, kh, sh)
    wo = _output_size(width, pad_w, kw, sw)
    hp = jnp.pad(h, ((0, 0), pad_h, pad_w, (0, 0)))
    out = jnp.zeros((h.shape[0], ho, wo, h.shape[3]), jnp.result_type(h.dtype, filters.dtype))
    for i in range(kh):
        for j in range(kw):
            window = hp[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw, :]
            out = out + window * filters[:, i : i + 1, j : j + 1, :]
    return out


def _depthwise_grouped(h, filters, strides, pads, precision):
    """One grouped convolution, the batch folded into the channels (``B * R`` groups)."""
    b, height, width, r = h.shape
    _, kh, kw, _ = filters.shape
    h_folded = h.transpose(1, 2, 0, 3).reshape(1, height, width, b * r)
    k_folded = filters.transpose(1, 2, 0, 3).reshape(kh, kw, 1, b * r)
    out = lax.conv_general_dilated(
        h_folded,
        k_folded,
        window_strides=strides,
        padding=pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=b * r,
        precision=precision,
    )
    _, ho, wo, _ = out.shape
    return out.reshape(ho, wo, b, r).transpose(2, 0, 1, 3)


def _factorized_conv_reference(x, filters, proj_in, proj_out, strides, pads):
    """Example by example, tap by tap (float32, highest precision)."""
    (sh, sw), (pad_h, pad_w) = strides, pads
    _, kh, kw, _ = filters.shape
    outputs = []
    for b in range(x.shape[0]):
        h = jnp.einsum("hwc,cr->hwr", x[b], proj_in, precision="highest")
        ho = _output_size(h.shape[0], pad_h, kh, sh)
        wo = _output_size(h.shape[1], pad_w, kw, sw)
        hp = jnp.pad(h, (pad_h, pad_w, (0, 0)))
        out = jnp.zeros((ho, wo, h.shape[2]), jnp.float32)
        for i in range(kh):
            for j in range(kw):
                window = hp[i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw]
                out = out + window * filters[b, i, j][None, None, :]
        outputs.append(jnp.einsum("hwr,ro->hwo", out, proj_out, precision="highest"))
    return jnp.stack(outputs)


# ------------------------------------------------------------------------------------------
# Modules


def _positive(value, name):
    return _checks.positive_int(value, name=name, expected="a positive int")


def _predicted(values, shape, name, batch=None):
    """``values`` as ``[B, *shape]``, accepting the flat ``[B, prod(shape)]`` too."""
    values = _checks.floating_array(values, name=name)
    size = math.prod(shape)
    dims = ", ".join(str(s) for s in shape)
    ok = values.ndim >= 1 and (batch is None or values.shape[0] == batch)
    if ok and values.shape[1:] == (size,):
        return values.reshape(values.shape[0], *shape)
    if ok and values.shape[1:] == tuple(shape):
        return values
    b = "B" if batch is None else str(batch)
    raise ValueError(
        f"`{name}` must have shape [{b}, {dims}] or [{b}, {size}] (flat), got "
        f"{tuple(values.shape)}."
    )


def _sizes(in_features, rank, out_features) -> tuple[int, int, int]:
    return (
        _positive(in_features, "in_features"),
        _positive(rank, "rank"),
        _positive(out_features, "out_features"),
    )


def _projections(layer, use_bias: bool, param_dtype, rngs: nnx.Rngs):
    """A factorised layer's learned parts: ``[Din, R] ~ N(0, 1/Din)``, ``[R, Dout] ~ N(0,
    1/R)`` and a zero bias ``[Dout]`` (``None`` without)."""
    normal = jax.nn.initializers.normal
    din, r, dout = layer.in_features, layer.rank, layer.out_features
    p_in = nnx.Param(normal(1.0 / math.sqrt(din))(rngs.params(), (din, r), param_dtype))
    p_out = nnx.Param(normal(1.0 / math.sqrt(r))(rngs.params(), (r, dout), param_dtype))
    bias = nnx.Param(jnp.zeros((dout,), param_dtype)) if use_bias else None
    return p_in, p_out, bias


class FactorizedLinear(nnx.Module):
    """A linear layer whose diagonal ``w [B, R]`` is predicted per example:
    ``y = x @ m_in @ diag(w) @ m_out + bias`` (:func:`factorized_linear`).

    ``m_in [Din, R]``, ``m_out [R, Dout]`` and ``bias [Dout]`` are learned parameters; ``w`` comes
    from another network (a learnet). Initialisation: ``m_in ~ N(0, 1/Din)``, ``m_out ~ N(0,
    1/R)``, bias 0, so that ``w = 1`` gives outputs of the inputs' mean square.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        *,
        use_bias: bool = True,
        precision: Precision = "highest",
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.in_features, self.rank, self.out_features = _sizes(in_features, rank, out_features)
        self.precision = precision
        self.m_in, self.m_out, self.bias = _projections(self, use_bias, param_dtype, rngs)

    @property
    def predicted_shape(self) -> tuple[int]:
        """``(R,)``: the per-example shape of the predicted ``w``."""
        return (self.rank,)

    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        """``x [B, Din]``, ``w [B, R]`` -> ``[B, Dout]``."""
        x = _checks.floating_array(x, name="x")
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"`x` must have shape [B, {self.in_features}] (in_features), got {tuple(x.shape)}."
            )
        w = _predicted(w, self.predicted_shape, "w", batch=x.shape[0])
        y = factorized_linear(
            x, w, m_in=self.m_in[...], m_out=self.m_out[...], precision=self.precision
        )
        return y if self.bias is None else y + self.bias[...][None]


class FactorizedConv(nnx.Module):
    """A convolution whose per-channel ``kh x kw`` filters are predicted per example: 1x1
    projection to ``R`` channels, the predicted depthwise filters, 1x1 projection to ``Cout``,
    plus a bias (:func:`factorized_conv`).

    ``proj_in [Cin, R]``, ``proj_out [R, Cout]`` and ``bias [Cout]`` are learned parameters; the
    filters ``[B, kh, kw, R]`` (or flat ``[B, kh*kw*R]``) come from another network.
    Initialisation: ``proj_in ~ N(0, 1/Cin)``, ``proj_out ~ N(0, 1/R)``, bias 0; filters of
    variance ``2 / (kh kw)`` then give He's output scale.

    Attributes:
      kernel_size: ``(kh, kw)``.
      stride, padding, implementation: passed to :func:`factorized_conv`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        kernel_size: int | Sequence[int],
        *,
        stride: int | Sequence[int] = 1,
        padding: Padding = "SAME",
        use_bias: bool = True,
        implementation: str = "fast",
        precision: Precision = "highest",
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.in_features, self.rank, self.out_features = _sizes(in_features, rank, out_features)
        self.kernel_size = _checks.kernel_size_pair(kernel_size)
        self.stride = _checks.int_pair(stride, name="stride")
        self.padding = padding
        _checks.choice(implementation, IMPLEMENTATIONS, name="implementation")
        self.implementation = implementation
        self.precision = precision
        self.proj_in, self.proj_out, self.bias = _projections(self, use_bias, param_dtype, rngs)

    @property
    def predicted_shape(self) -> tuple[int, int, int]:
        """``(kh, kw, R)``: the per-example shape of the predicted filters."""
        return (*self.kernel_size, self.rank)

    def __call__(self, x: jax.Array, filters: jax.Array) -> jax.Array:
        """``x [B, H, W, Cin]``, ``filters [B, kh, kw, R]`` (or ``[B, kh*kw*R]``) ->
        ``[B, H', W', Cout]``."""
        x = _checks.floating_array(x, name="x")
        if x.ndim != 4 or x.shape[3] != self.in_features:
            raise ValueError(
                f"`x` must have shape [B, H, W, {self.in_features}] (in_features), got "
                f"{tuple(x.shape)}."
            )
        filters = _predicted(filters, self.predicted_shape, "filters", batch=x.shape[0])
        y = factorized_conv(
            x,
            filters,
            proj_in=self.proj_in[...],
            proj_out=self.proj_out[...],
            stride=self.stride,
            padding=self.padding,
            precision=self.precision,
            implementation=self.implementation,
        )
        return y if self.bias is None else y + self.bias[...].reshape(1, 1, 1, -1)
