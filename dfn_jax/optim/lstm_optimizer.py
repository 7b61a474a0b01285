"""The coordinatewise LSTM optimizer of "Learning to learn by gradient descent by gradient
descent" (Andrychowicz et al., NIPS 2016, arXiv 1606.04474) as an optax transform.

Every coordinate of every parameter is one row of a batch that a small LSTM (two layers of 20
units, weights shared by all coordinates, one state per coordinate) reads: its input is the
coordinate's gradient, preprocessed (appendix A), and a linear layer maps the top hidden state to
the coordinate's update, times an output scale. The update is *added* to the parameters
(``theta_{t+1} = theta_t + g_t``; optax's convention), so :func:`lstm_optimizer` drops into any
optax loop (``optax.chain``, ``optax.apply_updates``, ``jit``)::

    opt = lstm_optimizer(meta_params, output_scale=0.1)
    state = opt.init(params)
    updates, state = opt.update(grads, state)
    params = optax.apply_updates(params, updates)

The optimizer is a pure function of its meta-parameters ``phi`` (:func:`init_meta_params`):
meta-training differentiates the optimizee's losses through ``update`` with respect to ``phi``
(:mod:`dfn_jax.training.meta`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dfn_jax._src.checks import positive_int

MetaParams = dict[str, Any]


def preprocess_gradients(gradients: jax.Array, p: float = 10.0) -> jax.Array:
    """The paper's gradient preprocessing (appendix A): ``[..., 2]`` features per coordinate,
    ``(log|g| / p, sign g)`` if ``|g| >= e^-p`` else ``(-1, e^p g)``."""
    if p <= 0:
        raise ValueError(f"`p` must be positive, got {p!r}.")
    g = jnp.asarray(gradients)
    big = jnp.abs(g) >= math.exp(-p)
    safe = jnp.where(big, jnp.abs(g), 1.0)  # no log(0) on the branch that is not taken
    first = jnp.where(big, jnp.log(safe) / p, -1.0)
    second = jnp.where(big, jnp.sign(g), math.exp(p) * g)
    return jnp.stack([first, second], axis=-1)


def init_meta_params(
    key: jax.Array,
    *,
    hidden_size: int = 20,
    num_layers: int = 2,
    preprocess: bool = True,
    zero_output: bool = False,
) -> MetaParams:
    """The meta-parameters ``phi``: per LSTM layer ``w [in + H, 4H]`` (input and recurrent
    weights, gates i, f, g, o) and ``b [4H]``, then ``out_w [H, 1]``, ``out_b [1]``.

    Initialisation: uniform ``+-1/sqrt(H)`` for the LSTM (PyTorch's and Sonnet's), forget-gate
    bias 1, output weights ``N(0, 0.1^2 / H)`` and bias 0 (``zero_output``: all 0, the update
    starts at 0). ``num_layers = 0`` is a linear map of the (preprocessed) gradient, the
    authors' convergence test.
    """
    positive_int(hidden_size, name="hidden_size")
    positive_int(num_layers, name="num_layers", minimum=0)
    n_in = 2 if preprocess else 1
    keys = jax.random.split(key, num_layers + 1)
    layers = []
    for index in range(num_layers):
        fan = n_in if index == 0 else hidden_size
        bound = 1.0 / math.sqrt(hidden_size)
        w = jax.random.uniform(keys[index], (fan + hidden_size, 4 * hidden_size), minval=-bound,
                               maxval=bound)  # fmt: skip
        b = jnp.zeros((4 * hidden_size,)).at[hidden_size : 2 * hidden_size].set(1.0)
        layers.append({"w": w, "b": b})
    top = hidden_size if num_layers else n_in
    if zero_output:
        out_w = jnp.zeros((top, 1))
    else:
        out_w = 0.1 / math.sqrt(top) * jax.random.normal(keys[-1], (top, 1))
    return {"lstm": layers, "out_w": out_w, "out_b": jnp.zeros((1,))}


class LSTMOptimizerState(NamedTuple):
    """Per parameter leaf, the LSTM state of each coordinate: ``h`` and ``c``, each
    ``[num_layers, size, H]`` (``size``: the leaf's number of coordinates; a scalar 0 when the
    optimizer has no LSTM layers)."""

    h: Any
    c: Any


def _lstm_step(meta_params: MetaParams, x: jax.Array, h: jax.Array, c: jax.Array):
    """One step for ``n`` coordinates: ``x [n, in]``, ``h, c [L, n, H]`` -> ``update [n]``,
    new ``h, c``."""
    new_h, new_c = [], []
    inputs = x
    for layer, params in enumerate(meta_params["lstm"]):
        gates = jnp.concatenate([inputs, h[layer]], axis=-1) @ params["w"] + params["b"][None]
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        cell = jax.nn.sigmoid(f) * c[layer] + jax.nn.sigmoid(i) * jnp.tanh(g)
        inputs = jax.nn.sigmoid(o) * jnp.tanh(cell)
        new_h.append(inputs)
        new_c.append(cell)
    out = inputs @ meta_params["out_w"] + meta_params["out_b"][None]
    if new_h:
        h, c = jnp.stack(new_h), jnp.stack(new_c)
    return out[:, 0], h, c


def lstm_optimizer(
    meta_params: MetaParams,
    *,
    output_scale: float = 1.0,
    preprocess: bool = True,
    preprocess_p: float = 10.0,
) -> optax.GradientTransformation:
    """The learned optimizer with meta-parameters ``meta_params`` as an optax transform.

    Args:
      meta_params: from :func:`init_meta_params` or a meta-trained checkpoint.
      output_scale: multiplies the LSTM's output (the paper: 0.1 on MNIST, 1 on quadratics).
      preprocess: feed the preprocessed gradient (two features) instead of the raw gradient.
      preprocess_p: ``p`` of the preprocessing (10 in the paper; 5 in the authors' code).

    The update of a coordinate depends only on that coordinate's gradient history.
    """
    layers = meta_params["lstm"]
    n_in = 2 if preprocess else 1
    expected = meta_params["out_w"].shape[0] if not layers else layers[0]["w"].shape[0]
    hidden = layers[0]["w"].shape[1] // 4 if layers else 0
    if layers and expected != n_in + hidden:
        raise ValueError(
            f"`meta_params` read {expected - hidden} input features per coordinate but "
            f"preprocess={preprocess} gives {n_in}; use the preprocess setting it was trained with."
        )
    if not layers and expected != n_in:
        raise ValueError(
            f"`meta_params` (no LSTM layers) read {expected} features; preprocess={preprocess} "
            f"gives {n_in}."
        )

    dtype = jnp.asarray(meta_params["out_w"]).dtype  # the LSTM computes in phi's dtype

    def init(params):
        def zeros(leaf):
            if not layers:  # no recurrent state; a scalar keeps the state checkpointable
                return jnp.zeros((), dtype)
            return jnp.zeros((len(layers), jnp.size(leaf), hidden), dtype)

        return LSTMOptimizerState(h=jax.tree.map(zeros, params), c=jax.tree.map(zeros, params))

    def update(updates, state, params=None):
        del params

        def leaf_update(g, h, c):
            flat = jnp.reshape(g, (-1,)).astype(dtype)
            x = preprocess_gradients(flat, preprocess_p) if preprocess else flat[:, None]
            out, h, c = _lstm_step(meta_params, x, h, c)
            return (output_scale * out).reshape(jnp.shape(g)).astype(jnp.result_type(g)), h, c

        triples = jax.tree.map(leaf_update, updates, state.h, state.c)
        treedef = jax.tree.structure(updates)
        leaves = treedef.flatten_up_to(triples)
        new_updates = treedef.unflatten([t[0] for t in leaves])
        new_h = treedef.unflatten([t[1] for t in leaves])
        new_c = treedef.unflatten([t[2] for t in leaves])
        return new_updates, LSTMOptimizerState(h=new_h, c=new_c)

    return optax.GradientTransformation(init, update)
