"""Pure functions on arrays: convolution with a fast CPU gradient, dynamic filtering, flow from
filters, video and sequence metrics.

Every function takes arrays first and options keyword-only, uses channels-last layout
(``[B, H, W, C]``) and checks its arguments, raising ``ValueError`` with the argument's name,
the shape it got and the shape expected. The exception is :func:`conv_general_dilated`, a
drop-in for ``jax.lax.conv_general_dilated`` that keeps its signature (``flax.nnx.Conv`` calls it
positionally).
"""

from dfn_jax.ops._conv import conv_general_dilated
from dfn_jax.ops._dynamic_convolution import dynamic_convolution
from dfn_jax.ops._flow import filter_disparity, filter_flow, flow_to_rgb, hsv_to_rgb, tap_offsets
from dfn_jax.ops._local_filter import dynamic_local_filter
from dfn_jax.ops._metrics import (
    absolute_error_per_frame,
    binary_cross_entropy_per_frame,
    psnr,
    squared_error_per_frame,
    ssim,
    ssim_openstl,
    target_entropy_per_frame,
)
from dfn_jax.ops._sequence_metrics import bits_per_character, token_nll
from dfn_jax.ops._steerable import gaussian_derivative_filters, steered_filter

__all__ = [
    "absolute_error_per_frame",
    "binary_cross_entropy_per_frame",
    "bits_per_character",
    "conv_general_dilated",
    "dynamic_convolution",
    "dynamic_local_filter",
    "filter_disparity",
    "filter_flow",
    "flow_to_rgb",
    "gaussian_derivative_filters",
    "hsv_to_rgb",
    "psnr",
    "squared_error_per_frame",
    "ssim",
    "ssim_openstl",
    "steered_filter",
    "tap_offsets",
    "target_entropy_per_frame",
    "token_nll",
]
