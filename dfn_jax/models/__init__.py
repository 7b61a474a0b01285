"""The paper models, each a Flax NNX module with a frozen config dataclass.

* :class:`VideoDFN` / :class:`VideoDFNConfig`: the recurrent Dynamic Filter Network for video
  prediction (Moving MNIST), and its no-dynamic-filter baseline.
* :func:`count_params`: number of trainable parameters of any NNX module.
"""

from __future__ import annotations

import jax
from flax import nnx

from dfn_jax.models._common import FilterGenerator, UntiedBiasConv
from dfn_jax.models.highway import HighwayDFN, HighwayDFNConfig
from dfn_jax.models.steerable import SteerableDFN, SteerableDFNConfig
from dfn_jax.models.stereo import StereoDFN, StereoDFNConfig, StereoPrediction
from dfn_jax.models.video_dfn import VideoDFN, VideoDFNConfig, VideoPrediction


def count_params(model: nnx.Module) -> int:
    """Total number of scalars in the module's ``nnx.Param`` variables (trainable parameters)."""
    return int(sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))))


__all__ = [
    "FilterGenerator",
    "HighwayDFN",
    "HighwayDFNConfig",
    "SteerableDFN",
    "SteerableDFNConfig",
    "StereoDFN",
    "StereoDFNConfig",
    "StereoPrediction",
    "UntiedBiasConv",
    "VideoDFN",
    "VideoDFNConfig",
    "VideoPrediction",
    "count_params",
]
