"""The steerable-filter model of De Brabandere et al. 2016 (Sec. 4.1, "learning steerable filters").

A filter-generating network reads one angle ``theta`` per sample and outputs a ``k x k`` filter,
which a dynamic convolutional layer applies to the sample's image::

    theta -> Linear 64 -> leaky ReLU -> Linear 128 -> leaky ReLU -> Linear k*k  (linear output)
          -> reshape [k, k, 1, 1] -> dynamic convolution of the image ("SAME" zero padding)

Trained to reproduce ``cos(theta) I_x + sin(theta) I_y``, the generated filter should become the
steered Gaussian-derivative filter :func:`dfn_jax.ops.steered_filter` (no normalisation of the
filter, as in the paper).

Input encoding (``theta_encoding``):

* ``"angle"`` (default): the scalar angle, as in the paper, rescaled from radians in
  ``[0, 2 pi)`` to ``theta / pi - 1`` in ``[-1, 1)``. The network has to build ``cos`` and ``sin``
  out of leaky-ReLU pieces. The rescaling is a fixed affine map, so it changes nothing the network
  can express, but it trains much better: with zero biases and a raw input that never goes
  negative, every first-layer unit starts linear on the whole range, and inputs up to 6.3 make
  its weights' gradients large. On the paper's schedule (5,000 steps, 32x32 textures) the worst of
  the 8 filter similarities reached 0.98 with it and 0.93 with the raw angle. Either way the
  filter at ``theta = 0`` is the least accurate: 0 and ``2 pi`` are the two ends of the input
  range, and the network does not know they are the same angle.
* ``"raw_angle"``: the angle in radians, unchanged (the paper's literal input).
* ``"cos_sin"``: the two inputs ``(cos theta, sin theta)``; the target filter is then linear in the
  input, so the task is nearly trivial. Offered for comparison.

The filter head (the last linear layer) starts at zero (``head_init_scale = 0``), so the first
prediction is zero and training starts from the targets' mean square. With the He initialisation of
the other layers (``head_init_scale = 2``) the generated filters start 30 (``"angle"``,
``"cos_sin"``) to 200 (``"raw_angle"``) times larger than the analytic ones (whose taps are below
0.1), and Adam spends much of the paper's schedule shrinking them: in the same 32x32 study the
similarities stayed below 0.75 after 5,000 steps, with the raw angle and with ``"cos_sin"``
alike.

Baseline (``dynamic_filter=False``): the image is convolved with one **static** learned ``k x k``
filter that ignores ``theta``, i.e. an ordinary convolutional layer: what the same data teaches a
network without a dynamic filter. Over ``theta ~ U[0, 2 pi)`` the targets' mean filter is zero, so
its best filter is zero and its error is the targets' mean square: the gap to the DFN is the whole
point of generating the filter.

The other weights use He-uniform initialisation and zero biases, as everywhere in the paper's
code.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dfn_jax.layers import DynamicConvolution
from dfn_jax.models.dfn._common import _check_filter_size

THETA_ENCODINGS = ("angle", "raw_angle", "cos_sin")


@dataclasses.dataclass(frozen=True)
class SteerableDFNConfig:
    """Configuration of :class:`SteerableDFN`; the defaults are the paper's model.

    Attributes:
      filter_size: odd side ``k`` of the generated filter (9).
      hidden_features: widths of the hidden layers of the filter-generating network ((64, 128)).
      dynamic_filter: ``True`` for the DFN; ``False`` for the static-filter baseline.
      theta_encoding: ``"angle"`` (the angle rescaled to ``theta / pi - 1``), ``"raw_angle"``
        (radians, the paper's literal input) or ``"cos_sin"``; see the module docstring.
      leaky_relu_slope: negative slope of the leaky ReLUs (0.01).
      init_scale: hidden kernels ~ ``variance_scaling(init_scale, "fan_in", "uniform")`` (2.0:
        He).
      head_init_scale: the same for the filter head (and the baseline's static filter); 0.0
        (default) starts it at zero.
    """

    filter_size: int = 9
    hidden_features: tuple[int, ...] = (64, 128)
    dynamic_filter: bool = True
    theta_encoding: str = "angle"
    leaky_relu_slope: float = 0.01
    init_scale: float = 2.0
    head_init_scale: float = 0.0

    def __post_init__(self):
        _check_filter_size(self.filter_size)
        hidden = self.hidden_features
        if not isinstance(hidden, tuple) or not all(
            isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h > 0 for h in hidden
        ):
            raise ValueError(f"`hidden_features` must be a tuple of positive ints, got {hidden!r}.")
        if self.theta_encoding not in THETA_ENCODINGS:
            raise ValueError(
                f"`theta_encoding` must be one of {THETA_ENCODINGS}, got {self.theta_encoding!r}."
            )
        if not isinstance(self.dynamic_filter, bool):
            raise ValueError(f"`dynamic_filter` must be a bool, got {self.dynamic_filter!r}.")
        for name in ("leaky_relu_slope", "init_scale", "head_init_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"`{name}` must be a non-negative float, got {value!r}.")


def encode_theta(theta: jax.Array, encoding: str) -> jax.Array:
    """``[B]`` angles (radians) -> ``[B, 1]`` (``"angle"``: ``theta / pi - 1``; ``"raw_angle"``:
    ``theta``) or ``[B, 2]`` (``"cos_sin"``) network inputs."""
    theta = jnp.asarray(theta, jnp.float32)
    if encoding == "angle":
        return (theta / np.float32(np.pi) - 1.0)[:, None]
    if encoding == "raw_angle":
        return theta[:, None]
    if encoding == "cos_sin":
        return jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)
    raise ValueError(f"`encoding` must be one of {THETA_ENCODINGS}, got {encoding!r}.")


def _he_uniform(scale: float):
    if scale == 0:
        return nnx.initializers.zeros_init()
    return nnx.initializers.variance_scaling(scale, "fan_in", "uniform")


class SteerableDFN(nnx.Module):
    """Angle -> filter -> dynamic convolution; see the module docstring.

    ``model(images [B, H, W, 1], theta [B]) -> [B, H, W, 1]``; ``model.filters(theta [N])`` gives
    the ``[N, k, k]`` filters it applies.
    """

    def __init__(self, config: SteerableDFNConfig = SteerableDFNConfig(), *, rngs: nnx.Rngs):
        self.config = config
        k = config.filter_size
        init = _he_uniform(config.init_scale)
        head_init = _he_uniform(config.head_init_scale)
        self.conv = DynamicConvolution(k, 1, 1, padding="SAME")
        if config.dynamic_filter:
            widths = (2 if config.theta_encoding == "cos_sin" else 1, *config.hidden_features)
            self.hidden = nnx.List(
                nnx.Linear(a, b, kernel_init=init, rngs=rngs)
                for a, b in zip(widths[:-1], widths[1:], strict=True)
            )
            self.head = nnx.Linear(widths[-1], k * k, kernel_init=head_init, rngs=rngs)
        else:
            self.static_filter = nnx.Param(head_init(rngs.params(), (k, k, 1, 1)).reshape(k, k))

    def filters(self, theta: jax.Array) -> jax.Array:
        """The generated filters ``[N, k, k]`` for angles ``theta [N]`` (radians)."""
        theta = jnp.asarray(theta)
        if theta.ndim != 1:
            raise ValueError(f"`theta` must have shape [N], got {tuple(theta.shape)}.")
        k = self.config.filter_size
        if not self.config.dynamic_filter:
            return jnp.broadcast_to(self.static_filter[...][None], (theta.shape[0], k, k))
        h = encode_theta(theta, self.config.theta_encoding)
        for layer in self.hidden:
            h = jax.nn.leaky_relu(layer(h), self.config.leaky_relu_slope)
        return self.head(h).reshape(theta.shape[0], k, k)

    def __call__(self, images: jax.Array, theta: jax.Array) -> jax.Array:
        """Filters each image ``[B, H, W, 1]`` with the filter for its angle ``theta [B]``."""
        images = jnp.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 1:
            raise ValueError(f"`images` must have shape [B, H, W, 1], got {tuple(images.shape)}.")
        theta = jnp.asarray(theta)
        if theta.shape != images.shape[:1]:
            raise ValueError(
                f"`theta` must have shape [B] = {images.shape[:1]}, got {tuple(theta.shape)}."
            )
        filters = self.filters(theta)
        return self.conv(images, filters.reshape(filters.shape[0], -1))
