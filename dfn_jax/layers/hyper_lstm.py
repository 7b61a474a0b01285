"""LSTM cells for sequences: the plain and layer-normalised LSTM and the HyperLSTM
(Ha, Dai, Le, "HyperNetworks", arXiv 1609.09106 v4, Sec. 3.2, eq. 10-13, appendix A.2).

Every cell follows one protocol, so a model swaps one for another and drives it with ``lax.scan``:

* ``cell.initial_state(batch_size) -> state`` (zeros),
* ``cell(state, x [B, in], *, key=None) -> (new_state, h [B, N_h])``; ``key`` draws the recurrent
  dropout mask (Semeniuta et al.: dropout on the candidate ``tanh(g)`` of the main cell), ``None``
  turns dropout off.

For each gate ``y`` in ``(i, g, f, o)`` the main cell computes

* LSTM: ``y = W_h^y h + W_x^y x + b^y``;
* HyperLSTM: ``y = d_h^y * (W_h^y h) + d_x^y * (W_x^y x) + b^y`` with ``d_h = W_hz z_h``,
  ``d_x = W_xz z_x``, ``b = W_bz z_b + b_0``, and ``z_h = W_hh h_hat + b_hh``,
  ``z_x = W_hx h_hat + b_hx``, ``z_b = W_hb h_hat`` read off the state ``h_hat`` of a small
  (LN-)LSTM that reads ``[x_t, h_{t-1}]``;

then (``LN`` only with ``layer_norm=True``, on each gate and on the cell)
``c' = sig(LN f + forget_bias) * c + sig(LN i) * dropout(tanh(LN g))``,
``h' = sig(LN o) * tanh(LN c')``.

Paper by default, the authors' code as options: the paper computes the embeddings from the hyper
cell's previous state and steps it alongside the main cell; ``hyper_first=True`` steps the hyper
cell first and uses its new state (the code). ``forget_bias`` is 0 in the paper (the code adds 1);
``epsilon`` of the layer norms is 1e-5 here (the paper gives none; the code uses 1e-3).
Initialisation as A.2.3: main ``W_h``, ``W_x`` orthogonal, ``b_0 = 0``; hyper cell weights
orthogonal, biases 0; ``z_h``, ``z_x`` projections weight 0 and bias 1, ``z_b`` projection
``N(0, 0.01^2)``; ``W_hz = W_xz = 0.1 / N_z`` (so every ``d`` starts at 0.1), ``W_bz = 0``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from dfn_jax._src.checks import positive_int, rate

ORTHOGONAL = nnx.initializers.orthogonal()
GATES = 4  # i, g, f, o, in this order along the last axis


class LSTMState(NamedTuple):
    """An LSTM's ``cell`` and ``hidden``, both ``[B, N_h]``."""

    cell: jax.Array
    hidden: jax.Array


class HyperLSTMState(NamedTuple):
    """The main cell's state and the hyper cell's."""

    main: LSTMState
    hyper: LSTMState


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout: zeroes each element with probability ``rate`` and scales the rest by
    ``1 / (1 - rate)``; the identity when ``key`` is ``None`` or ``rate`` is 0."""
    if key is None or rate == 0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


class _GateNorms(nnx.Module):
    """Layer norms of the four gate pre-activations and of the cell (or identities)."""

    def __init__(self, features: int, layer_norm: bool, epsilon: float, rngs: nnx.Rngs):
        self.layer_norm = layer_norm
        if layer_norm:
            make = lambda: nnx.LayerNorm(features, epsilon=epsilon, rngs=rngs)  # noqa: E731
            self.gates = nnx.List([make() for _ in range(GATES)])
            self.cell = make()

    def gate(self, k: int, x: jax.Array) -> jax.Array:
        return self.gates[k](x) if self.layer_norm else x

    def cell_norm(self, c: jax.Array) -> jax.Array:
        return self.cell(c) if self.layer_norm else c


def _lstm_update(norms, pre, state, forget_bias, dropout_rate, key):
    """``pre [B, 4, N_h]`` gate pre-activations -> the new ``LSTMState``."""
    i, g, f, o = (norms.gate(k, pre[:, k]) for k in range(GATES))
    candidate = dropout(jnp.tanh(g), dropout_rate, key)
    cell = jax.nn.sigmoid(f + forget_bias) * state.cell + jax.nn.sigmoid(i) * candidate
    hidden = jax.nn.sigmoid(o) * jnp.tanh(norms.cell_norm(cell))
    return LSTMState(cell, hidden)


class LSTMCell(nnx.Module):
    """A plain (``layer_norm=False``) or layer-normalised LSTM cell; parameters
    ``4 N_h (in + N_h) + 4 N_h`` (+ ``10 N_h`` with layer norm)."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        layer_norm: bool = False,
        forget_bias: float = 0.0,
        dropout_rate: float = 0.0,
        epsilon: float = 1e-5,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        positive_int(in_features, name="in_features")
        self.hidden_features = positive_int(hidden_features, name="hidden_features")
        self.forget_bias = float(forget_bias)
        self.dropout_rate = rate(dropout_rate, name="dropout_rate")
        h = hidden_features
        self.w_x = nnx.Param(ORTHOGONAL(rngs.params(), (in_features, GATES * h), param_dtype))
        self.w_h = nnx.Param(ORTHOGONAL(rngs.params(), (h, GATES * h), param_dtype))
        self.bias = nnx.Param(jnp.zeros((GATES * h,), param_dtype))
        self.norms = _GateNorms(h, layer_norm, epsilon, rngs)

    def initial_state(self, batch_size: int) -> LSTMState:
        zeros = jnp.zeros((batch_size, self.hidden_features), jnp.float32)
        return LSTMState(zeros, zeros)

    def __call__(self, state: LSTMState, x: jax.Array, *, key: jax.Array | None = None):
        pre = x @ self.w_x[...] + state.hidden @ self.w_h[...] + self.bias[...][None]
        pre = pre.reshape(x.shape[0], GATES, self.hidden_features)
        new = _lstm_update(self.norms, pre, state, self.forget_bias, self.dropout_rate, key)
        return new, new.hidden


class HyperLSTMCell(nnx.Module):
    """The HyperLSTM (or, ``layer_norm=True``, the LN HyperLSTM) cell of the module docstring.

    Args:
      in_features, hidden_features: ``x`` and the main cell's ``N_h``.
      hyper_features: ``N_hat``, the hyper cell's units (128 in the paper).
      z_dim: ``N_z``, each embedding's size (4; 16 for the "large embedding" variant).
      layer_norm: layer norm in both cells.
      forget_bias, dropout_rate, epsilon: as :class:`LSTMCell` (dropout on the main cell only).
      hyper_first: step the hyper cell first and read the embeddings off its new state (the
        authors' code) instead of its previous state (the paper).
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        hyper_features: int = 128,
        z_dim: int = 4,
        layer_norm: bool = False,
        forget_bias: float = 0.0,
        dropout_rate: float = 0.0,
        epsilon: float = 1e-5,
        hyper_first: bool = False,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        positive_int(in_features, name="in_features")
        h = self.hidden_features = positive_int(hidden_features, name="hidden_features")
        n_hat = positive_int(hyper_features, name="hyper_features")
        n_z = self.z_dim = positive_int(z_dim, name="z_dim")
        self.forget_bias = float(forget_bias)
        self.dropout_rate = rate(dropout_rate, name="dropout_rate")
        self.hyper_first = bool(hyper_first)
        dt = param_dtype
        self.hyper = LSTMCell(
            in_features + h,
            n_hat,
            layer_norm=layer_norm,
            forget_bias=0.0,
            epsilon=epsilon,
            param_dtype=dt,
            rngs=rngs,
        )
        self.w_x = nnx.Param(ORTHOGONAL(rngs.params(), (in_features, GATES * h), dt))
        self.w_h = nnx.Param(ORTHOGONAL(rngs.params(), (h, GATES * h), dt))
        self.b_0 = nnx.Param(jnp.zeros((GATES, h), dt))
        # Embeddings per gate: z_h, z_x (weight 0, bias 1) and z_b (N(0, 0.01^2), no bias).
        self.w_hh = nnx.Param(jnp.zeros((GATES, n_hat, n_z), dt))
        self.b_hh = nnx.Param(jnp.ones((GATES, n_z), dt))
        self.w_hx = nnx.Param(jnp.zeros((GATES, n_hat, n_z), dt))
        self.b_hx = nnx.Param(jnp.ones((GATES, n_z), dt))
        normal = jax.nn.initializers.normal(0.01)
        self.w_hb = nnx.Param(normal(rngs.params(), (GATES, n_hat, n_z), dt))
        # Scalings and bias from the embeddings: d = 0.1 at the start, generated bias 0.
        self.w_hz = nnx.Param(jnp.full((GATES, n_z, h), 0.1 / n_z, dt))
        self.w_xz = nnx.Param(jnp.full((GATES, n_z, h), 0.1 / n_z, dt))
        self.w_bz = nnx.Param(jnp.zeros((GATES, n_z, h), dt))
        self.norms = _GateNorms(h, layer_norm, epsilon, rngs)

    def initial_state(self, batch_size: int) -> HyperLSTMState:
        zeros = jnp.zeros((batch_size, self.hidden_features), jnp.float32)
        return HyperLSTMState(LSTMState(zeros, zeros), self.hyper.initial_state(batch_size))

    def scalings(self, hyper_hidden: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(d_h, d_x, b)``, each ``[B, 4, N_h]``, from the hyper cell's hidden state.

        All twelve embeddings come from one matmul, and each of ``d_h``, ``d_x``, ``b`` from one
        more against the block-diagonal of its four per-gate projections (fewer, larger ops than
        per-gate einsums: about 10% faster per training step on CPU).
        """
        gates, n_hat, n_z = self.w_hh.shape
        batch, h = hyper_hidden.shape[0], self.hidden_features
        w = jnp.concatenate([self.w_hh[...], self.w_hx[...], self.w_hb[...]], axis=-1)
        z = (hyper_hidden @ jnp.moveaxis(w, 0, 1).reshape(n_hat, -1)).reshape(batch, gates, 3, n_z)
        z_h = z[:, :, 0] + self.b_hh[...][None]
        z_x = z[:, :, 1] + self.b_hx[...][None]
        eye = jnp.eye(gates, dtype=w.dtype)

        def project(embedding, weight):  # [B, 4, N_z] x [4, N_z, N_h] -> [B, 4, N_h]
            block = jnp.einsum("kzh,kl->kzlh", weight, eye).reshape(gates * n_z, gates * h)
            return (embedding.reshape(batch, -1) @ block).reshape(batch, gates, h)

        d_h = project(z_h, self.w_hz[...])
        d_x = project(z_x, self.w_xz[...])
        bias = project(z[:, :, 2], self.w_bz[...]) + self.b_0[...][None]
        return d_h, d_x, bias

    def __call__(self, state: HyperLSTMState, x: jax.Array, *, key: jax.Array | None = None):
        main, hyper = state
        hyper_input = jnp.concatenate([x, main.hidden], axis=-1)
        new_hyper, _ = self.hyper(hyper, hyper_input)
        d_h, d_x, bias = self.scalings((new_hyper if self.hyper_first else hyper).hidden)
        b, h = x.shape[0], self.hidden_features
        wh = (main.hidden @ self.w_h[...]).reshape(b, GATES, h)
        wx = (x @ self.w_x[...]).reshape(b, GATES, h)
        pre = d_h * wh + d_x * wx + bias
        new_main = _lstm_update(self.norms, pre, main, self.forget_bias, self.dropout_rate, key)
        return HyperLSTMState(new_main, new_hyper), new_main.hidden
