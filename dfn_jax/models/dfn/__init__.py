"""Dynamic Filter Networks (De Brabandere et al., NIPS 2016): the recurrent video DFN (Moving
MNIST), the steerable-filter toy, highway-driving prediction and stereo view prediction, each a
Flax NNX module with a frozen config dataclass."""

from dfn_jax.models.dfn._common import FilterGenerator, UntiedBiasConv
from dfn_jax.models.dfn.highway import HighwayDFN, HighwayDFNConfig
from dfn_jax.models.dfn.steerable import SteerableDFN, SteerableDFNConfig
from dfn_jax.models.dfn.stereo import StereoDFN, StereoDFNConfig, StereoPrediction
from dfn_jax.models.dfn.video import VideoDFN, VideoDFNConfig, VideoPrediction

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
]
