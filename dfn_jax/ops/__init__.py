"""Pure functions on arrays: dynamic filtering, flow from filters, metrics.

Every function takes arrays first and options keyword-only, uses channels-last layout
(``[B, H, W, C]``) and checks its arguments, raising ``ValueError`` with the argument's name,
the shape it got and the shape expected.
"""

from dfn_jax.ops._dynamic_convolution import dynamic_convolution
from dfn_jax.ops._flow import filter_disparity, filter_flow, flow_to_rgb, hsv_to_rgb, tap_offsets
from dfn_jax.ops._local_filter import dynamic_local_filter

__all__ = [
    "dynamic_convolution",
    "dynamic_local_filter",
    "filter_disparity",
    "filter_flow",
    "flow_to_rgb",
    "hsv_to_rgb",
    "tap_offsets",
]
