"""``Conv``: ``flax.nnx.Conv`` whose gradients run as matrix products on the CPU.

Every convolution of the zoo is this class. It is ``nnx.Conv`` with one default changed:
``conv_general_dilated`` is :func:`dfn_jax.ops.conv_general_dilated`, which keeps XLA's forward
pass and input gradient and computes the kernel gradient (and 1x1 convolutions) as matrix
products when JAX computes on the CPU; other backends, and ``DFN_JAX_CONV=xla``, get XLA's own
convolution. Parameters, their names and the results (up to float rounding) are those of
``nnx.Conv``; passing ``conv_general_dilated=`` explicitly still works.
"""

from __future__ import annotations

from flax import nnx

from dfn_jax.ops import conv_general_dilated


class Conv(nnx.Conv):
    """``nnx.Conv`` with :func:`dfn_jax.ops.conv_general_dilated` as its convolution."""

    def __init__(self, *args, conv_general_dilated=conv_general_dilated, **kwargs):
        super().__init__(*args, conv_general_dilated=conv_general_dilated, **kwargs)
