"""Steerable filters: first-order Gaussian-derivative filters and their steered combinations.

The target of the paper's first experiment (De Brabandere et al. 2016, Sec. 4.1, "learning
steerable filters"): a filter-generating network reads an angle ``theta`` and must output the
edge detector ``cos(theta) * G_x + sin(theta) * G_y``.

Conventions (the same as :func:`dynamic_local_filter` and :func:`dynamic_convolution`):

* Filters are ``[size, size]`` and are applied by **cross-correlation**: tap ``[i, j]`` reads the
  pixel at offset ``(dy, dx) = (i - size//2, j - size//2)``.
* ``x`` runs along the columns (to the right) and ``y`` along the rows, **downwards**, as in image
  arrays. ``theta = 0`` points along ``+x``, ``theta = pi/2`` along ``+y`` (down the image), so
  angles turn clockwise on screen.
* ``G_x[i, j] = dx * g / Z`` and ``G_y[i, j] = dy * g / Z`` with ``g = exp(-(dx^2 + dy^2) / (2
  sigma^2))`` and ``Z = sum(dx^2 * g)``. Cross-correlating an image with ``G_x`` gives its
  Gaussian-smoothed derivative ``dI/dx`` (positive where the image gets brighter to the right);
  ``Z`` makes that exact on ramps: ``I = a*x + b*y + c`` gives ``a`` with ``G_x`` and ``b`` with
  ``G_y`` (away from the zero-padded border). This is the sampled derivative of a unit-mass
  Gaussian, ``-dG/dx`` as a correlation kernel, up to the discretisation of its normalisation
  (less than 0.01% for ``sigma = 1`` and 9 taps).

With these, ``cos(theta) * G_x + sin(theta) * G_y`` is the directional derivative along
``(cos theta, sin theta)``, and its response to any image is the same combination of the two basis
responses (steerability, Freeman and Adelson 1991).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from dfn_jax._src import checks as _checks


def _check_size_sigma(size, sigma) -> tuple[int, float]:
    if (
        isinstance(size, bool)
        or not isinstance(size, (int, np.integer))
        or size < 3
        or size % 2 == 0
    ):
        raise ValueError(f"`size` must be an odd int >= 3 (a centred filter), got {size!r}.")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.integer, np.floating)):
        raise ValueError(f"`sigma` must be a positive float, got {sigma!r}.")
    if not (math.isfinite(float(sigma)) and float(sigma) > 0):
        raise ValueError(f"`sigma` must be a positive finite float, got {sigma!r}.")
    return int(size), float(sigma)


def _basis(size: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """``(G_x, G_y)`` as float64 NumPy arrays (constants, built on the host)."""
    r = np.arange(size, dtype=np.float64) - size // 2
    dy, dx = np.meshgrid(r, r, indexing="ij")  # rows are y, columns are x
    g = np.exp(-(dx**2 + dy**2) / (2.0 * sigma**2))
    z = np.sum(dx**2 * g)
    return dx * g / z, dy * g / z


def gaussian_derivative_filters(
    *, size: int = 9, sigma: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """First-order Gaussian-derivative filters ``(G_x, G_y)``, each ``float32 [size, size]``.

    ``G_x`` estimates ``dI/dx`` (x = columns, to the right) and ``G_y`` estimates ``dI/dy`` (y =
    rows, downwards) when cross-correlated with an image (``dynamic_convolution``,
    ``lax.conv_general_dilated``). Both are normalised to give exactly the slope of a linear ramp;
    see the module docstring. ``G_y`` is ``G_x`` transposed.

    Args:
      size: odd side of the filters (9 in the paper).
      sigma: standard deviation of the Gaussian in pixels (1 in the paper).

    Returns:
      ``(G_x, G_y)``.
    """
    size, sigma = _check_size_sigma(size, sigma)
    gx, gy = _basis(size, sigma)
    return jnp.asarray(gx, jnp.float32), jnp.asarray(gy, jnp.float32)


def steered_filter(theta: jax.Array, *, size: int = 9, sigma: float = 1.0) -> jax.Array:
    """The steered filter ``cos(theta) * G_x + sin(theta) * G_y`` for every angle in ``theta``.

    It is the Gaussian-smoothed directional derivative along ``(cos theta, sin theta)`` in
    (x = columns, y = rows downwards) coordinates: ``theta = 0`` differentiates to the right,
    ``pi/2`` downwards, ``pi`` to the left.

    Args:
      theta: angles in radians, any shape ``[...]`` (a scalar gives one filter); integers are
        cast to float32.
      size: odd side of the filters.
      sigma: standard deviation of the Gaussian in pixels.

    Returns:
      ``[..., size, size]`` in the floating dtype of ``theta`` (float32 for integer angles).
    """
    size, sigma = _check_size_sigma(size, sigma)
    theta = jnp.asarray(theta)
    if jnp.issubdtype(theta.dtype, jnp.integer):
        theta = theta.astype(jnp.float32)
    theta = _checks.floating_array(theta, name="theta")
    gx, gy = (jnp.asarray(b, theta.dtype) for b in _basis(size, sigma))
    expand = (1,) * theta.ndim + (size, size)  # explicit ranks: no implicit rank promotion
    c = jnp.cos(theta)[..., None, None]
    s = jnp.sin(theta)[..., None, None]
    return c * gx.reshape(expand) + s * gy.reshape(expand)
