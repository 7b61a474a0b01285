"""Procedural grayscale images and the steerable-filter targets (De Brabandere et al. 2016, Sec.
4.1), generated on device from PRNG keys; no download.

* :func:`random_textures`: natural-looking textures, each a random mix of three layers:

  1. *1/f noise*: white Gaussian noise shaped in the Fourier domain to an amplitude spectrum
     ``1 / f^alpha``, ``alpha ~ U[1, 2]`` (natural images have ``alpha`` near 1; larger is
     smoother, cloud-like);
  2. *Gabor blobs*: ``num_gabors`` oriented sinusoids (0.03 to 0.25 cycles/px, any orientation
     and phase) under Gaussian envelopes of 6 to 40 px at random places;
  3. *shapes*: ``num_shapes`` discs and rotated rectangles with sharp edges and random grey
     levels, painted over one another (occlusion).

  The layers are normalised to unit standard deviation, mixed with random weights, and the result
  is stretched to exactly [0, 1]. Every image has energy at all spatial frequencies (1/f noise and
  sharp edges), so a 9x9 filter is identifiable from an image and its filtered version, which a
  smooth image (only low frequencies) would not allow.
* :func:`digit_images`: MNIST digits resized (bilinear) to ``digit_size`` and centred on an
  ``image_size`` canvas, the experiment's ``data.source = "mnist"``.
* :func:`random_angles`: angles ``theta ~ U[0, 2 pi)``, one per key.
* :func:`steerable_targets`: the regression target ``cos(theta) I_x + sin(theta) I_y``: the image
  cross-correlated with :func:`dfn_jax.ops.steered_filter` (``"SAME"`` zero padding), through
  :func:`dfn_jax.ops.dynamic_convolution` (one kernel per sample).

Images are ``float32 [B, H, W, 1]`` in [0, 1]; image ``b`` depends only on ``keys[b]`` and the
options, so a batch's images do not depend on the batch size. All functions are jittable.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from dfn_jax import ops
from dfn_jax._src.checks import key_array, positive_int
from dfn_jax.data._mnist_files import UINT8_TO_FLOAT

__all__ = ["digit_images", "random_angles", "random_textures", "steerable_targets"]

_EPS = 1e-6


def _unit_std(x: jax.Array) -> jax.Array:
    x = x - jnp.mean(x)
    return x / (jnp.std(x) + _EPS)


def _pink_noise(key, size: int) -> jax.Array:
    k_noise, k_alpha = jax.random.split(key)
    alpha = jax.random.uniform(k_alpha, (), minval=1.0, maxval=2.0)
    f = np.fft.fftfreq(size).astype(np.float32)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    radius[0, 0] = 1.0  # the mean is removed below; avoids 0 ** -alpha
    amplitude = jnp.asarray(radius) ** (-alpha)
    white = jax.random.normal(k_noise, (size, size))
    shaped = jnp.fft.ifft2(jnp.fft.fft2(white) * amplitude).real
    return _unit_std(shaped)


def _gabors(key, size: int, num: int) -> jax.Array:
    keys = jax.random.split(key, 6)
    orientation = jax.random.uniform(keys[0], (num,), maxval=jnp.pi)
    # Log-uniform spatial frequency in cycles per pixel.
    frequency = jnp.exp(
        jax.random.uniform(keys[1], (num,), minval=np.log(0.03), maxval=np.log(0.25))
    )
    phase = jax.random.uniform(keys[2], (num,), maxval=2 * jnp.pi)
    centre = jax.random.uniform(keys[3], (num, 2), maxval=size)
    width = jax.random.uniform(keys[4], (num,), minval=6.0, maxval=40.0)
    amplitude = jax.random.uniform(keys[5], (num,), minval=0.2, maxval=1.0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)

    def blob(o, f, p, c, w, a):
        along = jnp.cos(o) * x + jnp.sin(o) * y
        envelope = jnp.exp(-((x - c[1]) ** 2 + (y - c[0]) ** 2) / (2 * w**2))
        return a * envelope * jnp.cos(2 * jnp.pi * f * along + p)

    layers = jax.vmap(blob)(orientation, frequency, phase, centre, width, amplitude)
    return _unit_std(jnp.sum(layers, axis=0))


def _shapes(key, size: int, num: int) -> jax.Array:
    keys = jax.random.split(key, 6)
    is_disc = jax.random.bernoulli(keys[0], 0.5, (num,))
    centre = jax.random.uniform(keys[1], (num, 2), maxval=size)
    half_sides = jax.random.uniform(keys[2], (num, 2), minval=0.05 * size, maxval=0.3 * size)
    angle = jax.random.uniform(keys[3], (num,), maxval=jnp.pi)
    grey = jax.random.uniform(keys[4], (num,), minval=-1.0, maxval=1.0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    canvas = jnp.zeros((size, size), jnp.float32)
    for i in range(num):  # painted in order: later shapes occlude earlier ones
        dx, dy = x - centre[i, 1], y - centre[i, 0]
        u = jnp.cos(angle[i]) * dx + jnp.sin(angle[i]) * dy
        v = -jnp.sin(angle[i]) * dx + jnp.cos(angle[i]) * dy
        disc = dx**2 + dy**2 <= half_sides[i, 0] ** 2
        rectangle = (jnp.abs(u) <= half_sides[i, 0]) & (jnp.abs(v) <= half_sides[i, 1])
        canvas = jnp.where(jnp.where(is_disc[i], disc, rectangle), grey[i], canvas)
    return _unit_std(canvas)


def _texture(key, *, size: int, num_gabors: int, num_shapes: int) -> jax.Array:
    k_noise, k_gabor, k_shape, k_mix = jax.random.split(key, 4)
    layers = jnp.stack(
        [
            _pink_noise(k_noise, size),
            _gabors(k_gabor, size, num_gabors),
            _shapes(k_shape, size, num_shapes),
        ]
    )
    weights = jax.random.uniform(k_mix, (3,), minval=0.1, maxval=1.0)
    image = jnp.einsum("l,lhw->hw", weights, layers)
    low, high = jnp.min(image), jnp.max(image)
    return (image - low) / jnp.maximum(high - low, _EPS)


@functools.partial(jax.jit, static_argnames=("size", "num_gabors", "num_shapes"))
def _textures(keys, *, size, num_gabors, num_shapes):
    make = functools.partial(_texture, size=size, num_gabors=num_gabors, num_shapes=num_shapes)
    return jax.vmap(make)(keys)[..., None]


def random_textures(
    keys: jax.Array, *, image_size: int = 64, num_gabors: int = 4, num_shapes: int = 4
) -> jax.Array:
    """Procedural grayscale textures, one per key: ``float32 [B, image_size, image_size, 1]``.

    Each image spans exactly [0, 1] (its minimum is 0 and its maximum 1). See the module docstring
    for what the images are made of.

    Args:
      keys: ``[B]`` PRNG keys (or legacy raw ``uint32 [B, 2]``); image ``b`` depends only on
        ``keys[b]`` and the options.
      image_size: side ``H = W`` in pixels (>= 8).
      num_gabors: Gabor blobs per image (>= 1).
      num_shapes: discs and rectangles per image (>= 1).
    """
    image_size = positive_int(image_size, name="image_size", minimum=8)
    num_gabors = positive_int(num_gabors, name="num_gabors")
    num_shapes = positive_int(num_shapes, name="num_shapes")
    keys = key_array(keys, name="keys", ndim=1)
    return _textures(keys, size=image_size, num_gabors=num_gabors, num_shapes=num_shapes)


def _check_digits(digits) -> jax.Array:
    if not hasattr(digits, "dtype") or getattr(digits, "ndim", None) != 3 or digits.shape[0] < 1:
        raise ValueError(
            f"`digits` must be an array [N, h, w] (uint8 0..255 or float in [0, 1]) with N >= 1, "
            f"got {type(digits).__name__} with shape {getattr(digits, 'shape', None)}."
        )
    digits = jnp.asarray(digits)
    if digits.dtype == jnp.uint8:
        return digits
    if not jnp.issubdtype(digits.dtype, jnp.floating):
        raise ValueError(f"`digits` must be uint8 or floating, got dtype {digits.dtype}.")
    return digits


def digit_images(
    keys: jax.Array, digits: jax.Array, *, image_size: int = 64, digit_size: int = 56
) -> jax.Array:
    """Random digits, one per key, on a blank canvas: ``float32 [B, image_size, image_size, 1]``.

    Key ``b`` picks one of ``digits`` uniformly; it is resized (bilinear) to ``digit_size`` and
    centred on an ``image_size`` canvas of zeros.

    Args:
      keys: ``[B]`` PRNG keys (or legacy raw ``uint32 [B, 2]``).
      digits: ``[N, h, w]``, ``uint8`` (0..255, e.g. from ``load_mnist_digits``) or float in
        [0, 1].
      image_size: canvas side.
      digit_size: side the digits are resized to, at most ``image_size``.
    """
    image_size = positive_int(image_size, name="image_size")
    digit_size = positive_int(digit_size, name="digit_size")
    if digit_size > image_size:
        raise ValueError(
            f"`digit_size` must be at most `image_size` ({image_size}), got {digit_size}."
        )
    digits = _check_digits(digits)
    keys = key_array(keys, name="keys", ndim=1)
    return _digit_images(keys, digits, image_size=image_size, digit_size=digit_size)


@functools.partial(jax.jit, static_argnames=("image_size", "digit_size"))
def _digit_images(keys, digits, *, image_size, digit_size):
    def one(key):
        index = jax.random.randint(key, (), 0, digits.shape[0])
        digit = digits[index]
        if digit.dtype == jnp.uint8:
            digit = digit.astype(jnp.float32) * UINT8_TO_FLOAT
        digit = digit.astype(jnp.float32)
        if digit.shape != (digit_size, digit_size):
            digit = jax.image.resize(digit, (digit_size, digit_size), method="linear")
        before = (image_size - digit_size) // 2
        after = image_size - digit_size - before
        return jnp.clip(jnp.pad(digit, ((before, after), (before, after))), 0.0, 1.0)

    return jax.vmap(one)(keys)[..., None]


def random_angles(keys: jax.Array) -> jax.Array:
    """One angle ``theta ~ U[0, 2 pi)`` per key, ``float32 [B]`` (radians).

    Use other keys than the images' (e.g. ``jax.random.split`` each example's key in two): with
    the same keys, angles and images would be drawn from related random bits.
    """
    keys = key_array(keys, name="keys", ndim=1)
    return _random_angles(keys)


@jax.jit
def _random_angles(keys):
    return jax.vmap(lambda key: jax.random.uniform(key, (), maxval=2 * math.pi))(keys)


def steerable_targets(
    images: jax.Array, theta: jax.Array, *, size: int = 9, sigma: float = 1.0
) -> jax.Array:
    """``cos(theta) * I_x + sin(theta) * I_y`` for each image and its angle: ``[B, H, W, C]``.

    Image ``b`` is cross-correlated (``"SAME"``, zero padding) with
    ``ops.steered_filter(theta[b], size=size, sigma=sigma)``, each channel on its own; ``x`` runs
    along the columns and ``y`` down the rows (see :mod:`dfn_jax.ops`). Filtering is linear, so
    this also equals ``cos(theta) * target(0) + sin(theta) * target(pi / 2)``.

    Args:
      images: ``[B, H, W, C]`` floating images.
      theta: ``[B]`` angles in radians.
      size: odd filter side (9 in the paper).
      sigma: standard deviation of the Gaussian in pixels (1 in the paper).
    """
    images = jnp.asarray(images)
    theta = jnp.asarray(theta)
    if images.ndim != 4 or not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"`images` must be a floating array [B, H, W, C], got shape {tuple(images.shape)} "
            f"and dtype {images.dtype}."
        )
    if theta.shape != images.shape[:1]:
        raise ValueError(
            f"`theta` must have shape [B] = {images.shape[:1]} (one angle per image), got "
            f"{tuple(theta.shape)}."
        )
    channels = images.shape[-1]
    filters = ops.steered_filter(theta.astype(images.dtype), size=size, sigma=sigma)
    # [B, k, k, C, C]: the same filter on every channel, no mixing between channels.
    kernels = filters[..., None, None] * jnp.eye(channels, dtype=filters.dtype)[None, None, None]
    # The shifted-window implementation: 81 fused multiply-adds, faster than a grouped
    # convolution on CPU (and never differentiated here).
    return ops.dynamic_convolution(images, kernels, padding="SAME", implementation="reference")
