"""Steerable filters: the analytic filters and targets, the procedural images, the model and the
experiment end to end at toy size."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from dfn_jax import ops
from dfn_jax.data import textures
from dfn_jax.models import SteerableDFN, SteerableDFNConfig, count_params
from dfn_jax.training.config import override
from dfn_jax.training.validation import ConfigError
from experiments import main
from experiments.configs import steerable as st_config
from experiments.dfn import steerable as steerable_experiment


def _correlate(image, kernel):
    """Reference: ``image [H, W, 1]`` cross-correlated with ``kernel [k, k]``, SAME zero padding."""
    return lax.conv_general_dilated(
        image[None],
        kernel[:, :, None, None],
        window_strides=(1, 1),
        padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision="highest",
    )[0]


# -- analytic filters -------------------------------------------------------------------------
def test_gaussian_derivative_filters_shape_symmetry_and_ramp_response():
    gx, gy = ops.gaussian_derivative_filters(size=9, sigma=1.0)
    assert gx.shape == gy.shape == (9, 9) and gx.dtype == jnp.float32
    np.testing.assert_allclose(gy, gx.T, atol=0)
    np.testing.assert_allclose(gx, -gx[:, ::-1], atol=1e-8)  # odd in x ...
    np.testing.assert_allclose(gx, gx[::-1, :], atol=1e-8)  # ... even in y
    assert float(gx[4, 8]) > 0 and float(gy[8, 4]) > 0  # positive taps to the right / below
    # I = 2 x - 0.5 y + 3 (x = column, y = row downwards): exactly the slopes, away from the border.
    y, x = np.mgrid[0:24, 0:24].astype(np.float32)
    ramp = jnp.asarray(2.0 * x - 0.5 * y + 3.0)[..., None]
    np.testing.assert_allclose(_correlate(ramp, gx)[4:-4, 4:-4], 2.0, atol=1e-4)
    np.testing.assert_allclose(_correlate(ramp, gy)[4:-4, 4:-4], -0.5, atol=1e-4)


def test_steered_filter_is_the_cos_sin_combination_and_vectorised():
    gx, gy = ops.gaussian_derivative_filters(size=7, sigma=1.5)
    theta = jnp.asarray([[0.0, np.pi / 2], [np.pi, 0.3]])
    steered = ops.steered_filter(theta, size=7, sigma=1.5)
    assert steered.shape == (2, 2, 7, 7)
    np.testing.assert_allclose(steered[0, 0], gx, atol=1e-7)
    np.testing.assert_allclose(steered[0, 1], gy, atol=1e-7)
    np.testing.assert_allclose(steered[1, 0], -gx, atol=1e-7)
    np.testing.assert_allclose(steered[1, 1], np.cos(0.3) * gx + np.sin(0.3) * gy, atol=1e-7)
    assert ops.steered_filter(0).shape == (9, 9)  # scalar (int) angle
    jitted = jax.jit(lambda t: ops.steered_filter(t))(jnp.float32(0.3))
    np.testing.assert_allclose(jitted, ops.steered_filter(0.3), atol=1e-7)


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        ({"size": 8}, "`size` must be an odd int"),
        ({"size": 1}, "`size` must be an odd int"),
        ({"sigma": 0.0}, "`sigma` must be a positive"),
        ({"sigma": "1"}, "`sigma` must be a positive"),
    ],
)
def test_bad_filter_options(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ops.gaussian_derivative_filters(**kwargs)
    with pytest.raises(ValueError, match=pattern):
        ops.steered_filter(0.0, **kwargs)


# -- targets and images -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys_images_and_angles():
    keys = jax.random.split(jax.random.key(0), 4)
    images = textures.random_textures(keys, image_size=24)
    theta = jnp.asarray([0.0, 1.0, 2.5, 5.5])
    return keys, images, theta


@pytest.fixture(scope="module")
def images_and_angles(keys_images_and_angles):
    return keys_images_and_angles[1:]


def test_targets_equal_a_direct_convolution_with_the_steered_filter(images_and_angles):
    images, theta = images_and_angles
    targets = textures.steerable_targets(images, theta)
    assert targets.shape == images.shape
    for b in range(len(theta)):
        direct = _correlate(images[b], ops.steered_filter(theta[b]))
        np.testing.assert_allclose(targets[b], direct, atol=1e-5)


def test_targets_steer(images_and_angles):
    images, theta = images_and_angles
    zeros = jnp.zeros_like(theta)
    at_0 = textures.steerable_targets(images, zeros)
    at_90 = textures.steerable_targets(images, zeros + np.pi / 2)
    c, s = (f(theta)[:, None, None, None] for f in (jnp.cos, jnp.sin))
    np.testing.assert_allclose(
        textures.steerable_targets(images, theta), c * at_0 + s * at_90, atol=1e-5
    )


def test_targets_bad_arguments(images_and_angles):
    images, theta = images_and_angles
    with pytest.raises(ValueError, match=r"`theta` must have shape \[B\]"):
        textures.steerable_targets(images, theta[:2])
    with pytest.raises(ValueError, match=r"`images` must be a floating array \[B, H, W, C\]"):
        textures.steerable_targets(images[0], theta)


def test_textures_are_in_unit_range_and_depend_only_on_their_key(keys_images_and_angles):
    keys, images, _ = keys_images_and_angles
    assert images.shape == (4, 24, 24, 1) and images.dtype == jnp.float32
    np.testing.assert_allclose(jnp.min(images, axis=(1, 2, 3)), 0.0, atol=1e-6)
    np.testing.assert_allclose(jnp.max(images, axis=(1, 2, 3)), 1.0, atol=1e-6)
    assert float(jnp.std(images[0] - images[1])) > 0.05  # different keys, different images
    reordered = textures.random_textures(keys[::-1], image_size=24)
    np.testing.assert_array_equal(reordered, images[::-1])
    angles = textures.random_angles(keys)
    assert angles.shape == (4,) and bool(jnp.all((angles >= 0) & (angles < 2 * np.pi)))
    with pytest.raises(ValueError, match="`image_size` must be an int >= 8"):
        textures.random_textures(keys, image_size=4)


def test_digit_images_are_centred_on_the_canvas():
    digits = np.zeros((3, 28, 28), np.uint8)
    digits[:, 4:24, 10:18] = 255
    images = textures.digit_images(jax.random.split(jax.random.key(0), 2), digits, image_size=64)
    assert images.shape == (2, 64, 64, 1)
    assert float(jnp.max(images)) == pytest.approx(1.0) and float(jnp.min(images)) == 0.0
    np.testing.assert_array_equal(images[:, :4], 0.0)  # 56x56 digit, 4 px margin
    with pytest.raises(ValueError, match="`digit_size` must be at most"):
        textures.digit_images(jax.random.split(jax.random.key(0), 2), digits, image_size=32)


# -- model ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides,num_params",
    [
        ({}, 64 + 64 + 64 * 128 + 128 + 128 * 81 + 81),
        ({"theta_encoding": "cos_sin"}, 2 * 64 + 64 + 64 * 128 + 128 + 128 * 81 + 81),
        ({"dynamic_filter": False}, 81),
    ],
)
def test_model_shapes_and_parameter_counts(overrides, num_params):
    model = SteerableDFN(SteerableDFNConfig(**overrides), rngs=nnx.Rngs(0))
    assert count_params(model) == num_params
    images = jnp.ones((3, 16, 20, 1))
    theta = jnp.asarray([0.0, 1.0, 2.0])
    assert model(images, theta).shape == (3, 16, 20, 1)
    assert model.filters(theta).shape == (3, 9, 9)
    # The head starts at zero: zero filters, zero predictions.
    np.testing.assert_array_equal(model(images, theta), 0.0)
    with pytest.raises(ValueError, match=r"`theta` must have shape \[B\]"):
        model(images, theta[:2])


def test_model_applies_its_filters_by_dynamic_convolution():
    model = SteerableDFN(SteerableDFNConfig(head_init_scale=2.0), rngs=nnx.Rngs(1))
    images = jax.random.uniform(jax.random.key(2), (2, 16, 16, 1))
    theta = jnp.asarray([0.5, 4.0])
    filters = model.filters(theta)
    expected = jnp.stack([_correlate(images[b], filters[b]) for b in range(2)])
    np.testing.assert_allclose(model(images, theta), expected, rtol=1e-4, atol=1e-5)
    raw = SteerableDFN(SteerableDFNConfig(theta_encoding="raw_angle"), rngs=nnx.Rngs(1))
    assert raw.filters(theta).shape == (2, 9, 9)


def test_model_config_rejects_bad_values():
    with pytest.raises(ValueError, match="`filter_size` must be a positive odd int"):
        SteerableDFNConfig(filter_size=8)
    with pytest.raises(ValueError, match="`theta_encoding` must be one of"):
        SteerableDFNConfig(theta_encoding="degrees")
    with pytest.raises(ValueError, match="`hidden_features` must be a tuple"):
        SteerableDFNConfig(hidden_features=(64, 0))


def test_filter_agreement():
    analytic = ops.steered_filter(jnp.asarray([0.0, 1.0]))
    same = steerable_experiment.filter_agreement(2.0 * analytic, analytic)
    np.testing.assert_allclose(same["cosine_similarity"], 1.0, atol=1e-6)
    np.testing.assert_allclose(same["relative_error"], 1.0, atol=1e-6)
    opposite = steerable_experiment.filter_agreement(-analytic, analytic)
    np.testing.assert_allclose(opposite["cosine_similarity"], -1.0, atol=1e-6)


# -- configs and the experiment ---------------------------------------------------------------
def test_variants_parse_and_unknown_variant_fails():
    paper = st_config.get_config()
    assert paper.experiment == "dfn.steerable" and paper.variant == "paper"
    assert (paper.batch_size, paper.learning_rate) == (64, 1e-3)
    assert (paper.lr_halve_every_steps, paper.num_train_steps) == (1000, 5000)
    assert paper.model.dynamic_filter and paper.model.theta_encoding == "angle"
    assert paper.data.source == "textures"
    assert st_config.get_config("baseline").model.dynamic_filter is False
    assert st_config.get_config("paper,cos_sin").model.theta_encoding == "cos_sin"
    with pytest.raises(ValueError, match="Unknown steerable variant"):
        st_config.get_config("nonsense")
    with pytest.raises(ValueError, match="cannot be combined"):
        st_config.get_config("baseline,cos_sin")


def tiny_config(variant="paper", **overrides):
    """The variant's config shrunk to seconds: 16x16 images, batch 2, one step."""
    config = st_config.get_config(variant)
    config.mesh.data = 1
    config.batch_size = 2
    config.num_train_steps = 1
    config.log_every_steps = 1
    config.checkpoint_every_steps = 1
    config.eval_every_steps = 0
    config.num_eval_examples = 4
    config.eval_batch_size = 2
    config.num_figure_examples = 1
    config.data.image_size = 16
    config.data.digit_size = 14
    return override(config, overrides)


def test_config_problems_are_reported_before_building():
    config = tiny_config(**{"model.filter_size": 7, "data.source": "cifar"})
    with pytest.raises(ConfigError, match=r"(?s)data.source.*model.filter_size"):
        main.train_and_evaluate(config, "/tmp/unused_steerable_workdir")


def test_one_training_step_writes_results_and_figures(tmp_path):
    results = main.train_and_evaluate(tiny_config(), str(tmp_path))
    assert results["steps"] == 1
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["similarity_angles_degrees"] == [0, 45, 90, 135, 180, 225, 270, 315]
    test = saved["test"]
    assert len(test["filter_cosine_similarity"]) == 8
    assert len(test["filter_relative_error"]) == 8
    assert np.all(np.abs(test["filter_cosine_similarity"]) <= 1.0 + 1e-5)
    assert test["filter_cosine_similarity_min"] == pytest.approx(
        min(test["filter_cosine_similarity"]), abs=1e-6
    )
    assert np.isfinite(test["mse"]) and test["target_mean_square"] > 0
    for name in ("filters.png", "predictions.png"):
        assert (tmp_path / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_baseline_on_the_mnist_source_runs_on_idx_files(tmp_path):
    digits = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    mnist_dir = tmp_path / "mnist"
    mnist_dir.mkdir()
    for prefix in ("train", "t10k"):
        (mnist_dir / f"{prefix}-images-idx3-ubyte").write_bytes(_idx_bytes(digits, 2051))
        (mnist_dir / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx_bytes(digits[:, 0, 0], 2049))
    config = tiny_config(
        "baseline",
        **{"data.source": "mnist", "data.mnist_dir": str(mnist_dir), "data.download": False},
    )
    results = main.train_and_evaluate(config, str(tmp_path / "run"))
    assert results["data_source"] == "mnist" and results["num_params"] == 81
    assert np.isfinite(results["test"]["mse"])
    assert len(results["test"]["filter_cosine_similarity"]) == 8
