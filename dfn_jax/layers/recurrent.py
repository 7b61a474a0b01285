"""Convolutional recurrent cells as Flax NNX modules (Flax NNX has no ConvLSTM).

Every cell follows the same small protocol, so a model can swap one for another and drive it with
``jax.lax.scan``:

* ``cell.initial_state(batch_size, height, width) -> state`` (zeros),
* ``cell(state, inputs [B, H, W, Cin]) -> (new_state, outputs [B, H, W, F])``.

Cells:

* :class:`AdditiveConvRNNCell`: the DFN paper's video recurrence
  ``h_t = e_t + act(conv(act(conv(h_{t-1}))))``, no gates.
* :class:`ConvLSTMCell`: the convolutional LSTM of Shi et al. (2015), without peepholes.

All convolutions are stride 1 with ``SAME`` padding; kernels are He-uniform
(``variance_scaling(2.0, "fan_in", "uniform")``) by default and biases zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from dfn_jax._src.checks import is_int, kernel_size_pair
from dfn_jax.layers.conv import Conv

Initializer = Any

HE_UNIFORM: Initializer = nnx.initializers.variance_scaling(2.0, "fan_in", "uniform")


def _check_inputs(inputs: jax.Array, features: int, name: str = "inputs") -> None:
    if inputs.ndim != 4 or inputs.shape[-1] != features:
        raise ValueError(
            f"`{name}` must have shape [B, H, W, {features}], got {tuple(inputs.shape)}."
        )


class AdditiveConvRNNCell(nnx.Module):
    """Additive convolutional RNN: ``h_t = e_t + act(conv_2(act(conv_1(h_{t-1}))))``.

    The recurrence of the paper's Moving MNIST model ("h_t = e_t + conv128(conv128(h_{t-1}))").
    As in the authors' Lasagne code both recurrent convolutions are followed by a leaky ReLU
    (slope ``negative_slope``, 0.01 as in Lasagne's ``leaky_rectify``) and the sum itself is not
    passed through any nonlinearity. The input ``e_t`` must already have ``features`` channels
    (in the paper it is the output of the encoder's last 3x3 conv, itself leaky-ReLU'd). The state
    and the output are both ``h_t``.

    Parameters: ``2 * (k*k*F*F + F)``, i.e. 295,168 for ``F = 128``, ``k = 3``.
    """

    def __init__(
        self,
        features: int,
        *,
        kernel_size: int | Sequence[int] = 3,
        negative_slope: float = 0.01,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        kernel_init: Initializer = HE_UNIFORM,
        rngs: nnx.Rngs,
    ):
        if not is_int(features) or features <= 0:
            raise ValueError(f"`features` must be a positive int, got {features!r}.")
        kernel = kernel_size_pair(kernel_size)
        self.features = int(features)
        self.negative_slope = negative_slope
        self.dtype = dtype
        conv = dict(
            kernel_size=kernel,
            padding="SAME",
            kernel_init=kernel_init,
            bias_init=nnx.initializers.zeros_init(),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.conv_1 = Conv(features, features, **conv)
        self.conv_2 = Conv(features, features, **conv)

    def initial_state(self, batch_size: int, height: int, width: int) -> jax.Array:
        """``h_0 = 0``: ``[batch_size, height, width, features]``."""
        dtype = self.dtype or jnp.float32
        return jnp.zeros((batch_size, height, width, self.features), dtype)

    def __call__(self, state: jax.Array, inputs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """One step.

        Args:
          state: ``h_{t-1} [B, H, W, F]``.
          inputs: ``e_t [B, H, W, F]``.

        Returns:
          ``(h_t, h_t)``, both ``[B, H, W, F]``.
        """
        _check_inputs(inputs, self.features)
        _check_inputs(state, self.features, name="state")
        recurrent = jax.nn.leaky_relu(self.conv_1(state), self.negative_slope)
        recurrent = jax.nn.leaky_relu(self.conv_2(recurrent), self.negative_slope)
        hidden = inputs.astype(recurrent.dtype) + recurrent
        return hidden, hidden


class LSTMState(NamedTuple):
    """ConvLSTM state: ``cell`` and ``hidden``, both ``[B, H, W, F]``."""

    cell: jax.Array
    hidden: jax.Array


class ConvLSTMCell(nnx.Module):
    """Convolutional LSTM (Shi et al. 2015) without peephole connections.

    One convolution over the concatenation ``[x_t, h_{t-1}]`` gives the four gate pre-activations
    (input ``i``, forget ``f``, candidate ``g``, output ``o``, in that channel order)::

        i, f, g, o = split(conv([x_t, h_{t-1}]))
        c_t = sigmoid(f + forget_bias) * c_{t-1} + sigmoid(i) * tanh(g)
        h_t = sigmoid(o) * tanh(c_t)

    ``forget_bias`` (default 1.0, as in TensorFlow's LSTM cells) is a constant added to the forget
    pre-activation so that, with zero-initialised biases, the cell starts out remembering.
    The output is ``h_t``.

    Parameters: ``k*k*(Cin + F)*4F + 4F``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        kernel_size: int | Sequence[int] = 3,
        forget_bias: float = 1.0,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        kernel_init: Initializer = HE_UNIFORM,
        rngs: nnx.Rngs,
    ):
        for name, value in (("in_features", in_features), ("hidden_features", hidden_features)):
            if not is_int(value) or value <= 0:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
        self.in_features = int(in_features)
        self.hidden_features = int(hidden_features)
        self.forget_bias = forget_bias
        self.dtype = dtype
        self.gates = Conv(
            in_features + hidden_features,
            4 * hidden_features,
            kernel_size=kernel_size_pair(kernel_size),
            padding="SAME",
            kernel_init=kernel_init,
            bias_init=nnx.initializers.zeros_init(),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def initial_state(self, batch_size: int, height: int, width: int) -> LSTMState:
        """Zero cell and hidden state, each ``[batch_size, height, width, hidden_features]``."""
        dtype = self.dtype or jnp.float32
        zeros = jnp.zeros((batch_size, height, width, self.hidden_features), dtype)
        return LSTMState(cell=zeros, hidden=zeros)

    def __call__(self, state: LSTMState, inputs: jax.Array) -> tuple[LSTMState, jax.Array]:
        """One step.

        Args:
          state: :class:`LSTMState` with ``cell`` and ``hidden`` ``[B, H, W, F]``.
          inputs: ``x_t [B, H, W, Cin]``.

        Returns:
          ``(LSTMState(c_t, h_t), h_t)``.
        """
        _check_inputs(inputs, self.in_features)
        cell, hidden = state
        _check_inputs(hidden, self.hidden_features, name="state.hidden")
        if cell.shape != hidden.shape:
            raise ValueError(
                f"`state.cell` must have the shape of `state.hidden` {tuple(hidden.shape)}, got "
                f"{tuple(cell.shape)}."
            )
        if inputs.shape[:3] != hidden.shape[:3]:
            raise ValueError(
                f"`inputs` [B, H, W] {tuple(inputs.shape[:3])} must match the state's "
                f"{tuple(hidden.shape[:3])}."
            )
        stacked = jnp.concatenate([inputs.astype(hidden.dtype), hidden], axis=-1)
        i, f, g, o = jnp.split(self.gates(stacked), 4, axis=-1)
        new_cell = jax.nn.sigmoid(f + self.forget_bias) * cell + jax.nn.sigmoid(i) * jnp.tanh(g)
        new_hidden = jax.nn.sigmoid(o) * jnp.tanh(new_cell)
        new_cell = new_cell.astype(cell.dtype)
        new_hidden = new_hidden.astype(hidden.dtype)
        return LSTMState(new_cell, new_hidden), new_hidden
