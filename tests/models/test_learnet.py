"""The learnet family (Bertinetto et al. 2016) and its siamese baselines: shapes, episode score
matrices, parameter parity, a training step, errors."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from dfn_jax.layers.factorized import FactorizedConv
from dfn_jax.models import count_params
from dfn_jax.models.learnet import (
    VARIANTS,
    Learnet,
    LearnetConfig,
    Siamese,
    SiameseLearnet,
    SingleStreamLearnet,
    learnet_model,
    learnet_param_count,
    matched_siamese_width,
    scaled_channels,
)
from dfn_jax.models.learnet.omniglot import PredictedConv

# Small enough that every variant compiles in a second or two.
# Baseline widths given, so that building a baseline does not search for the matched width.
SMALL = LearnetConfig(
    channels=(8, 8, 16, 16),
    learnet_channels=(4, 4, 8, 8),
    embedding_dim=16,
    learnet_features=16,
    siamese_width=8,
    unshared_width=6,
)
LEARNETS = ("learnet", "siamese_learnet", "learnet_unfactorised")


def _images(shape, seed):
    # NumPy, not jax.random: eager threefry compiles cost seconds per new shape on CPU.
    return jnp.asarray(np.random.default_rng(seed).uniform(size=shape) > 0.8, jnp.float32)


CONFIGS = {
    **{variant: (variant, SMALL) for variant in VARIANTS},
    "learnet_two_layers_and_linear": (
        "learnet",
        dataclasses.replace(SMALL, predicted_layers=(0, 2), predict_linear=True, rank=6),
    ),
    "siamese_learnet_linear_only": (
        "siamese_learnet",
        dataclasses.replace(SMALL, predicted_layers=(), predict_linear=True),
    ),
    "learnet_unfactorised_linear": (
        "learnet_unfactorised",
        dataclasses.replace(SMALL, predicted_layers=(3,), predict_linear=True),
    ),
    "learnet_reading_the_pupil": (
        "learnet",
        dataclasses.replace(SMALL, predicted_layers=(3,), learnet_input="pupil"),
    ),
    "learnet_l1_score": (
        "learnet",
        dataclasses.replace(SMALL, predicted_layers=(3,), learnet_input="pupil", score="l1"),
    ),
    "learnet_exemplar_template": (
        "learnet",
        dataclasses.replace(
            SMALL, predicted_layers=(3,), learnet_input="pupil", exemplar_template=True
        ),
    ),
    "siamese_learnet_reading_the_pupil": (
        "siamese_learnet",
        dataclasses.replace(SMALL, predicted_layers=(2,), learnet_input="pupil"),
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_score_matrix_equals_the_scores_of_all_pairs(name):
    variant, config = CONFIGS[name]
    model = learnet_model(variant, config, rngs=nnx.Rngs(1))
    queries, exemplars = _images((3, 28, 28), 2), _images((4, 28, 28, 1), 3)

    @nnx.jit
    def scores(model, queries, exemplars):
        pairs = model(jnp.repeat(queries, 4, axis=0), jnp.tile(exemplars, (3, 1, 1, 1)))
        single = model(queries[1:2], exemplars[2:3])  # one pair on its own
        return model.score_matrix(queries, exemplars), pairs, single

    # Queries without a channel axis, exemplars with one: both layouts are accepted.
    matrix, pairs, single = scores(model, queries, exemplars)
    assert matrix.shape == (3, 4) and pairs.shape == (12,) and pairs.dtype == jnp.float32
    assert np.all(np.isfinite(pairs))
    np.testing.assert_allclose(matrix, pairs.reshape(3, 4), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(matrix[1, 2], single[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", LEARNETS[:2])
def test_score_matrix_predicts_once_per_episode_without_a_loop(variant, monkeypatch):
    model = learnet_model(variant, SMALL, rngs=nnx.Rngs(0))
    calls, original = [], Learnet.__call__

    def counting(self, exemplars):
        calls.append(exemplars.shape[0])
        return original(self, exemplars)

    monkeypatch.setattr(Learnet, "__call__", counting)

    def equations(n):
        queries, exemplars = _images((2, 28, 28), 0), _images((n, 28, 28), 1)
        jaxpr = jax.make_jaxpr(lambda q, z: model.score_matrix(q, z))(queries, exemplars)
        return len(jaxpr.jaxpr.eqns)

    assert equations(2) == equations(5)  # the traced program does not grow with N
    assert calls == [2, 5]  # one learnet call per episode, on all N exemplars at once


@pytest.mark.parametrize("variant", VARIANTS)
def test_same_seed_same_model_and_scores(variant):
    query, exemplar = _images((2, 28, 28), 4), _images((2, 28, 28), 5)
    a = learnet_model(variant, SMALL, rngs=nnx.Rngs(7))
    b = learnet_model(variant, SMALL, rngs=nnx.Rngs(7))
    c = learnet_model(variant, SMALL, rngs=nnx.Rngs(8))
    for x, y in zip(jax.tree.leaves(nnx.state(a)), jax.tree.leaves(nnx.state(b)), strict=True):
        np.testing.assert_array_equal(x, y)
    score = nnx.jit(lambda model: model(query, exemplar))  # one compilation: same graph
    np.testing.assert_array_equal(score(a), score(b))
    np.testing.assert_array_equal(score(a), score(a))
    assert not np.array_equal(score(a), score(c))


def test_default_baselines_match_the_learnets_parameter_count():
    counts = {variant: learnet_param_count(variant) for variant in VARIANTS}
    learnet = counts["learnet"]
    assert counts["siamese_learnet"] == learnet  # distance (a, b) vs score head (v, c): D + 1
    for baseline in ("siamese", "siamese_unshared"):
        assert abs(counts[baseline] - learnet) / learnet < 0.05, (baseline, counts)
    assert counts == {  # documented in the module docstring
        "siamese": 101_529,
        "siamese_unshared": 99_769,
        "learnet": 99_249,
        "siamese_learnet": 99_249,
        "learnet_unfactorised": 677_521,
    }
    assert matched_siamese_width() == 39 and matched_siamese_width(variant="siamese_unshared") == 27


def test_a_wider_config_is_matched_too():
    config = LearnetConfig(channels=(48, 48, 96, 96), learnet_channels=(32, 32, 64, 64))
    learnet = learnet_param_count("learnet", config)
    for baseline in ("siamese", "siamese_unshared"):
        assert abs(learnet_param_count(baseline, config) - learnet) / learnet < 0.05


def test_matched_width_is_the_closest_width():
    target = 50_000
    width = matched_siamese_width(SMALL, "siamese", target=target)  # ignores SMALL.siamese_width

    def gap(w):
        return abs(
            learnet_param_count("siamese", dataclasses.replace(SMALL, siamese_width=w)) - target
        )

    assert gap(width) <= gap(width - 1) and gap(width) <= gap(width + 1)
    assert scaled_channels(SMALL.channels, width) == (width, width, 2 * width, 2 * width)


def test_counts_from_shapes_equal_a_built_models_and_widths_are_honoured():
    config = dataclasses.replace(SMALL, siamese_width=5)
    model = nnx.eval_shape(lambda: learnet_model("siamese", config, rngs=nnx.Rngs(0)))
    assert isinstance(model, Siamese) and model.width == 5
    assert [conv.out_features for conv in model.embedding.convs] == [5, 5, 10, 10]
    assert count_params(model) == learnet_param_count("siamese", config)
    learnet = learnet_model("learnet", SMALL, rngs=nnx.Rngs(0))
    assert count_params(learnet) == learnet_param_count("learnet", SMALL)


def test_unfactorised_learnet_predicts_whole_kernels_with_a_bigger_learnet():
    config = LearnetConfig()
    factorised = nnx.eval_shape(lambda: learnet_model("learnet", config, rngs=nnx.Rngs(0)))
    whole = nnx.eval_shape(lambda: learnet_model("learnet_unfactorised", config, rngs=nnx.Rngs(0)))
    assert isinstance(factorised.pupil.convs[1], FactorizedConv)
    assert isinstance(whole.pupil.convs[1], PredictedConv)
    assert factorised.pupil.predicted_shapes == ((3, 3, 32),)
    assert whole.pupil.predicted_shapes == ((3, 3, 32, 32),)
    f = config.learnet_features
    head = (f + 1) * 3 * 3 * 32
    assert count_params(factorised.learnet) - count_params(factorised.learnet.trunk) == head
    assert count_params(whole.learnet) - count_params(whole.learnet.trunk) == head * 32
    assert count_params(whole.learnet) > 10 * count_params(factorised.learnet)
    # The pupil loses the factorised projections [32, 32] and [32, 32] and keeps the bias.
    assert count_params(factorised.pupil) - count_params(whole.pupil) == 2 * 32 * 32


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_jitted_training_step_lowers_the_loss(variant):
    model = learnet_model(variant, SMALL, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    optimizer = optax.adam(3e-3)
    opt_state = optimizer.init(params)
    query, exemplar = _images((16, 28, 28), 10), _images((16, 28, 28), 11)
    labels = jnp.asarray(np.random.default_rng(12).integers(0, 2, 16), jnp.float32)

    def loss_fn(params):
        scores = nnx.merge(graphdef, params)(query, exemplar)
        return optax.sigmoid_binary_cross_entropy(scores, labels).mean()

    @jax.jit
    def step(params, opt_state):
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(12):
        params, opt_state, loss = step(params, opt_state)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses


def test_errors_name_the_argument_and_the_expected_shape():
    model = learnet_model("learnet", SMALL, rngs=nnx.Rngs(0))
    good = _images((2, 28, 28), 0)
    with pytest.raises(ValueError, match=r"`variant` must be one of .*'siamese'"):
        learnet_model("hypernet", SMALL, rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError, match=r"`query` must have shape \[B, 28, 28\] or \[B, 28, 28, 1\]"
    ):
        model(good[:, :20], good)
    with pytest.raises(ValueError, match=r"`exemplar` must have shape .* got \(2, 28, 28, 3\)"):
        model(good, jnp.repeat(good[..., None], 3, axis=-1))
    with pytest.raises(ValueError, match="same batch size B, got 2 and 1"):
        model(good, good[:1])
    with pytest.raises(ValueError, match=r"`exemplars` must have shape \[B, 28, 28\]"):
        model.score_matrix(good, good[0])
    with pytest.raises(ValueError, match="`query` must be a floating-point array"):
        model(good.astype(jnp.uint8), good)
    with pytest.raises(ValueError, match="`predicted_layers` must be distinct indices in 0..3"):
        LearnetConfig(predicted_layers=(4,))
    with pytest.raises(ValueError, match="`image_size` 8 is too small for 4 2x2 max-pools"):
        LearnetConfig(image_size=8)
    with pytest.raises(ValueError, match="`factorized_implementation` must be one of"):
        LearnetConfig(factorized_implementation="loop")
    with pytest.raises(ValueError, match="A learnet must predict something"):
        SingleStreamLearnet(dataclasses.replace(SMALL, predicted_layers=()), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="`variant` must be one of"):
        matched_siamese_width(SMALL, "learnet")
    with pytest.raises(ValueError, match="`score` must be one of"):
        LearnetConfig(score="cosine")
    with pytest.raises(ValueError, match="`learnet_input` must be one of"):
        LearnetConfig(learnet_input="exemplar")
    with pytest.raises(ValueError, match=r'`learnet_input="pupil"` .* predicts the first'):
        LearnetConfig(learnet_input="pupil", predicted_layers=(0, 3))
    with pytest.raises(ValueError, match=r'`exemplar_template=True` .* `learnet_input="pupil"`'):
        LearnetConfig(exemplar_template=True, predicted_layers=(3,))
    with pytest.raises(ValueError, match=r"features at the first predicted layer \(3x3"):
        LearnetConfig(
            learnet_input="pupil", exemplar_template=True, kernel_size=5, predicted_layers=(3,)
        )


def test_a_learnet_reading_the_pupil_predicts_from_the_exemplars_pupil_features():
    """``learnet_input="pupil"``: no convnet of its own; one linear layer reads the exemplar's
    features from the pupil's blocks before the predicted one (the query's blocks too)."""
    config = dataclasses.replace(SMALL, predicted_layers=(2,), learnet_input="pupil")
    model = learnet_model("learnet", config, rngs=nnx.Rngs(0))
    assert isinstance(model.learnet.trunk, nnx.Linear)
    assert model.learnet.trunk.in_features == 7 * 7 * 8  # two blocks: 28 -> 7, 8 channels
    exemplar = _images((2, 28, 28), 4)
    expected = model.learnet(model.pupil.prefix(exemplar[..., None]))
    for got, want in zip(model.predict_parameters(exemplar), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    own = learnet_param_count("learnet", dataclasses.replace(config, learnet_input="image"))
    assert learnet_param_count("learnet", config) == count_params(model) != own


def test_lists_in_a_config_become_tuples_and_siamese_learnet_shares_the_prediction():
    config = LearnetConfig(channels=[8, 8, 16, 16], learnet_channels=[4, 4, 8, 8])
    assert config.channels == (8, 8, 16, 16) and hash(config)
    model = SiameseLearnet(dataclasses.replace(config, embedding_dim=8), rngs=nnx.Rngs(0))
    exemplar = _images((2, 28, 28), 1)
    # Scoring an exemplar against itself: both streams use the same predicted embedding, so the
    # weighted L1 distance is 0 and the score is the bias.
    np.testing.assert_allclose(model(exemplar, exemplar), model.distance.bias[...], atol=1e-6)


def test_the_l1_score_is_the_weighted_distance_to_a_predicted_centre():
    """``score="l1"``: the learnet's last output is the centre ``t(z)``, and the score is
    :class:`WeightedL1` between the query's pupil embedding and it."""
    config = dataclasses.replace(SMALL, predicted_layers=(3,), score="l1")
    model = learnet_model("learnet", config, rngs=nnx.Rngs(2))
    query, exemplar = _images((2, 28, 28, 1), 5), _images((2, 28, 28, 1), 6)
    *predicted, centre = model.predict_parameters(exemplar)
    assert centre.shape == (2, 16) and len(predicted) == len(model.pupil.predicted_shapes)
    expected = model.distance(model.pupil(query, predicted), centre)
    np.testing.assert_allclose(model(query, exemplar), expected, rtol=1e-6)
    linear = learnet_param_count("learnet", dataclasses.replace(config, score="linear"))
    extra = (config.learnet_features + 1) * 16  # the centre's head
    assert learnet_param_count("learnet", config) == linear + extra  # WeightedL1 = Linear(D, 1)


def test_the_exemplar_template_makes_the_layer_cross_correlate_query_and_exemplar():
    """``exemplar_template=True``: the predicted filters are the learnet's plus the exemplar's
    own (projected, centre-cropped, scaled) features, so with the heads at zero the centre output
    of the predicted layer is, per channel, the inner product of the query's and the exemplar's
    projected features (a loop reference in NumPy)."""
    config = dataclasses.replace(
        SMALL, predicted_layers=(3,), learnet_input="pupil", exemplar_template=True
    )
    model = learnet_model("learnet", config, rngs=nnx.Rngs(3))
    plain = dataclasses.replace(config, exemplar_template=False)
    rank = model.pupil.convs[3].rank
    assert learnet_param_count("learnet", config) == learnet_param_count("learnet", plain) + rank
    for head in model.learnet.heads:
        head.kernel[...] = jnp.zeros_like(head.kernel[...])
        head.bias[...] = jnp.zeros_like(head.bias[...])
    model.template_scale[...] = jnp.asarray(np.linspace(0.5, 1.5, rank), jnp.float32)
    query, exemplar = _images((2, 28, 28, 1), 7), _images((2, 28, 28, 1), 8)
    (filters,) = model.predict_parameters(exemplar)
    layer = model.pupil.convs[3]
    hx, hz = model.pupil.prefix(query), model.pupil.prefix(exemplar)  # [2, 3, 3, 16]
    got = layer(hx, filters)[:, 1, 1]  # the centre output, [2, Cout]
    p_in, p_out = np.asarray(layer.proj_in[...]), np.asarray(layer.proj_out[...])
    scale = np.asarray(model.template_scale[...])
    want = np.zeros((2, p_out.shape[1]))
    for b in range(2):
        ux, uz = np.asarray(hx[b]) @ p_in, np.asarray(hz[b]) @ p_in  # [3, 3, R]
        correlation = np.array([np.sum(ux[..., r] * uz[..., r]) * scale[r] for r in range(rank)])
        want[b] = correlation @ p_out + np.asarray(layer.bias[...])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
