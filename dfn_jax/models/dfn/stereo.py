r"""The Dynamic Filter Network for stereo prediction (De Brabandere et al. 2016).

From the left image of a rectified stereo pair the model predicts the right one: the generator
reads the left image and emits, per pixel, a horizontal ``1 x 13`` softmax filter and a dynamic
bias; the right image is the left one plus the bias, filtered. The expected tap offset of each
filter, ``sum_t f_t (t - 6)``, is a disparity map (:func:`dfn_jax.ops.filter_disparity`) the
network learns without ever seeing one::

    encoder    conv3x3 32 > conv3x3 32 /2 > conv3x3 64 > conv3x3 64
               > conv3x3 128 (untied biases: one per channel and pixel, 32*32*128 of them)
    decoder    conv3x3 64 > conv3x3 64 > upsample x2 (nearest) > conv3x3 64 > conv3x3 64
               > conv1x1 128 > conv1x1 13 + 1   (linear filter head: 13 taps + 1 bias)
    output     right = softmax-filter_{1x13}(left + bias)

Leaky ReLU (0.01) after every conv but the filter head, Lasagne-style 'same' padding, He-uniform
kernels with the authors' gain (``init_scale = 1.0``) and zero biases, as in
:mod:`dfn_jax.models.dfn.highway`, whose :class:`~dfn_jax.models.FilterGenerator` this model
uses (feed-forward: no recurrence).

**Baseline** (``dynamic_filter=False``): the 14-channel head feeds a linear 1x1 conv to
``channels`` outputs instead of the dynamic filtering layer.

Parameter counts (64x64x1 images)::

    encoder  320 + 9,248 + 18,496 + 36,928 + (73,728 + 128*32*32 = 204,800)   = 269,792
    decoder  73,792 + 36,928 + 36,928 + 36,928                                = 184,576
    conv1x1 64->128  8,320;  conv1x1 128->14 (filter head)  1,806
    DFN total                                                                   464,494
    baseline: + conv1x1 14->1 (14 + 1)                                          464,509

Where these facts come from: left in / right out, the 1x13 horizontal softmax filters, the dynamic
bias and the MSE loss are stated in the paper and REFERENCE.md. The widths, the absence of a
recurrence and the place of the untied biases (the fifth conv, at half resolution: the only place
that reconciles the Moving-MNIST-style layers with 464,494 once 131,072 = 128*32*32 untied biases
are counted) were read off the authors' Lasagne code (github dbbert/dfn,
``models/model_stereoPrediction.py``) and reproduce both published counts exactly. The authors'
data loader reads 64x64 frames (``image_dim = 64``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from dfn_jax.models.dfn._common import (
    _check_filter_size,
    _check_generator_fields,
    _check_images,
    apply_output_stage,
    dynamic_filter_or_output_conv,
    filter_generator,
)


@dataclasses.dataclass(frozen=True)
class StereoDFNConfig:
    """Configuration of :class:`StereoDFN`; the defaults are the paper's stereo model.

    Attributes:
      filter_size: odd width ``k`` of the horizontal ``1 x k`` filters (13: disparities up to
        +-6 pixels).
      dynamic_filter: ``True`` for the DFN, ``False`` for the baseline.
      dynamic_bias: generate a per-pixel bias added to the left image before filtering (``True``).
      encoder_features: widths of the encoder's 3x3 convs (the second has stride 2).
      decoder_features: widths of the decoder's 3x3 convs; ``len // 2`` at half resolution.
      head_features: width of the 1x1 conv before the filter head (128).
      untied_bias_layer: encoder conv with one bias per channel and pixel (4: the fifth, at half
        resolution), or ``None``.
      image_size: image side (64); the untied biases are made for it.
      channels: image channels (1).
      dtype, param_dtype, leaky_relu_slope, init_scale, baseline_output, filter_implementation:
        as in :class:`~dfn_jax.models.HighwayDFNConfig`.
    """

    filter_size: int = 13
    dynamic_filter: bool = True
    dynamic_bias: bool = True
    encoder_features: tuple[int, ...] = (32, 32, 64, 64, 128)
    decoder_features: tuple[int, ...] = (64, 64, 64, 64)
    head_features: int = 128
    untied_bias_layer: int | None = 4
    image_size: int = 64
    channels: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    leaky_relu_slope: float = 0.01
    init_scale: float = 1.0
    baseline_output: str = "identity"
    filter_implementation: str = "fast"

    def __post_init__(self):
        _check_filter_size(self.filter_size, why=" (the 1 x k filter is centred on the pixel)")
        _check_generator_fields(self)

    @property
    def kernel_size(self) -> tuple[int, int]:
        """``(1, filter_size)``."""
        return (1, self.filter_size)


class StereoPrediction(NamedTuple):
    """Output of :class:`StereoDFN`.

    Attributes:
      image: ``[B, H, W, C]`` predicted right image.
      filters: ``[B, H, W, k]`` softmax filters (tap ``t`` reads the left image at column offset
        ``t - k//2``; :func:`dfn_jax.ops.filter_disparity` turns them into disparities); ``None``
        for the baseline.
    """

    image: jax.Array
    filters: jax.Array | None


class StereoDFN(nnx.Module):
    """The paper's DFN for stereo prediction: left image in, right image out.

    Args:
      config: :class:`StereoDFNConfig`.
      rngs: ``nnx.Rngs`` for the parameter initialisation.

    Call it on ``left [B, H, W, C]`` (values in [0, 1]) for a :class:`StereoPrediction`.
    """

    def __init__(self, config: StereoDFNConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, StereoDFNConfig):
            raise ValueError(f"`config` must be a StereoDFNConfig, got {type(config).__name__}.")
        self.config = config
        num_params = config.filter_size + int(config.dynamic_bias)
        self.generator = filter_generator(
            config, config.channels, num_params, recurrent=False, rngs=rngs
        )
        dynamic_filter_or_output_conv(self, config, config.kernel_size, num_params, rngs=rngs)

    def __call__(self, left: jax.Array) -> StereoPrediction:
        """Predicts the right image from ``left [B, H, W, C]`` (or an unbatched ``[H, W, C]``).

        Returns:
          :class:`StereoPrediction` (unbatched if ``left`` was).
        """
        left = jnp.asarray(left)
        unbatched = left.ndim == 3
        if unbatched:
            left = left[None]
        left = _check_images(left, "left", self.config, ndim=4, layout="[B, H, W, C]")
        image, filters = apply_output_stage(self, left, self.generator(left))
        if unbatched:
            return StereoPrediction(image[0], None if filters is None else filters[0])
        return StereoPrediction(image, filters)
