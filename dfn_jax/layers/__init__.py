"""Flax NNX layers that wrap :mod:`dfn_jax.ops`: dynamic filtering layers and recurrent cells.

* :class:`Conv`: ``nnx.Conv`` whose gradients run as matrix products on the CPU.
* :class:`DynamicLocalFilter`: per-pixel generated filters (softmax-normalised or raw, optional
  dynamic bias).
* :class:`DynamicConvolution`: a generated kernel bank per sample, from flat parameters.
* :class:`AdditiveConvRNNCell`, :class:`ConvLSTMCell`: convolutional recurrent cells with the
  ``initial_state(...)`` / ``cell(state, inputs) -> (state, outputs)`` protocol.
"""

from dfn_jax.layers.conv import Conv
from dfn_jax.layers.dynamic_filter import DynamicConvolution, DynamicLocalFilter
from dfn_jax.layers.recurrent import HE_UNIFORM, AdditiveConvRNNCell, ConvLSTMCell, LSTMState

__all__ = [
    "Conv",
    "HE_UNIFORM",
    "AdditiveConvRNNCell",
    "ConvLSTMCell",
    "DynamicConvolution",
    "DynamicLocalFilter",
    "LSTMState",
]
