"""The HyperNetworks paper's character-level language model (v4 Sec. 4.4, appendix A.2).

One recurrent layer (LSTM, LN LSTM, HyperLSTM or LN HyperLSTM) over one-hot characters (or an
embedding) and a softmax over the vocabulary; dropout on the inputs and outputs and recurrent
dropout in the cell. With one-hot inputs and a 50-symbol vocabulary the parameter counts are the
paper's exactly: LSTM 1000 4,254,050; LN LSTM 4,264,050; HyperLSTM 1000 (hyper cell 128,
``N_z`` 4) 4,911,874; LN HyperLSTM 4,923,154.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from dfn_jax._src.checks import choice, positive_int, rate
from dfn_jax.layers.hyper_lstm import HyperLSTMCell, LSTMCell, dropout
from dfn_jax.ops import token_nll

CELLS = ("lstm", "hyper")


@dataclasses.dataclass(frozen=True)
class CharLMConfig:
    """Args:
    vocab_size: symbols (50 for character-level PTB).
    cell: ``"lstm"`` or ``"hyper"`` (HyperLSTM).
    layer_norm: layer-normalised cell (LN LSTM, LN HyperLSTM).
    hidden_features: the main cell's units ``N_h``.
    hyper_features, z_dim: the HyperLSTM's hyper cell units ``N_hat`` and embedding size ``N_z``.
    embedding_features: 0 for one-hot inputs (the paper's counts), else an embedding size.
    input_dropout, output_dropout, recurrent_dropout: dropout rates (the paper: keep 0.9).
    forget_bias, epsilon, hyper_first: see :mod:`dfn_jax.layers.hyper_lstm`.
    unroll: ``lax.scan``'s unroll over time steps.
    """

    vocab_size: int = 50
    cell: str = "hyper"
    layer_norm: bool = False
    hidden_features: int = 1000
    hyper_features: int = 128
    z_dim: int = 4
    embedding_features: int = 0
    input_dropout: float = 0.1
    output_dropout: float = 0.1
    recurrent_dropout: float = 0.1
    forget_bias: float = 0.0
    epsilon: float = 1e-5
    hyper_first: bool = False
    unroll: int = 1

    def __post_init__(self):
        choice(self.cell, CELLS, name="cell")
        for name in ("vocab_size", "hidden_features", "hyper_features", "z_dim", "unroll"):
            positive_int(getattr(self, name), name=name)
        positive_int(self.embedding_features, name="embedding_features", minimum=0)
        for name in ("input_dropout", "output_dropout", "recurrent_dropout"):
            rate(getattr(self, name), name=name)


class CharLM(nnx.Module):
    """``tokens [B, T]`` and a carried state -> per-token logits or negative log-likelihoods."""

    def __init__(self, config: CharLMConfig = CharLMConfig(), *, rngs: nnx.Rngs):
        self.config = config
        c = config
        in_features = c.embedding_features or c.vocab_size
        self.embed = (
            nnx.Embed(c.vocab_size, c.embedding_features, rngs=rngs)
            if c.embedding_features
            else None
        )
        common = dict(
            layer_norm=c.layer_norm,
            forget_bias=c.forget_bias,
            dropout_rate=c.recurrent_dropout,
            epsilon=c.epsilon,
            rngs=rngs,
        )
        if c.cell == "hyper":
            self.cell = HyperLSTMCell(
                in_features,
                c.hidden_features,
                hyper_features=c.hyper_features,
                z_dim=c.z_dim,
                hyper_first=c.hyper_first,
                **common,
            )
        else:
            self.cell = LSTMCell(in_features, c.hidden_features, **common)
        self.output = nnx.Linear(c.hidden_features, c.vocab_size, rngs=rngs)

    def initial_state(self, batch_size: int):
        return self.cell.initial_state(batch_size)

    def _inputs(self, tokens: jax.Array) -> jax.Array:
        tokens = jnp.asarray(tokens)
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(
                f"`tokens` must be integer ids of shape [B, T], got {tokens.dtype} "
                f"{tuple(tokens.shape)}."
            )
        if self.embed is not None:
            return self.embed(tokens)
        return jax.nn.one_hot(tokens, self.config.vocab_size, dtype=jnp.float32)

    def _run(self, tokens, state, key, readout, extra=None):
        """Scans the cell over time; ``readout(h_t [B, N_h], extra_t) -> y_t`` (``extra``:
        ``[B, T, ...]`` or ``None``); returns ``(y [B, T, ...], state)``."""
        c = self.config
        x = self._inputs(tokens)
        keys = (None,) * 3 if key is None else tuple(jax.random.split(key, 3))
        x = dropout(x, c.input_dropout, keys[0])
        steps = x.shape[1]
        step_keys = None if key is None else jax.random.split(keys[1], steps)

        def step(carry, inputs):
            t, x_t, k_t, e_t = inputs
            carry, h = self.cell(carry, x_t, key=k_t)
            out_key = None if key is None else jax.random.fold_in(keys[2], t)
            return carry, readout(dropout(h, c.output_dropout, out_key), e_t)

        by_time = None if extra is None else jnp.moveaxis(extra, 1, 0)
        xs = (jnp.arange(steps), jnp.moveaxis(x, 1, 0), step_keys, by_time)
        state, ys = jax.lax.scan(step, state, xs, unroll=c.unroll)
        return jax.tree.map(lambda y: jnp.moveaxis(y, 0, 1), ys), state

    def __call__(self, tokens: jax.Array, state, *, key: jax.Array | None = None):
        """``(logits [B, T, V], new state)``; ``key`` turns the dropouts on (training)."""
        return self._run(tokens, state, key, lambda h, _: self.output(h))

    def nll(self, tokens: jax.Array, targets: jax.Array, state, *, key: jax.Array | None = None):
        """``(-log p(targets) [B, T] in nats, new state)``, computed step by step so that a
        long stream never holds ``[B, T, V]`` logits."""
        targets = jnp.asarray(targets)
        if targets.shape != jnp.shape(tokens):
            raise ValueError(
                f"`targets` must have the shape of `tokens` {jnp.shape(tokens)}, got "
                f"{targets.shape}."
            )
        return self._run(tokens, state, key, lambda h, y: token_nll(self.output(h), y), targets)

    def sample(
        self, prompt: jax.Array, num_tokens: int, *, key: jax.Array, temperature: float = 1.0
    ) -> jax.Array:
        """Continues each row of ``prompt [B, T]`` (token ids) with ``num_tokens`` sampled ids
        (``temperature`` 0: the most likely one); returns ``[B, num_tokens]``. No dropout."""
        positive_int(num_tokens, name="num_tokens")
        prompt = jnp.asarray(prompt)
        logits, state = self(prompt, self.initial_state(prompt.shape[0]))
        first = logits[:, -1]

        def pick(logits_t, k):
            if temperature == 0:
                return jnp.argmax(logits_t, -1).astype(jnp.int32)
            return jax.random.categorical(k, logits_t / temperature).astype(jnp.int32)

        def step(carry, k):
            state, logits_t = carry
            token = pick(logits_t, k)
            out, state = self(token[:, None], state)
            return (state, out[:, 0]), token

        keys = jax.random.split(key, num_tokens)
        _, tokens = jax.lax.scan(step, (state, first), keys)
        return tokens.T
