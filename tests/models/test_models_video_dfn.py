"""Tests for dfn_jax.models.dfn.video: the recurrent DFN for Moving MNIST and its baseline."""

import dataclasses

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dfn_jax.models import VideoDFN, VideoDFNConfig, VideoPrediction, count_params

# Narrow widths and short clips keep CPU tests fast; the structure is the paper's.
SMALL = VideoDFNConfig(
    filter_size=3,
    encoder_features=(4, 4, 8, 8, 8),
    decoder_features=(8, 8),
    hidden_features=8,
    head_features=8,
    num_input_frames=3,
    num_output_frames=3,
)


def _small(**changes) -> VideoDFNConfig:
    return dataclasses.replace(SMALL, **changes)


def _model(config: VideoDFNConfig, seed: int = 0) -> VideoDFN:
    """A model with He-uniform kernels and zero biases drawn by NumPy.

    Eager ``nnx.Rngs`` initialisation compiles a threefry sampler per kernel shape (about a second
    each on CPU); only ``test_real_initialisation`` pays for it. Same seed and same parameter
    shapes give the same parameters whatever the other config fields.
    """
    rng = np.random.default_rng(seed)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: VideoDFN(config, rngs=nnx.Rngs(0))))

    def draw(leaf):
        if leaf.ndim == 1:
            return jnp.zeros(leaf.shape, leaf.dtype)
        limit = np.sqrt(6.0 / np.prod(leaf.shape[:-1]))  # variance 2 / fan_in
        return jnp.asarray(rng.uniform(-limit, limit, leaf.shape), leaf.dtype)

    return nnx.merge(graphdef, jax.tree.map(draw, state))


def _clip(shape, seed=0):
    # NumPy, not jax.random: eager threefry compiles cost seconds per new shape on CPU.
    return jnp.asarray(np.random.default_rng(seed).uniform(size=shape), jnp.float32)


def _abstract_params(config: VideoDFNConfig) -> int:
    return count_params(nnx.eval_shape(lambda: VideoDFN(config, rngs=nnx.Rngs(0))))


@nnx.jit
def _forward(model: VideoDFN, frames: jax.Array) -> VideoPrediction:
    return model(frames)


def _count_eqns(jaxpr) -> int:
    """Equations in a jaxpr, including those of nested sub-jaxprs (scan bodies, custom VJPs)."""
    total = 0
    for eqn in jaxpr.eqns:
        total += 1
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            total += _count_eqns(sub)
    return total


# ------------------------------------------------------------------------------------------
# Paper numbers and shapes


def test_param_counts_match_the_paper():
    assert _abstract_params(VideoDFNConfig()) == 637_361
    assert _abstract_params(VideoDFNConfig(dynamic_filter=False)) == 637_443


def test_real_initialisation():
    """``VideoDFN(config, rngs=...)`` draws He-uniform kernels and zero biases.

    An RBG key keeps this fast on CPU (threefry compiles one sampler per kernel shape); the
    initialisers are the same whatever the key's implementation.
    """
    model = VideoDFN(SMALL, rngs=nnx.Rngs(jax.random.key(0, impl="unsafe_rbg")))
    assert count_params(model) == _abstract_params(SMALL)
    for path, leaf in jax.tree.leaves_with_path(nnx.state(model, nnx.Param)):
        if leaf.ndim == 1:
            np.testing.assert_array_equal(leaf, 0.0, err_msg=str(path))
        else:
            limit = np.sqrt(6.0 / np.prod(leaf.shape[:-1]))
            assert float(jnp.abs(leaf).max()) <= limit, path
            assert float(jnp.abs(leaf).max()) > 0.5 * limit, path


def test_param_counts_of_variants():
    base = 637_361
    # ConvLSTM: one 3x3 conv (128 + 128) -> 4 * 128 replaces two 3x3 128 -> 128 convs.
    convlstm = base - 2 * (9 * 128 * 128 + 128) + 9 * 256 * 512 + 512
    assert _abstract_params(VideoDFNConfig(recurrence="convlstm")) == convlstm
    # Dynamic bias: one more output of the 1x1 filter head.
    assert _abstract_params(VideoDFNConfig(dynamic_bias=True)) == base + 128 + 1
    # RGB frames: the first conv reads 3 channels.
    assert _abstract_params(VideoDFNConfig(channels=3)) == base + 2 * 9 * 32


def test_paper_model_forward_shapes_and_range():
    config = VideoDFNConfig(num_input_frames=2, num_output_frames=2)
    model = _model(config)
    out = _forward(model, _clip((1, 4, 64, 64, 1)))
    assert out.frames.shape == (1, 2, 64, 64, 1)
    assert out.filters.shape == (1, 2, 64, 64, 81)
    assert out.frames.dtype == jnp.float32
    np.testing.assert_allclose(out.filters.sum(-1), 1.0, rtol=1e-5)
    assert 0.0 <= float(out.frames.min()) and float(out.frames.max()) <= 1.0


def test_default_config_abstract_shapes():
    model = nnx.eval_shape(lambda: VideoDFN(VideoDFNConfig(), rngs=nnx.Rngs(0)))
    frames = jax.ShapeDtypeStruct((16, 20, 64, 64, 1), jnp.float32)
    graphdef, state = nnx.split(model)
    out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, frames)
    assert out.frames.shape == (16, 10, 64, 64, 1)
    assert out.filters.shape == (16, 10, 64, 64, 81)


def test_small_model_shapes_range_and_extra_frames_ignored():
    model = _model(SMALL)
    clip = _clip((2, 8, 16, 12, 1))
    out = _forward(model, clip)
    assert out.frames.shape == (2, 3, 16, 12, 1)
    assert out.filters.shape == (2, 3, 16, 12, 9)
    assert 0.0 <= float(out.frames.min()) and float(out.frames.max()) <= 1.0
    # Only the first num_input_frames are read in closed loop.
    short = _forward(model, clip[:, :3])
    np.testing.assert_allclose(short.frames, out.frames, atol=1e-6)


@pytest.mark.parametrize(("num_input", "num_output"), [(3, 3), (2, 1), (1, 3)])
def test_matches_a_step_by_step_python_loop(num_input, num_output):
    """The batched context encoding, the warm-up scan (no decoder), the first prediction and the
    prediction scan equal the paper's 19-step loop.

    ``(2, 1)`` gives a length-1 warm-up and no prediction scan; ``(1, 3)`` no warm-up at all.
    """
    config = _small(num_input_frames=num_input, num_output_frames=num_output)
    model = _model(config)
    clip = _clip((2, num_input + num_output, 8, 8, 1), seed=1)
    out = _forward(model, clip)
    assert out.frames.shape == (2, num_output, 8, 8, 1)
    hidden = model.recurrence.initial_state(2, 4, 4)
    frame, predictions = clip[:, 0], []
    for step in range(config.num_steps):
        hidden, features = model.recurrence(hidden, model.encode(frame))
        prediction, _ = model.decode(features, frame)
        if step >= num_input - 1:
            predictions.append(prediction)
            frame = prediction
        else:
            frame = clip[:, step + 1]
    np.testing.assert_allclose(out.frames, jnp.stack(predictions, axis=1), atol=1e-5)


# ------------------------------------------------------------------------------------------
# Closed loop, teacher forcing, unrolling, predict


def test_centre_tap_logit_starts_the_filters_as_a_copy():
    clip = _clip((2, 6, 8, 8, 1), seed=5)
    # The real initialisation (``_model`` draws its own parameters).
    uniform = _forward(VideoDFN(SMALL, rngs=nnx.Rngs(0)), clip)
    centred = _forward(VideoDFN(_small(centre_tap_logit=30.0), rngs=nnx.Rngs(0)), clip)
    centre = SMALL.num_taps // 2
    assert float(uniform.filters[..., centre].min()) < 0.99
    np.testing.assert_allclose(centred.filters[..., centre], 1.0, atol=1e-5)
    # Each prediction is then a copy of the frame read: the last context frame, every time.
    last = np.broadcast_to(clip[:, 2:3], centred.frames.shape)
    np.testing.assert_allclose(centred.frames, last, atol=1e-5)


def test_closed_loop_feeds_predictions_back():
    clip = _clip((1, 6, 8, 8, 1), seed=2)
    changed = clip.at[:, 3:].set(_clip((1, 3, 8, 8, 1), seed=3))
    closed = _model(SMALL)
    a, b = _forward(closed, clip), _forward(closed, changed)
    np.testing.assert_allclose(a.frames, b.frames, atol=0)

    forced = _model(_small(teacher_forcing=True))
    a, b = _forward(forced, clip), _forward(forced, changed)
    # The first prediction reads true frame 2 only; later ones read the changed true frames.
    np.testing.assert_allclose(a.frames[:, 0], b.frames[:, 0], atol=0)
    assert float(jnp.abs(a.frames[:, 1:] - b.frames[:, 1:]).max()) > 1e-4
    # Teacher forcing with the model's own predictions as "true" frames is the closed loop.
    free = _forward(closed, clip).frames
    self_fed = clip.at[:, 3:5].set(free[:, :2])
    np.testing.assert_allclose(_forward(forced, self_fed).frames, free, atol=1e-5)
    # rollout: closed loop whatever the config says, with the filters (what evaluation uses).
    rollout = forced.rollout(clip[:, :3], 3)
    np.testing.assert_allclose(rollout.frames, free, atol=1e-5)
    np.testing.assert_allclose(rollout.frames, forced.predict(clip[:, :3], 3), atol=0)
    assert rollout.filters.shape == _forward(closed, clip).filters.shape


def test_unroll_true_matches_rolled_scan():
    clip = _clip((1, 6, 8, 8, 1), seed=4)
    rolled = _forward(_model(SMALL), clip)
    unrolled = _forward(_model(_small(unroll=True)), clip)
    np.testing.assert_allclose(rolled.frames, unrolled.frames, atol=1e-6)
    np.testing.assert_allclose(rolled.filters, unrolled.filters, atol=1e-6)


@pytest.mark.parametrize("unroll", [1, True])
def test_remat_gives_the_same_loss_and_gradients_and_recomputes(unroll):
    clip = _clip((2, 6, 8, 8, 1), seed=9)

    def loss_and_grads(config):
        graphdef, params = nnx.split(_model(config))

        def loss(p):
            return jnp.mean(nnx.merge(graphdef, p)(clip).frames ** 2)

        return jax.value_and_grad(loss)(params), jax.make_jaxpr(jax.grad(loss))(params)

    (plain, plain_grads), plain_jaxpr = loss_and_grads(_small(unroll=unroll))
    (remat, remat_grads), remat_jaxpr = loss_and_grads(_small(unroll=unroll, remat=True))
    np.testing.assert_allclose(remat, plain, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(remat_grads), jax.tree.leaves(plain_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert "checkpoint" in str(remat_jaxpr) or "remat" in str(remat_jaxpr)
    assert "checkpoint" not in str(plain_jaxpr) and "remat" not in str(plain_jaxpr)


def test_predict_rolls_out_beyond_the_training_horizon():
    model = _model(SMALL)
    clip = _clip((2, 6, 8, 8, 1), seed=5)
    rollout = nnx.jit(VideoDFN.predict, static_argnums=2)
    long = rollout(model, clip[:, :3], 7)
    assert long.shape == (2, 7, 8, 8, 1)
    np.testing.assert_allclose(long[:, :3], _forward(model, clip).frames, atol=1e-6)
    assert rollout(model, clip[:, :1], 2).shape == (2, 2, 8, 8, 1)  # no warm-up at all


def test_trace_size_does_not_grow_with_sequence_length():
    def eqns(num_frames):
        config = _small(num_input_frames=num_frames, num_output_frames=num_frames)
        graphdef, state = nnx.split(nnx.eval_shape(lambda: VideoDFN(config, rngs=nnx.Rngs(0))))
        frames = jax.ShapeDtypeStruct((1, 2 * num_frames, 8, 8, 1), jnp.float32)
        jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x).frames)(state, frames)
        return _count_eqns(jaxpr.jaxpr)

    assert eqns(10) == eqns(20)


# ------------------------------------------------------------------------------------------
# Variants


def test_baseline_outputs():
    clip = _clip((1, 6, 8, 8, 1), seed=6)
    out = _forward(_model(_small(dynamic_filter=False)), clip)
    assert out.filters is None
    assert out.frames.shape == (1, 3, 8, 8, 1)
    assert 0.0 < float(out.frames.min()) and float(out.frames.max()) < 1.0
    raw = _forward(_model(_small(dynamic_filter=False, baseline_output="identity")), clip)
    assert raw.frames.shape == (1, 3, 8, 8, 1)


def test_convlstm_variant_runs():
    config = _small(recurrence="convlstm", hidden_features=6)
    out = _forward(_model(config), _clip((2, 6, 8, 8, 1), seed=7))
    assert out.frames.shape == (2, 3, 8, 8, 1)
    assert bool(jnp.all(jnp.isfinite(out.frames)))


def test_rgb_frames_dynamic_bias_and_bfloat16():
    config = _small(channels=3, dynamic_bias=True, dtype="bfloat16")
    out = _forward(_model(config), _clip((1, 6, 8, 10, 3), seed=8))
    assert out.frames.shape == (1, 3, 8, 10, 3)
    assert out.frames.dtype == jnp.float32
    assert out.filters.shape == (1, 3, 8, 10, 9)
    assert bool(jnp.all(jnp.isfinite(out.frames)))


# ------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (dict(filter_size=4), "filter_size"),
        (dict(filter_size=0), "filter_size"),
        (dict(recurrence="gru"), "recurrence"),
        (dict(hidden_features=16), "hidden_features"),
        (dict(encoder_features=(8,)), "encoder_features"),
        (dict(decoder_features=()), "decoder_features"),
        (dict(decoder_features=(8, 0)), r"decoder_features\[1\]"),
        (dict(num_output_frames=0), "num_output_frames"),
        (dict(unroll=0), "unroll"),
        (dict(remat="yes"), "remat"),
        (dict(dtype="int32"), "dtype"),
        (dict(baseline_output="tanh"), "baseline_output"),
    ],
)
def test_config_errors(changes, match):
    with pytest.raises(ValueError, match=match):
        _small(**changes)


def test_config_accepts_lists_and_dtype_strings():
    config = _small(encoder_features=[4, 4, 8], hidden_features=8, dtype="bfloat16")
    assert config.encoder_features == (4, 4, 8)
    assert config.dtype == jnp.bfloat16
    hash(config)  # static module metadata must be hashable


def test_frames_errors():
    model = _model(SMALL)
    with pytest.raises(ValueError, match=r"at least 3 frames"):
        model(_clip((1, 2, 8, 8, 1)))
    with pytest.raises(ValueError, match=r"at least 6 frames"):
        _model(_small(teacher_forcing=True))(_clip((1, 5, 8, 8, 1)))
    with pytest.raises(ValueError, match="channels"):
        model(_clip((1, 6, 8, 8, 2)))
    with pytest.raises(ValueError, match="even"):
        model(_clip((1, 6, 9, 8, 1)))
    with pytest.raises(ValueError, match=r"\[B, T, H, W, C\]"):
        model(_clip((6, 8, 8, 1)))
    with pytest.raises(ValueError, match="floating"):
        model(jnp.zeros((1, 6, 8, 8, 1), jnp.uint8))
    with pytest.raises(ValueError, match="num_future"):
        model.predict(_clip((1, 3, 8, 8, 1)), 0)
    with pytest.raises(ValueError, match="config"):
        VideoDFN({"filter_size": 9}, rngs=nnx.Rngs(0))


# ------------------------------------------------------------------------------------------
# Training


def _bce(predictions, targets, eps=1e-7):
    p = jnp.clip(predictions, eps, 1.0 - eps)
    return -jnp.mean(targets * jnp.log(p) + (1.0 - targets) * jnp.log1p(-p))


@pytest.mark.parametrize("dynamic_filter", [True, False])
def test_adam_steps_reduce_bce(dynamic_filter):
    config = _small(dynamic_filter=dynamic_filter)
    graphdef, params = nnx.split(_model(config))
    # A blob moving right one pixel per frame: learnable by both models.
    frames = np.zeros((2, 6, 8, 8, 1), np.float32)
    for t in range(6):
        frames[0, t, 3:5, t : t + 2] = 1.0
        frames[1, t, 2:4, t + 1 : t + 3] = 1.0
    frames = jnp.asarray(frames)
    targets = frames[:, 3:]
    optimizer = optax.adam(1e-2)

    def loss_fn(params):
        return _bce(nnx.merge(graphdef, params)(frames).frames, targets)

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state = optimizer.init(params)
    losses = []
    for _ in range(8):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses
