"""Per-frame video prediction metrics: the paper's cross-entropy and the modern MSE/MAE/PSNR/SSIM.

Contract shared by every function here:

* ``predictions`` and ``targets``: floating arrays of the same shape ``[..., H, W, C]`` with values
  in ``[0, 1]`` (channels last; the leading axes are frames, sequences, anything).
* Each returns one value per frame, shape ``[...]``: the last three axes are reduced, nothing
  else, so callers average over frames and sequences as their benchmark defines.
* Arithmetic is float32 whatever the input dtype (bfloat16/float16 are upcast; float64 stays
  float64 when ``jax_enable_x64`` is on).

How the numbers compare with the literature:

* De Brabandere et al. 2016 report Moving MNIST binary cross-entropy in nats per 64x64 frame
  (sum over pixels, natural log): :func:`binary_cross_entropy_per_frame`, averaged over the 10
  predicted frames and the test set. Its lower bound for grey-level targets is their own entropy,
  :func:`target_entropy_per_frame` (86.3 nats on the Moving MNIST test set).
* OpenSTL's "MSE" and "MAE" per frame are sums over the 4096 pixels of a 64x64 frame in
  ``[0, 1]``: :func:`squared_error_per_frame` and :func:`absolute_error_per_frame`; its PSNR is
  :func:`psnr` (``20 log10(1 / sqrt(mean squared error))`` per frame). Its SSIM is scikit-image's
  with <= 0.19 defaults (7x7 uniform window, sample covariance, data range 2):
  :func:`ssim_openstl`, higher than :func:`ssim` on the same frames.
* :func:`ssim` is Wang et al. 2004's SSIM with the Gaussian window (11 taps, sigma 1.5, data
  range 1) of their paper, of ``dm_pix.ssim`` and of ``tf.image.ssim``.

:func:`psnr` and :func:`ssim` call dm_pix; :func:`ssim_openstl` is written here because dm_pix has
no sample-covariance option.
"""

from __future__ import annotations

import math

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import xlogy

from dfn_jax._src import checks as _checks

_FRAME_AXES = (-3, -2, -1)


def binary_cross_entropy_per_frame(
    predictions: jax.Array, targets: jax.Array, *, eps: float = 1e-7
) -> jax.Array:
    """Binary cross-entropy in nats per frame, the metric of De Brabandere et al. 2016.

    ``-sum_{h,w,c} [t log p + (1 - t) log(1 - p)]`` with ``p`` clipped to ``[eps, 1 - eps]``, as
    the authors' code clips the network output before the loss. Targets may be grey levels; the
    minimum over predictions is then :func:`target_entropy_per_frame`, not zero.

    Args:
      predictions: ``[..., H, W, C]`` predicted intensities in ``[0, 1]``.
      targets: ``[..., H, W, C]`` target intensities in ``[0, 1]``.
      eps: clipping margin, ``0 < eps < 0.5``. The clip has zero gradient outside the margin.

    Returns:
      ``[...]`` nats per frame.
    """
    p, t = _frame_pair(predictions, targets)
    eps = _real(eps, name="eps", low=0.0, high=0.5)
    # Clip p and 1 - p each to [eps, 1 - eps] rather than forming 1 - clip(p): in float32,
    # 1 - eps rounds (1 - 1e-7 -> 1 - 1.19e-7), while 1 - p is exact for p >= 1/2.
    q = jnp.clip(1.0 - p, eps, 1.0 - eps)
    p = jnp.clip(p, eps, 1.0 - eps)
    return -jnp.sum(t * jnp.log(p) + (1.0 - t) * jnp.log(q), axis=_FRAME_AXES)


def target_entropy_per_frame(targets: jax.Array) -> jax.Array:
    """Summed binary entropy of the targets in nats per frame: the lower bound of the BCE.

    ``-sum_{h,w,c} [t log t + (1 - t) log(1 - t)]`` with ``0 log 0 = 0``. For every prediction,
    ``binary_cross_entropy_per_frame(p, t) >= target_entropy_per_frame(t)`` (Gibbs' inequality),
    with equality at ``p = t``; the bound is 0 for binary targets. Averaged over the Moving
    MNIST test set this is the 86.3 nats quoted as the lower bound next to the paper's results.

    Args:
      targets: ``[..., H, W, C]`` target intensities in ``[0, 1]``.

    Returns:
      ``[...]`` nats per frame.
    """
    t = _frame_array(targets, name="targets")
    return -jnp.sum(xlogy(t, t) + xlogy(1.0 - t, 1.0 - t), axis=_FRAME_AXES)


def squared_error_per_frame(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Sum of squared errors over each frame: OpenSTL's "MSE" per frame.

    Args:
      predictions: ``[..., H, W, C]`` in ``[0, 1]``.
      targets: ``[..., H, W, C]`` in ``[0, 1]``.

    Returns:
      ``[...]`` ``sum_{h,w,c} (p - t)^2``.
    """
    p, t = _frame_pair(predictions, targets)
    return jnp.sum(jnp.square(p - t), axis=_FRAME_AXES)


def absolute_error_per_frame(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Sum of absolute errors over each frame: OpenSTL's "MAE" per frame.

    Args:
      predictions: ``[..., H, W, C]`` in ``[0, 1]``.
      targets: ``[..., H, W, C]`` in ``[0, 1]``.

    Returns:
      ``[...]`` ``sum_{h,w,c} |p - t|``.
    """
    p, t = _frame_pair(predictions, targets)
    return jnp.sum(jnp.abs(p - t), axis=_FRAME_AXES)


def psnr(predictions: jax.Array, targets: jax.Array, *, max_value: float = 1.0) -> jax.Array:
    """Peak signal-to-noise ratio per frame in decibels, via ``dm_pix.psnr``.

    ``10 log10(max_value^2 / mse)`` with ``mse`` the *mean* squared error over ``H, W, C``. With
    the default ``max_value = 1`` and frames in ``[0, 1]`` this is OpenSTL's per-frame PSNR,
    ``20 log10(1 / sqrt(mse))``. Not clamped: a frame predicted exactly (``mse == 0``) gives
    ``+inf``, as in scikit-image, dm_pix and OpenSTL, so averaging over frames makes that visible
    instead of hiding it behind a cap.

    Args:
      predictions: ``[..., H, W, C]``.
      targets: ``[..., H, W, C]``.
      max_value: the largest possible pixel value (the data range), ``> 0``.

    Returns:
      ``[...]`` PSNR in dB.
    """
    p, t = _frame_pair(predictions, targets)
    max_value = _real(max_value, name="max_value", low=0.0)
    *lead, h, w, c = p.shape
    # dm_pix.psnr assumes a data range of 1 and takes [H, W, C] or [N, H, W, C].
    values = dm_pix.psnr(p.reshape(-1, h, w, c), t.reshape(-1, h, w, c))
    offset = 20.0 * math.log10(max_value)  # a Python float: keeps the frames' dtype
    return (values + offset).astype(p.dtype).reshape(lead)


def ssim(
    predictions: jax.Array,
    targets: jax.Array,
    *,
    max_value: float = 1.0,
    filter_size: int = 11,
    filter_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> jax.Array:
    """Structural similarity per frame (Wang, Bovik, Sheikh, Simoncelli 2004), via ``dm_pix.ssim``.

    Local means, variances and the covariance are taken under a normalised ``filter_size`` x
    ``filter_size`` Gaussian window (``'valid'`` positions only, population statistics), each
    channel on its own; the map

    ``((2 mu_p mu_t + C1)(2 s_pt + C2)) / ((mu_p^2 + mu_t^2 + C1)(s_p^2 + s_t^2 + C2))``

    with ``C1 = (k1 max_value)^2`` and ``C2 = (k2 max_value)^2`` is averaged over positions and
    channels. The defaults (11 taps, sigma 1.5, data range 1) give the same values as
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1.0)``. This is *not* the SSIM of OpenSTL's tables:
    compare those with :func:`ssim_openstl`.

    dm_pix forms the local variances as ``E[x^2] - E[x]^2`` without removing the mean first: in
    float32 that is good to ~1e-6 on mostly dark frames (Moving MNIST) but cancels on bright,
    low-contrast ones, where the result can be off by up to ~1e-4.

    Args:
      predictions: ``[..., H, W, C]`` with ``H, W >= filter_size``.
      targets: ``[..., H, W, C]``.
      max_value: data range of the pixels, ``> 0``.
      filter_size: odd width of the Gaussian window.
      filter_sigma: standard deviation of the window in pixels, ``> 0``.
      k1: luminance stabiliser, ``> 0``.
      k2: contrast stabiliser, ``> 0``.

    Returns:
      ``[...]`` SSIM, 1 where the frames are identical.
    """
    p, t = _frame_pair(predictions, targets)
    max_value = _real(max_value, name="max_value", low=0.0)
    filter_sigma = _real(filter_sigma, name="filter_sigma", low=0.0)
    k1 = _real(k1, name="k1", low=0.0)
    k2 = _real(k2, name="k2", low=0.0)
    if not isinstance(filter_size, (int, np.integer)) or filter_size <= 0 or filter_size % 2 == 0:
        raise ValueError(f"`filter_size` must be a positive odd int, got {filter_size!r}.")
    filter_size = int(filter_size)
    *lead, h, w, c = p.shape
    window = f"filter_size x filter_size = {filter_size} x {filter_size}"
    _check_window(p.shape, filter_size, window=window)
    values = dm_pix.ssim(
        p.reshape(-1, h, w, c),
        t.reshape(-1, h, w, c),
        max_val=max_value,
        filter_size=filter_size,
        filter_sigma=filter_sigma,
        k1=k1,
        k2=k2,
        precision=lax.Precision.HIGHEST,
    )
    # dm_pix builds its window with the default float dtype (float64 under jax_enable_x64).
    return values.astype(p.dtype).reshape(lead)


_OPENSTL_WINDOW = 7
_OPENSTL_DATA_RANGE = 2.0


def ssim_openstl(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """SSIM per frame exactly as OpenSTL's tables compute it (scikit-image <= 0.19 defaults).

    OpenSTL clips the predictions to ``[0, 1]``, calls
    ``skimage.metrics.structural_similarity(pred, true, multichannel=True)`` on each float frame
    (``[W, H, C]``: transposed, which changes nothing here) and averages over frames and
    sequences. With scikit-image <= 0.19 defaults that is Wang et al.'s SSIM map with

    * a 7 x 7 *uniform* window (not a Gaussian one),
    * *sample* (co)variances: the window's population statistics times ``N / (N - 1)``,
      ``N = 49``,
    * a data range of 2 (skimage's dtype range for floats is ``[-1, 1]``), so
      ``C1 = (0.01 * 2)^2`` and ``C2 = (0.03 * 2)^2``,

    averaged over the ``'valid'`` positions (skimage crops the 3-pixel border) and over channels
    (``multichannel`` / ``channel_axis``). It equals ``structural_similarity(p, t, win_size=7,
    data_range=2, use_sample_covariance=True, gaussian_weights=False, channel_axis=-1)`` per frame.
    It is higher than :func:`ssim` on the same frames (on blurred, shifted digit-like frames the
    box window and the four times larger ``C1``, ``C2`` each add about 0.025; the sample
    covariance hardly matters), so an OpenSTL number must be compared with this, not with
    :func:`ssim`.

    Hand-written rather than via ``dm_pix.ssim``: dm_pix has no sample-covariance option, and
    its ``filter_fn`` hook (which could give the box window) cannot apply the ``N / (N - 1)``
    factor, which scales the variances but not the means.

    Args:
      predictions: ``[..., H, W, C]`` in ``[0, 1]`` with ``H, W >= 7``.
      targets: ``[..., H, W, C]`` in ``[0, 1]``.

    Returns:
      ``[...]`` SSIM, 1 where the frames are identical.
    """
    p, t = _frame_pair(predictions, targets)
    size = _OPENSTL_WINDOW
    *lead, h, w, c = p.shape
    _check_window(p.shape, size, window=f"{size} x {size} (OpenSTL's SSIM window)")
    p = p.reshape(-1, h, w, c)
    t = t.reshape(-1, h, w, c)
    # (Co)variances are shift-invariant: removing each target frame's mean first makes
    # E[x^2] - E[x]^2 cancel far less in float32 (exactly 0 for constant frames).
    shift = jnp.mean(t, axis=(1, 2), keepdims=True)
    p, t = p - shift, t - shift
    # All five local moments in one batch of depthwise box filters: [5 * N, H - 6, W - 6, C].
    moments = jnp.concatenate([p, t, p * p, t * t, p * t], axis=0)
    mu_p, mu_t, e_pp, e_tt, e_pt = jnp.split(_box_mean(moments, size), 5)
    n = size * size
    sample = n / (n - 1)
    var_p = sample * (e_pp - mu_p * mu_p)
    var_t = sample * (e_tt - mu_t * mu_t)
    cov = sample * (e_pt - mu_p * mu_t)
    mu_p, mu_t = mu_p + shift, mu_t + shift
    c1 = (0.01 * _OPENSTL_DATA_RANGE) ** 2
    c2 = (0.03 * _OPENSTL_DATA_RANGE) ** 2
    numerator = (2.0 * mu_p * mu_t + c1) * (2.0 * cov + c2)
    denominator = (mu_p * mu_p + mu_t * mu_t + c1) * (var_p + var_t + c2)
    return jnp.mean(numerator / denominator, axis=_FRAME_AXES).reshape(lead)


def _check_window(shape: tuple[int, ...], size: int, *, window: str) -> None:
    """Frames ``[..., H, W, C]`` must hold a ``size`` x ``size`` window, described by ``window``."""
    h, w = shape[-3], shape[-2]
    if h < size or w < size:
        raise ValueError(
            f"`predictions` and `targets` frames must be at least {window} for 'valid' "
            f"filtering, got shape {tuple(shape)}."
        )


def _box_mean(x: jax.Array, size: int) -> jax.Array:
    """Separable ``size`` x ``size`` mean filter of ``[N, H, W, C]``, per channel, 'valid'."""
    c = x.shape[-1]
    taps = jnp.full((size,), 1.0 / size, dtype=x.dtype)
    # Depthwise HWIO kernels: one input channel per group, the same taps for every channel.
    rows = jnp.broadcast_to(taps.reshape(size, 1, 1, 1), (size, 1, 1, c))
    cols = jnp.broadcast_to(taps.reshape(1, size, 1, 1), (1, size, 1, c))
    for kernel in (rows, cols):
        x = lax.conv_general_dilated(
            x,
            kernel,
            window_strides=(1, 1),
            padding="VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=c,
            precision=lax.Precision.HIGHEST,
        )
    return x


def _frame_array(x, *, name: str) -> jax.Array:
    x = _checks.floating_array(x, name=name)
    if x.ndim < 3:
        raise ValueError(
            f"`{name}` must have shape [..., H, W, C] (at least 3 axes), "
            f"got shape {tuple(x.shape)}."
        )
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _frame_pair(predictions, targets) -> tuple[jax.Array, jax.Array]:
    p = _frame_array(predictions, name="predictions")
    t = _frame_array(targets, name="targets")
    if p.shape != t.shape:
        raise ValueError(
            f"`predictions` and `targets` must have the same shape [..., H, W, C], got "
            f"{tuple(p.shape)} and {tuple(t.shape)}."
        )
    dtype = jnp.result_type(p.dtype, t.dtype)
    return p.astype(dtype), t.astype(dtype)


def _real(value, *, name: str, low: float, high: float = float("inf")) -> float:
    """A static real option in the open interval ``(low, high)``."""
    try:
        v = float(value)
    except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
        raise ValueError(
            f"`{name}` must be a real number (a static option, not a traced array), got {value!r}."
        ) from None
    if not low < v < high:
        interval = f"> {low:g}" if high == float("inf") else f"in ({low:g}, {high:g})"
        raise ValueError(f"`{name}` must be {interval}, got {value!r}.")
    return v
