"""Dynamic convolution: one generated kernel bank per sample, shared over all positions.

Contract (De Brabandere et al. 2016, Sec. 3.1):

* ``inputs``: ``[B, H, W, Cin]`` (or ``[H, W, Cin]`` unbatched).
* ``kernels``: ``[B, kh, kw, Cin, Cout]`` (or ``[kh, kw, Cin, Cout]``), cross-correlation, the same
  tap convention as :func:`dynamic_local_filter` (tap ``(i, j)`` reads offset
  ``(i - kh//2, j - kw//2)`` under ``"SAME"`` padding with odd kernels).
* Returns ``[B, H', W', Cout]``.

``implementation="fast"`` folds the batch into the channel axis and runs one grouped convolution
(``feature_group_count=B``), which is what ``vmap`` of ``lax.conv_general_dilated`` lowers to; no
Python loop over the batch. ``implementation="reference"`` sums shifted windows times kernel taps
with explicit padding, obviously correct and slow.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from dfn_jax._src import checks as _checks

IMPLEMENTATIONS = ("fast", "reference")
Padding = str | int | Sequence[tuple[int, int]]


def dynamic_convolution(
    inputs: jax.Array,
    kernels: jax.Array,
    *,
    stride: int | Sequence[int] = 1,
    padding: Padding = "SAME",
    precision: lax.Precision | str | None = "highest",
    implementation: str = "fast",
) -> jax.Array:
    """Convolves every sample with its own kernel bank.

    Args:
      inputs: ``[B, H, W, Cin]`` or ``[H, W, Cin]`` floating array.
      kernels: ``[B, kh, kw, Cin, Cout]`` or ``[kh, kw, Cin, Cout]`` (unbatched).
      stride: int or ``(sh, sw)``.
      padding: ``"SAME"``, ``"VALID"``, an int (same on all sides) or ``((top, bottom), (left,
        right))``.
      precision: ``lax`` precision of the convolution; ``"highest"`` (default) keeps float32
        accuracy on GPUs that would otherwise use TF32.
      implementation: ``"fast"`` (grouped convolution) or ``"reference"``.

    Returns:
      ``[B, H', W', Cout]`` (``[H', W', Cout]`` if unbatched).
    """
    x = _checks.floating_array(inputs, name="inputs")
    k = _checks.floating_array(kernels, name="kernels")
    _checks.rank(x, (3, 4), name="inputs", layout="[B, H, W, Cin] or [H, W, Cin]")
    unbatched = x.ndim == 3
    layout = "[kh, kw, Cin, Cout]" if unbatched else "[B, kh, kw, Cin, Cout]"
    _checks.rank(k, (x.ndim + 1,), name="kernels", layout=layout)
    if unbatched:
        x, k = x[None], k[None]
    if k.shape[0] != x.shape[0] or k.shape[3] != x.shape[3]:
        raise ValueError(
            f"`kernels` shape {tuple(kernels.shape)} does not match `inputs` shape "
            f"{tuple(inputs.shape)}: expected {layout} with B = {x.shape[0]} and "
            f"Cin = {x.shape[3]}."
        )
    strides = _checks.int_pair(stride, name="stride")
    pads = _checks.explicit_padding(padding, k.shape[1:3], x.shape[1:3], strides)
    _checks.choice(implementation, IMPLEMENTATIONS, name="implementation")
    out = _apply(
        x, k, strides=strides, pads=pads, precision=precision, implementation=implementation
    )
    return out[0] if unbatched else out


@functools.partial(jax.jit, static_argnames=("strides", "pads", "precision", "implementation"))
def _apply(x, k, *, strides, pads, precision, implementation):
    if implementation == "fast":
        out = _convolution_grouped(x, k, strides, pads, precision)
    else:
        out = _convolution_reference(x, k, strides, pads)
    return out.astype(jnp.result_type(x.dtype, k.dtype))


def _convolution_grouped(x, k, strides, pads, precision):
    b, h, w, cin = x.shape
    _, kh, kw, _, cout = k.shape
    # Fold the batch into channels: sample n owns input channels n*Cin.. and output group n.
    x_folded = x.transpose(1, 2, 0, 3).reshape(1, h, w, b * cin)
    k_folded = k.transpose(1, 2, 3, 0, 4).reshape(kh, kw, cin, b * cout)
    out = lax.conv_general_dilated(
        x_folded,
        k_folded,
        window_strides=strides,
        padding=pads,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=b,
        precision=precision,
        preferred_element_type=jnp.float32,
    )
    _, ho, wo, _ = out.shape
    return out.reshape(ho, wo, b, cout).transpose(2, 0, 1, 3)


def _convolution_reference(x, k, strides, pads):
    _, h, w, _ = x.shape
    _, kh, kw, _, _ = k.shape
    (pt, pb), (pl, pr) = pads
    sh, sw = strides
    xp = jnp.pad(x.astype(jnp.float32), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    ho = (h + pt + pb - kh) // sh + 1
    wo = (w + pl + pr - kw) // sw + 1
    out = 0.0
    for i in range(kh):
        for j in range(kw):
            window = xp[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw, :]
            tap = k[:, i, j].astype(jnp.float32)  # [B, Cin, Cout]
            out = out + jnp.einsum("bhwc,bco->bhwo", window, tap, precision="highest")
    return out
