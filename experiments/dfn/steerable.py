"""Learning steerable filters with dynamic convolution (De Brabandere et al. 2016, Sec. 4.1).

Binds :class:`dfn_jax.models.SteerableDFN`, procedural textures (or MNIST digits) with random
angles, and the MSE loss against ``cos(theta) I_x + sin(theta) I_y`` for the shared trainer.
Evaluation reports the test MSE and how close the generated filters are to the analytic ones at
0, 45, ..., 315 degrees (cosine similarity and relative L2 error per angle). Configs and
commands: ``experiments/configs/steerable.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.figure import Figure

from dfn_jax import ops
from dfn_jax.data import textures
from dfn_jax.data.moving_mnist import test_set_keys
from dfn_jax.models import SteerableDFN, SteerableDFNConfig
from dfn_jax.training import Experiment
from experiments.dfn import _common

SOURCES = ("textures", "mnist")
SIMILARITY_DEGREES = tuple(range(0, 360, 45))
"""The angles at which the generated filters are compared with the analytic ones."""


def model_config(config) -> SteerableDFNConfig:
    fields = {f.name for f in dataclasses.fields(SteerableDFNConfig)}
    values = config.model.to_dict()
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(
            f"unknown `model` keys {unknown}; SteerableDFNConfig has {sorted(fields)}."
        )
    for k, v in values.items():
        if isinstance(v, list):
            values[k] = tuple(v)
    return SteerableDFNConfig(**values)


def filter_agreement(learned: jax.Array, analytic: jax.Array) -> dict[str, jax.Array]:
    """Per-filter cosine similarity and relative L2 error ``|learned - analytic| / |analytic|``.

    Both ``[N, k, k]``; returns two ``[N]`` arrays. The cosine similarity ignores the filters'
    scale, the relative error does not.
    """
    learned = learned.reshape(learned.shape[0], -1).astype(jnp.float32)
    analytic = analytic.reshape(analytic.shape[0], -1).astype(jnp.float32)
    dot = jnp.sum(learned * analytic, axis=-1)
    norm_l = jnp.linalg.norm(learned, axis=-1)
    norm_a = jnp.linalg.norm(analytic, axis=-1)
    return {
        "cosine_similarity": dot / jnp.maximum(norm_l * norm_a, 1e-12),
        "relative_error": jnp.linalg.norm(learned - analytic, axis=-1) / norm_a,
    }


def _examples(keys, make_images, *, filter_size, sigma):
    # Each example's key is split in two: one half draws the image, the other the angle.
    image_keys, angle_keys = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
    images = make_images(image_keys)
    theta = textures.random_angles(angle_keys)
    targets = textures.steerable_targets(images, theta, size=filter_size, sigma=sigma)
    return {"images": images, "theta": theta, "targets": targets}


@functools.partial(
    jax.jit, static_argnames=("image_size", "num_gabors", "num_shapes", "filter_size", "sigma")
)
def _texture_examples(keys, *, image_size, num_gabors, num_shapes, filter_size, sigma):
    make_images = functools.partial(
        textures.random_textures,
        image_size=image_size,
        num_gabors=num_gabors,
        num_shapes=num_shapes,
    )
    return _examples(keys, make_images, filter_size=filter_size, sigma=sigma)


@functools.partial(jax.jit, static_argnames=("image_size", "digit_size", "filter_size", "sigma"))
def _digit_examples(keys, digits, *, image_size, digit_size, filter_size, sigma):
    make_images = functools.partial(
        textures.digit_images, digits=digits, image_size=image_size, digit_size=digit_size
    )
    return _examples(keys, make_images, filter_size=filter_size, sigma=sigma)


class Steerable(Experiment):
    """Images and angles in, ``cos(theta) I_x + sin(theta) I_y`` out; MSE loss."""

    config_keys = frozenset(["num_eval_examples", "num_figure_examples"])
    data_keys = frozenset(
        [
            "digit_size",
            "download",
            "filter_size",
            "image_size",
            "mnist_dir",
            "num_gabors",
            "num_shapes",
            "sigma",
            "source",
            "test_seed",
            "tfds_data_dir",
        ]
    )

    @functools.cached_property
    def model_config(self) -> SteerableDFNConfig:
        return model_config(self.config)

    @property
    def similarity_angles(self) -> np.ndarray:
        return np.deg2rad(np.asarray(SIMILARITY_DEGREES, np.float32))

    def analytic_filters(self, theta) -> jax.Array:
        data = self.config.data
        return ops.steered_filter(jnp.asarray(theta), size=data.filter_size, sigma=data.sigma)

    def config_problems(self) -> list[str]:
        data = self.config.data
        problems = _common.source_problems(data, SOURCES)
        for name in ("image_size", "num_gabors", "num_shapes", "digit_size"):
            if not isinstance(data[name], int) or data[name] <= 0:
                problems.append(f"`data.{name}` must be a positive integer, got {data[name]!r}.")
        if isinstance(data.image_size, int) and data.image_size < 8:
            problems.append(f"`data.image_size` must be at least 8, got {data.image_size!r}.")
        if data.source == "mnist" and data.digit_size > data.image_size:
            problems.append(
                f"`data.digit_size` ({data.digit_size}) must be at most `data.image_size` "
                f"({data.image_size})."
            )
        try:
            self.analytic_filters(0.0)
        except ValueError as e:
            problems.append(f"data (analytic filter): {e}")
        problems += self.evaluation_problems("num_eval_examples", "num_figure_examples")
        model_problems = self.model_problems()
        problems += model_problems
        if not model_problems:
            model = self.model_config
            if model.filter_size != data.filter_size:
                problems.append(
                    f"`model.filter_size` ({model.filter_size}) must equal `data.filter_size` "
                    f"({data.filter_size}), the analytic filter the learned one is compared with."
                )
        return problems

    # -- data -------------------------------------------------------------------------------
    @functools.cached_property
    def _generators(self):
        """``keys [B] -> batch`` for training and test data; digits load on first use.

        The jitted generators are module-level functions of static options, so experiments with
        the same data settings (a run and its baseline, say) share their compiled programs.
        """
        data = self.config.data
        targets = dict(filter_size=data.filter_size, sigma=float(data.sigma))
        if data.source == "textures":
            generate = functools.partial(
                _texture_examples,
                image_size=data.image_size,
                num_gabors=data.num_gabors,
                num_shapes=data.num_shapes,
                **targets,
            )
            return generate, generate
        generate = functools.partial(
            _digit_examples, image_size=data.image_size, digit_size=data.digit_size, **targets
        )
        return _common.mnist_generators(data, generate)

    def build_model(self, rngs: nnx.Rngs) -> SteerableDFN:
        return SteerableDFN(self.model_config, rngs=rngs)

    def train_batch(self, step: int, rows=None) -> dict:
        return self._generators[0](self.example_keys(step, rows))

    def test_examples(self, num: int) -> dict:
        """The first ``num`` examples of the fixed test set (images, theta, targets)."""
        # At least one evaluation batch's worth, so the generator compiled for it is reused.
        keys = test_set_keys(max(num, self.config.eval_batch_size), seed=self.config.data.test_seed)
        return jax.tree.map(lambda x: x[:num], self._generators[1](keys))

    def eval_batches(self, rows=None):
        n = self.config.num_eval_examples
        keys = test_set_keys(n, seed=self.config.data.test_seed)
        for index in self.eval_indices(n, rows):
            yield self._generators[1](keys[index])

    # -- loss and metrics -----------------------------------------------------------------
    def loss(self, model, batch, key):
        del key  # deterministic: no dropout, data drawn on the host
        predictions = model(batch["images"], batch["theta"])
        mse = jnp.mean(jnp.square(predictions - batch["targets"]))
        return mse, {"mse": mse}

    def eval_sums(self, model, batch):
        predictions = model(batch["images"], batch["theta"])
        count = batch["theta"].shape[0]
        squared = jnp.square(predictions - batch["targets"])
        sums = {
            "count": jnp.asarray(count, jnp.float32),
            "mse": jnp.sum(jnp.mean(squared, axis=(1, 2, 3))),
            "target_mean_square": jnp.sum(jnp.mean(jnp.square(batch["targets"]), axis=(1, 2, 3))),
        }
        # Properties of the model, not of the batch: multiplied by the batch's count so that the
        # trainer's sum over batches divided by the total count gives them back unchanged.
        angles = jnp.asarray(self.similarity_angles)
        agreement = filter_agreement(model.filters(angles), self.analytic_filters(angles))
        cosine = agreement["cosine_similarity"]
        sums["filter_cosine_similarity"] = cosine * count
        sums["filter_cosine_similarity_min"] = jnp.min(cosine) * count
        sums["filter_cosine_similarity_mean"] = jnp.mean(cosine) * count
        sums["filter_relative_error"] = agreement["relative_error"] * count
        return sums

    # -- figures and facts ------------------------------------------------------------------
    def write_figures(self, model, figures_dir: pathlib.Path) -> list[pathlib.Path]:
        angles = self.similarity_angles
        learned = np.asarray(jax.jit(model.filters)(jnp.asarray(angles)))
        analytic = np.asarray(self.analytic_filters(angles))
        cosine = np.asarray(filter_agreement(learned, analytic)["cosine_similarity"])
        paths = [
            plot_filters(analytic, learned, SIMILARITY_DEGREES, cosine, figures_dir / "filters.png")
        ]
        batch = self.test_examples(self.config.num_figure_examples)
        predictions = np.asarray(jax.jit(model)(batch["images"], batch["theta"]))
        paths.append(
            plot_predictions(
                np.asarray(batch["images"]),
                np.asarray(batch["theta"]),
                np.asarray(batch["targets"]),
                predictions,
                figures_dir / "predictions.png",
            )
        )
        return paths

    def describe(self) -> dict:
        data = self.config.data
        return {
            "variant": self.config.variant,
            "data_source": data.source,
            "target_filter": {"size": data.filter_size, "sigma": data.sigma},
            "model": dataclasses.asdict(self.model_config),
            "num_eval_examples": self.config.num_eval_examples,
            "test_seed": data.test_seed,
            "similarity_angles_degrees": list(SIMILARITY_DEGREES),
        }


def _signed(ax, image, vmax, title):
    ax.imshow(np.asarray(image), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)


def plot_filters(analytic, learned, degrees, cosine, path: pathlib.Path) -> pathlib.Path:
    """Analytic (top row) and learned (bottom row) filters ``[N, k, k]``, one column per angle,
    on one symmetric colour scale (red positive, blue negative)."""
    n = len(degrees)
    fig = Figure(figsize=(1.3 * n, 3.4))
    axes = fig.subplots(2, n, squeeze=False)
    vmax = float(np.max(np.abs(analytic))) or 1.0
    for c in range(n):
        _signed(axes[0, c], analytic[c], vmax, f"{degrees[c]} deg")
        _signed(axes[1, c], learned[c], vmax, f"cos sim {cosine[c]:.3f}")
    axes[0, 0].set_ylabel("analytic", fontsize=8)
    axes[1, 0].set_ylabel("learned", fontsize=8)
    fig.suptitle("cos(theta) G_x + sin(theta) G_y: analytic vs generated", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_predictions(images, theta, targets, predictions, path: pathlib.Path) -> pathlib.Path:
    """Per test example: the image, the target, the prediction (on the target's colour scale)
    and their difference (on its own scale, given in the title)."""
    n = images.shape[0]
    fig = Figure(figsize=(8.0, 2.1 * n))
    axes = fig.subplots(n, 4, squeeze=False)
    for r in range(n):
        vmax = float(np.max(np.abs(targets[r]))) or 1.0
        axes[r, 0].imshow(images[r, ..., 0], cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_xticks([])
        axes[r, 0].set_yticks([])
        axes[r, 0].set_title(f"image, theta = {math.degrees(theta[r]):.0f} deg", fontsize=7)
        _signed(axes[r, 1], targets[r, ..., 0], vmax, "target")
        _signed(axes[r, 2], predictions[r, ..., 0], vmax, "prediction")
        difference = predictions[r, ..., 0] - targets[r, ..., 0]
        dmax = float(np.max(np.abs(difference))) or 1.0
        _signed(axes[r, 3], difference, dmax, f"difference (max {dmax / vmax:.1%} of target's)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


EXPERIMENT = Steerable
