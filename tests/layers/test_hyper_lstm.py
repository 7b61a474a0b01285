"""LSTM, LN LSTM and HyperLSTM cells (HyperNetworks v4 eq. 10-13) and the character LM."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dfn_jax import ops
from dfn_jax.layers.hyper_lstm import HyperLSTMCell, LSTMCell
from dfn_jax.models import count_params
from dfn_jax.models.hypernet import CharLM, CharLMConfig


@pytest.mark.parametrize(
    "cell,layer_norm,expected",
    [
        ("lstm", False, 4_254_050),
        ("lstm", True, 4_264_050),
        ("hyper", False, 4_911_874),
        ("hyper", True, 4_923_154),
    ],
)
def test_paper_parameter_counts(cell, layer_norm, expected):
    config = CharLMConfig(cell=cell, layer_norm=layer_norm)
    assert count_params(CharLM(config, rngs=nnx.Rngs(0))) == expected


def test_initial_scalings_are_one_tenth_and_the_generated_bias_zero():
    cell = HyperLSTMCell(5, 8, hyper_features=6, z_dim=3, rngs=nnx.Rngs(0))
    hidden = jax.random.normal(jax.random.key(0), (2, 6))
    d_h, d_x, bias = cell.scalings(hidden)
    np.testing.assert_allclose(d_h, 0.1, rtol=1e-6)
    np.testing.assert_allclose(d_x, 0.1, rtol=1e-6)
    np.testing.assert_allclose(bias, 0.0, atol=1e-7)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_hyper_lstm_with_unit_scalings_and_no_generated_bias_is_the_lstm(layer_norm):
    n_in, n_h, n_z = 5, 8, 3
    hyper = HyperLSTMCell(
        n_in, n_h, hyper_features=6, z_dim=n_z, layer_norm=layer_norm, rngs=nnx.Rngs(0)
    )
    lstm = LSTMCell(n_in, n_h, layer_norm=layer_norm, rngs=nnx.Rngs(1))
    # d = W_z z with z = its bias (weights 0): W_z = 1 / N_z gives d = 1; W_bz = 0: b = b_0.
    hyper.w_hz[...] = jnp.full_like(hyper.w_hz[...], 1.0 / n_z)
    hyper.w_xz[...] = jnp.full_like(hyper.w_xz[...], 1.0 / n_z)
    hyper.w_hh[...] = jnp.zeros_like(hyper.w_hh[...])
    hyper.w_hx[...] = jnp.zeros_like(hyper.w_hx[...])
    lstm.w_x[...], lstm.w_h[...] = hyper.w_x[...], hyper.w_h[...]
    lstm.bias[...] = jax.random.normal(jax.random.key(2), lstm.bias[...].shape)
    hyper.b_0[...] = lstm.bias[...].reshape(4, n_h)
    if layer_norm:
        nnx.update(lstm.norms, nnx.state(hyper.norms))
    xs = jax.random.normal(jax.random.key(3), (6, 2, n_in))
    s_hyper, s_lstm = hyper.initial_state(2), lstm.initial_state(2)
    for x in xs:
        s_hyper, h_hyper = hyper(s_hyper, x)
        s_lstm, h_lstm = lstm(s_lstm, x)
        np.testing.assert_allclose(h_hyper, h_lstm, rtol=1e-5, atol=1e-6)


def test_hyper_first_is_the_authors_code_ordering():
    paper = HyperLSTMCell(5, 8, hyper_features=6, rngs=nnx.Rngs(0))
    code = HyperLSTMCell(5, 8, hyper_features=6, hyper_first=True, rngs=nnx.Rngs(0))
    for cell in (paper, code):  # make the embeddings depend on the hyper state
        cell.w_hx[...] = jax.random.normal(jax.random.key(1), cell.w_hx[...].shape)
    x = jax.random.normal(jax.random.key(2), (2, 5))
    _, h_paper = paper(paper.initial_state(2), x)
    _, h_code = code(code.initial_state(2), x)
    assert not np.allclose(h_paper, h_code)


def test_recurrent_dropout_needs_a_key_and_draws_fresh_masks():
    cell = LSTMCell(5, 64, dropout_rate=0.5, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 5))
    state = cell.initial_state(2)
    plain = cell(state, x)[1]
    np.testing.assert_array_equal(plain, cell(state, x)[1])
    a, b = cell(state, x, key=jax.random.key(1))[1], cell(state, x, key=jax.random.key(2))[1]
    assert not np.allclose(a, plain) and not np.allclose(a, b)


@pytest.mark.parametrize("cell", ["lstm", "hyper"])
def test_state_carried_across_segments_equals_one_long_unroll(cell):
    config = CharLMConfig(cell=cell, hidden_features=16, hyper_features=8, vocab_size=7)
    model = CharLM(config, rngs=nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(0), (3, 13), 0, 7)
    targets = jnp.roll(tokens, -1, axis=1)
    whole, end = model.nll(tokens, targets, model.initial_state(3))
    first, state = model.nll(tokens[:, :5], targets[:, :5], model.initial_state(3))
    second, state = model.nll(tokens[:, 5:], targets[:, 5:], state)
    np.testing.assert_allclose(jnp.concatenate([first, second], 1), whole, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state, end)
    logits, _ = model(tokens, model.initial_state(3))
    np.testing.assert_allclose(ops.token_nll(logits, targets), whole, rtol=1e-5, atol=1e-5)


def test_bits_per_character_of_known_distributions():
    uniform = jnp.zeros((4, 10, 50))
    targets = jnp.zeros((4, 10), jnp.int32)
    np.testing.assert_allclose(ops.bits_per_character(uniform, targets), math.log2(50), rtol=1e-6)
    # p = (1/2, 1/4, 1/4): targets 0 and 1 cost 1 and 2 bits, mean 1.5.
    logits = jnp.log(jnp.asarray([[[0.5, 0.25, 0.25], [0.5, 0.25, 0.25]]]))
    np.testing.assert_allclose(
        ops.bits_per_character(logits, jnp.asarray([[0, 1]])), 1.5, rtol=1e-6
    )


def test_bad_inputs_are_named():
    model = CharLM(CharLMConfig(cell="lstm", hidden_features=8, vocab_size=7), rngs=nnx.Rngs(0))
    state = model.initial_state(2)
    with pytest.raises(ValueError, match="`tokens` must be integer ids of shape"):
        model(jnp.zeros((2, 3)), state)
    with pytest.raises(ValueError, match="`targets` must have the shape of `tokens`"):
        model.nll(jnp.zeros((2, 3), jnp.int32), jnp.zeros((2, 4), jnp.int32), state)
    with pytest.raises(ValueError, match="`targets` must hold integer ids"):
        ops.token_nll(jnp.zeros((2, 7)), jnp.zeros((2,)))
    with pytest.raises(ValueError, match="`cell` must be one of"):
        CharLMConfig(cell="gru")
    with pytest.raises(ValueError, match="`recurrent_dropout` must be a rate"):
        CharLMConfig(recurrent_dropout=1.0)
