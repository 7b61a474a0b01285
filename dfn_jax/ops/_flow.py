"""Optical flow read off dynamic filters, and its colour rendering.

A softmax-normalised filter at pixel ``(y, x)`` is a distribution over the window offsets
``(i - kh//2, j - kw//2)``; its expectation is where the output pixel samples the input, a
*backward* flow (object motion is its negative). De Brabandere et al. 2016, Sec. 4.1.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dfn_jax._src import checks as _checks


def tap_offsets(kernel_size: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The ``(dx, dy)`` offset that each tap ``t = i*kw + j`` reads, as two ``[kh*kw]`` arrays."""
    kh, kw = _checks.kernel_size_pair(kernel_size)
    dy, dx = np.meshgrid(np.arange(kh) - kh // 2, np.arange(kw) - kw // 2, indexing="ij")
    return dx.reshape(-1).astype(np.float32), dy.reshape(-1).astype(np.float32)


def _check_filters(filters, taps, kernel_size):
    f = _checks.floating_array(filters, name="filters")
    if f.ndim < 1 or f.shape[-1] != taps:
        raise ValueError(
            f"`filters` must have kh*kw = {taps} taps in its last axis for kernel_size "
            f"{kernel_size!r}, got shape {tuple(f.shape)}."
        )
    return f.astype(jnp.float32)


def filter_flow(filters: jax.Array, *, kernel_size: int | Sequence[int]) -> jax.Array:
    """Expected tap offset of every filter: ``sum_t f_t * (dx_t, dy_t)``.

    Args:
      filters: ``[..., kh*kw]``, typically ``[B, H, W, kh*kw]`` softmax filters.
      kernel_size: odd ``k`` or ``(kh, kw)``.

    Returns:
      ``[..., 2]`` float32 flow, channel 0 is ``dx`` (columns), channel 1 is ``dy`` (rows).
    """
    dx, dy = tap_offsets(kernel_size)
    f = _check_filters(filters, dx.size, kernel_size)
    offsets = jnp.stack([dx, dy], axis=-1)  # [T, 2]
    return jnp.einsum("...t,tk->...k", f, offsets, precision="highest")


def filter_disparity(filters: jax.Array, *, kernel_size: int | Sequence[int]) -> jax.Array:
    """Horizontal expected offset of ``1 x k`` filters: ``sum_t f_t * (t - k//2)``.

    Args:
      filters: ``[..., k]`` (e.g. the stereo model's ``1 x 13`` softmax filters).
      kernel_size: ``k`` (meaning ``(1, k)``) or ``(1, k)``.

    Returns:
      ``[...]`` float32 disparity in pixels (positive: the output reads to the right).
    """
    if isinstance(kernel_size, (int, np.integer)):
        kernel_size = (1, int(kernel_size))
    kh, _ = _checks.kernel_size_pair(kernel_size)
    if kh != 1:
        raise ValueError(f"`kernel_size` must be (1, k) for a disparity, got {kernel_size!r}.")
    return filter_flow(filters, kernel_size=kernel_size)[..., 0]


def flow_to_rgb(flow: jax.Array, *, max_magnitude: float | None = None) -> jax.Array:
    """HSV rendering of a flow field: hue = direction, saturation = magnitude / max, value = 1.

    Args:
      flow: ``[..., H, W, 2]`` with ``(dx, dy)`` in the last axis.
      max_magnitude: magnitude shown fully saturated; by default each image's own maximum.

    Returns:
      ``[..., H, W, 3]`` float32 RGB in ``[0, 1]``; zero flow is white.
    """
    flow = _checks.floating_array(flow, name="flow").astype(jnp.float32)
    if flow.ndim < 3 or flow.shape[-1] != 2:
        raise ValueError(f"`flow` must have shape [..., H, W, 2], got {tuple(flow.shape)}.")
    dx, dy = flow[..., 0], flow[..., 1]
    magnitude = jnp.hypot(dx, dy)
    if max_magnitude is None:
        scale = jnp.max(magnitude, axis=(-2, -1), keepdims=True)
    else:
        if max_magnitude <= 0:
            raise ValueError(f"`max_magnitude` must be positive, got {max_magnitude}.")
        scale = jnp.asarray(max_magnitude, jnp.float32)
    saturation = jnp.clip(magnitude / jnp.maximum(scale, 1e-12), 0.0, 1.0)
    hue = (jnp.arctan2(dy, dx) / (2 * jnp.pi)) % 1.0
    return hsv_to_rgb(jnp.stack([hue, saturation, jnp.ones_like(hue)], axis=-1))


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
    """Converts ``[..., 3]`` HSV in ``[0, 1]`` to RGB in ``[0, 1]``."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]

    # Standard piecewise-linear form: channel n peaks where (n + 6h) mod 6 is within 1 of 3.
    def channel(n):
        k = (n + h * 6.0) % 6.0
        return v - v * s * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)

    return jnp.stack([channel(5.0), channel(3.0), channel(1.0)], axis=-1)
