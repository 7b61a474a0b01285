"""Dynamic local filtering: one generated filter per sample and per pixel.

Contract (De Brabandere et al. 2016, Sec. 3.2, and the authors' Theano code):

* ``inputs``: ``[B, H, W, C]`` (or ``[H, W, C]`` unbatched), any floating dtype.
* ``filters``: ``[B, H, W, kh*kw]``, one filter per pixel shared by all channels (the paper), or
  ``[B, H, W, C, kh*kw]``, one filter per pixel and channel.
* Tap ``t = i * kw + j`` reads ``inputs[y + i - kh//2, x + j - kw//2]`` (row-major over the window,
  cross-correlation), with zeros outside the image.
* Returns ``[B, H, W, C]``: ``out[b, y, x, c] = sum_t filters[b, y, x, (c,) t] * window_t``.

Two implementations, selected by ``implementation=``:

* ``"reference"``: vmapped per-pixel patch extraction (``lax.dynamic_slice`` of a ``kh x kw`` window
  at every pixel, then a dot with that pixel's filter). Short and obviously correct; it materialises
  the ``[B, H, W, kh*kw, C]`` patch tensor, so use it for tests, not training.
* ``"fast"`` (default): shift-and-accumulate over the ``kh*kw`` static window offsets, which XLA
  fuses into one loop that reads ``inputs`` and ``filters`` once. Its custom VJP is fused the same
  way: the filter gradient is the same shifted product reduced over channels, the input gradient
  scatters ``filters * grad`` back with the opposite shifts. Neither pass keeps a patch tensor.

Arithmetic happens in float32 whatever the input dtype (bfloat16/float16 inputs are upcast inside
the fused loop); the output has the promoted dtype of ``inputs`` and ``filters``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from dfn_jax.ops import _checks

IMPLEMENTATIONS = ("fast", "reference")


def dynamic_local_filter(
    inputs: jax.Array,
    filters: jax.Array,
    *,
    kernel_size: int | Sequence[int],
    implementation: str = "fast",
) -> jax.Array:
    """Applies a different ``kh x kw`` filter at every pixel of every sample.

    Args:
      inputs: ``[B, H, W, C]`` or ``[H, W, C]`` floating array.
      filters: ``[B, H, W, kh*kw]`` (shared over channels) or ``[B, H, W, C, kh*kw]`` (per
        channel); without the leading ``B`` when ``inputs`` is unbatched.
      kernel_size: odd ``k`` or ``(kh, kw)``, e.g. ``9``, ``(11, 11)`` or ``(1, 13)``.
      implementation: ``"fast"`` (fused, default) or ``"reference"`` (per-pixel patches).

    Returns:
      ``[B, H, W, C]`` (``[H, W, C]`` if unbatched) filtered image.
    """
    x, f, kh, kw, unbatched = _canonical_local_filter_args(inputs, filters, kernel_size)
    _checks.choice(implementation, IMPLEMENTATIONS, name="implementation")
    out = _apply(x, f, kh=kh, kw=kw, implementation=implementation)
    return out[0] if unbatched else out


@functools.partial(jax.jit, static_argnames=("kh", "kw", "implementation"))
def _apply(x, f, *, kh, kw, implementation):
    # Jitted here so that eager calls compile one program, not one per tap.
    impl = _local_filter_fast if implementation == "fast" else _local_filter_reference
    return impl(x, f, kh, kw).astype(jnp.result_type(x.dtype, f.dtype))


def _canonical_local_filter_args(inputs, filters, kernel_size):
    """Validates; returns ``x [B,H,W,C]``, ``f [B,H,W,T]`` or ``[B,H,W,C,T]``, kh, kw, unbatched."""
    kh, kw = _checks.kernel_size_pair(kernel_size)
    taps = kh * kw
    x = _checks.floating_array(inputs, name="inputs")
    f = _checks.floating_array(filters, name="filters")
    _checks.rank(x, (3, 4), name="inputs", layout="[B, H, W, C] or [H, W, C]")
    unbatched = x.ndim == 3
    lead = "" if unbatched else "B, "
    expected = f"[{lead}H, W, {taps}] or [{lead}H, W, C, {taps}] (kh*kw = {kh}*{kw} = {taps} taps)"
    _checks.rank(f, (x.ndim, x.ndim + 1), name="filters", layout=expected)
    if unbatched:
        x, f = x[None], f[None]
    b, h, w, c = x.shape
    per_channel = f.ndim == 5
    if f.shape[-1] != taps:
        raise ValueError(
            f"`filters` must have kh*kw = {taps} taps in its last axis for kernel_size "
            f"{(kh, kw)}, got shape {tuple(filters.shape)}; expected {expected}."
        )
    want = (b, h, w, c, taps) if per_channel else (b, h, w, taps)
    if f.shape != want:
        shown_want = want[1:] if unbatched else want
        raise ValueError(
            f"`filters` shape {tuple(filters.shape)} does not match `inputs` shape "
            f"{tuple(inputs.shape)}: expected {shown_want} (same batch, height, width"
            f"{', channels' if per_channel else ''} as `inputs`)."
        )
    return x, f, kh, kw, unbatched


# --------------------------------------------------------------------------------------------
# Reference: vmapped per-pixel patch extraction.


def _local_filter_reference(x, f, kh, kw):
    b, h, w, c = x.shape
    xp = jnp.pad(x.astype(jnp.float32), ((0, 0), (kh // 2,) * 2, (kw // 2,) * 2, (0, 0)))
    f = f.astype(jnp.float32)

    def pixel(image, pixel_filter, y, x_):
        # The kh x kw window whose top-left corner in padded coordinates is (y, x_).
        patch = lax.dynamic_slice(image, (y, x_, 0), (kh, kw, c)).reshape(kh * kw, c)
        if pixel_filter.ndim == 1:  # One filter for all channels.
            return pixel_filter @ patch  # [T] @ [T, C] -> [C]
        return jnp.sum(pixel_filter.T * patch, axis=0)  # [T, C] * [T, C] -> [C]

    per_column = jax.vmap(pixel, in_axes=(None, 0, None, 0))
    per_row = jax.vmap(per_column, in_axes=(None, 0, 0, None))
    per_sample = jax.vmap(per_row, in_axes=(0, 0, None, None))
    return per_sample(xp, f, jnp.arange(h), jnp.arange(w))


# --------------------------------------------------------------------------------------------
# Fast: shift-and-accumulate with a fused custom VJP.


def _pad_hw(a, ph, pw):
    pads = [(0, 0)] * a.ndim
    pads[1], pads[2] = (ph, ph), (pw, pw)
    return jnp.pad(a, pads)


def _window(a, top, left, h, w):
    """``a[:, top:top+h, left:left+w]`` with static bounds."""
    return lax.slice_in_dim(lax.slice_in_dim(a, top, top + h, axis=1), left, left + w, axis=2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _local_filter_fast(x, f, kh, kw):
    return _fast_forward(x, f, kh, kw)


# Structure, chosen by measurement on XLA CPU (benchmarks/dynamic_filter.py):
# * the forward and the input gradient are each one sum over the kh*kw statically shifted windows,
#   which XLA fuses into a single loop that reads every operand once;
# * the filter gradient is written one window row (kw taps) at a time inside a `fori_loop`:
#   stacking all kh*kw taps at once made XLA keep kh*kw separate buffers (as large as the patch
#   tensor) and, inside a recurrent model that calls the op at every step, made compile times
#   explode.


def _tap(f, t):
    """Tap ``t`` of ``f [B, H, W, T]`` (as ``[B, H, W, 1]``) or of ``f [B, H, W, C, T]``."""
    return f[..., t, None] if f.ndim == 4 else f[..., t]


def _fast_forward(x, f, kh, kw):
    _, h, w, _ = x.shape
    xp = _pad_hw(x.astype(jnp.float32), kh // 2, kw // 2)
    f = f.astype(jnp.float32)
    out = None
    for i in range(kh):
        for j in range(kw):
            term = _tap(f, i * kw + j) * _window(xp, i, j, h, w)
            out = term if out is None else out + term
    return out


def _fast_fwd(x, f, kh, kw):
    return _fast_forward(x, f, kh, kw), (x, f)


def _filter_gradient(xp, g, kh, kw, shared, shape):
    """``df[..., t] = g * window_t(x)`` (summed over channels if ``shared``), row by row."""
    _, h, w, _ = g.shape

    def row(i, df):
        x_row = lax.dynamic_slice_in_dim(xp, i, h, axis=1)  # [B, H, W + 2pw, C]
        taps = []
        for j in range(kw):
            prod = g * x_row[:, :, j : j + w]
            taps.append(jnp.sum(prod, axis=-1) if shared else prod)
        return lax.dynamic_update_slice_in_dim(df, jnp.stack(taps, -1), i * kw, axis=len(shape) - 1)

    return lax.fori_loop(0, kh, row, jnp.zeros(shape, jnp.float32))


def _input_gradient(f, g, kh, kw):
    """``dx[y'] = sum_t (f_t * g)[y' - (i - ph)]``: each tap's product shifted back, zero padded.

    Pads one tap's filter slice at a time: padding the whole filter tensor would materialise it.
    """
    _, h, w, _ = g.shape
    ph, pw = kh // 2, kw // 2
    gp = _pad_hw(g, ph, pw)
    dx = None
    for i in range(kh):
        for j in range(kw):
            top, left = 2 * ph - i, 2 * pw - j
            f_tap = _pad_hw(_tap(f, i * kw + j).astype(jnp.float32), ph, pw)
            term = _window(f_tap, top, left, h, w) * _window(gp, top, left, h, w)
            dx = term if dx is None else dx + term
    return dx


def _fast_bwd(kh, kw, residuals, g):
    x, f = residuals
    g = g.astype(jnp.float32)
    xp = _pad_hw(x.astype(jnp.float32), kh // 2, kw // 2)
    df = _filter_gradient(xp, g, kh, kw, f.ndim == 4, f.shape)
    dx = _input_gradient(f, g, kh, kw)
    return dx.astype(x.dtype), df.astype(f.dtype)


_local_filter_fast.defvjp(_fast_fwd, _fast_bwd)
