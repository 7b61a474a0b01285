"""Metrics of sequence models: per-token negative log-likelihood and bits per character.

``bits_per_character`` is the HyperNetworks paper's metric (and every character-level language
model's): the mean over predicted characters of ``-log2 p(target)``, i.e. the mean cross-entropy
in nats divided by ``ln 2``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from dfn_jax._src import checks as _checks


def token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """``-log softmax(logits)[target]`` in nats, per token: ``logits [..., V]``,
    ``targets [...]`` integer ids in ``[0, V)`` -> ``[...]``."""
    logits = _checks.floating_array(logits, name="logits")
    targets = jnp.asarray(targets)
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise ValueError(f"`targets` must hold integer ids, got dtype {targets.dtype}.")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"`logits` must have shape [*targets.shape, V] = [{', '.join(map(str, targets.shape))}"
            f", V], got {tuple(logits.shape)}."
        )
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(log_p, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]


def bits_per_character(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean over all tokens of ``-log2 p(target)`` (a scalar); arguments as :func:`token_nll`."""
    return jnp.mean(token_nll(logits, targets)) / math.log(2.0)
