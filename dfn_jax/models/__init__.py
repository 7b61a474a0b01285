"""The paper models, one subpackage per family, each model a Flax NNX module with a frozen config
dataclass. The DFN family's models are also importable from here (``models.VideoDFN``).

* :mod:`dfn_jax.models.dfn`: :class:`VideoDFN` (Moving MNIST), :class:`SteerableDFN`,
  :class:`HighwayDFN`, :class:`StereoDFN` and their baselines.
* :func:`count_params`: number of trainable parameters of any NNX module.
"""

from __future__ import annotations

from dfn_jax._src.params import count_params
from dfn_jax.models import dfn
from dfn_jax.models.dfn import *  # noqa: F403 (the DFN family's public names, listed there)

__all__ = [*dfn.__all__, "count_params"]
