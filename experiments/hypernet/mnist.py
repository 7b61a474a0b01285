"""MNIST with a static hypernetwork generating the second convolution (HyperNetworks v4 Sec. 4.1).

Binds :func:`dfn_jax.models.hypernet.mnist_net` (conventional or hypernetwork), MNIST split
55,000 / 5,000 / 10,000 (:mod:`dfn_jax.data.digits`), pad-to-30 random crops drawn on device from
the step's key, and softmax cross-entropy. Every ``eval_every_steps`` (one epoch by default) the
validation and test sets are both evaluated; ``results.json``'s ``best`` holds the test error at
the lowest validation error (early stopping, as the paper reports). Errors are in percent.
Configs and commands: ``experiments/configs/hyper_mnist.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from dfn_jax import viz
from dfn_jax.data import digits
from dfn_jax.models.hypernet import MNISTNetConfig, mnist_net
from dfn_jax.training import Experiment, dataclass_from_config


class HyperMNIST(Experiment):
    config_keys = frozenset({"crop_padding"})
    data_keys = frozenset({"mnist_dir", "tfds_data_dir", "download", "validation_size"})

    @functools.cached_property
    def model_config(self) -> MNISTNetConfig:
        return dataclass_from_config(MNISTNetConfig, self.config.model)

    def config_problems(self) -> list[str]:
        data, problems = self.config.data, []
        if data.mnist_dir and not pathlib.Path(data.mnist_dir).is_dir():
            problems.append(f"`data.mnist_dir` {data.mnist_dir!r} is not a directory.")
        pad = self.config.crop_padding
        if not isinstance(pad, int) or pad < 0:
            problems.append(f"`crop_padding` must be an int >= 0, got {pad!r}.")
        return problems + self.model_problems()

    @functools.cached_property
    def splits(self) -> dict:
        data = self.config.data
        return digits.mnist_classification_splits(
            mnist_dir=data.mnist_dir or None,
            tfds_data_dir=data.tfds_data_dir or None,
            download=data.download,
            validation_size=data.validation_size,
        )

    @property
    def steps_per_epoch(self) -> int:
        return len(self.splits["train"][0]) // self.config.batch_size

    # -- model and data ---------------------------------------------------------------------
    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        return mnist_net(self.model_config, rngs=rngs)

    @functools.lru_cache(maxsize=2)  # noqa: B019 (one experiment per process; two epochs cached)
    def _epoch_order(self, epoch: int) -> np.ndarray:
        n = len(self.splits["train"][0])
        return np.asarray(jax.random.permutation(jax.random.fold_in(self.data_key, epoch), n))

    def train_batch(self, step: int, rows=None) -> dict:
        """Epoch ``step // steps_per_epoch`` in its own shuffled order (a pure function of the
        seed and the step); the last incomplete batch of an epoch is dropped."""
        epoch, index = divmod(step, self.steps_per_epoch)
        size = self.config.batch_size
        order = self._epoch_order(epoch)[index * size : (index + 1) * size]
        if rows is not None:
            order = order[rows]
        images, labels = self.splits["train"]
        return {"images": images[order], "labels": labels[order]}

    def eval_batches(self, rows=None):
        """The validation set, then the test set, each in whole batches; ``is_val`` says which."""
        for split, flag in (("val", 1.0), ("test", 0.0)):
            images, labels = self.splits[split]
            for index in self.eval_indices(len(images), rows):
                yield {
                    "images": images[index],
                    "labels": labels[index],
                    "is_val": np.full(len(index), flag, np.float32),
                }

    # -- loss and metrics -----------------------------------------------------------------
    @staticmethod
    def _inputs(images: jax.Array) -> jax.Array:
        return (images.astype(jnp.float32) / 255.0)[..., None]

    def loss(self, model, batch, key):
        images = self._inputs(batch["images"])
        if self.config.crop_padding:
            keys = jax.random.split(key, images.shape[0])
            images = digits.random_crops(keys, images, pad=self.config.crop_padding)
        logits = model(images)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()
        error = 100.0 * jnp.mean(jnp.argmax(logits, -1) != batch["labels"])
        return loss, {"train_error": error}

    def eval_sums(self, model, batch):
        logits = model(self._inputs(batch["images"]))
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
        errors = 100.0 * (jnp.argmax(logits, -1) != batch["labels"]).astype(jnp.float32)
        is_val = batch["is_val"]
        sums = {}
        for prefix, weight in (("val", is_val), ("test", 1.0 - is_val)):
            sums[f"{prefix}_error"] = jnp.sum(weight * errors)
            sums[f"{prefix}_loss"] = jnp.sum(weight * losses)
            sums[f"{prefix}_count"] = jnp.sum(weight)
        return sums

    # -- figures and facts ------------------------------------------------------------------
    def write_figures(self, model, figures_dir: pathlib.Path) -> list[pathlib.Path]:
        """The second convolution's 16 x 16 kernels (7 x 7 each), generated or learned."""
        if hasattr(model, "generate"):
            kernel, title = model.generate()["conv2"], "generated conv2 kernels"
        else:
            kernel, title = model.conv2.kernel[...], "learned conv2 kernels"
        kernel = np.asarray(kernel)  # [kh, kw, in, out]
        return [viz.plot_kernel_grid(kernel, figures_dir / "conv2_kernels.png", title=title)]

    def describe(self) -> dict:
        return {
            "model": dataclasses.asdict(self.model_config),
            "epochs": self.config.num_train_steps / self.steps_per_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "split_sizes": {k: len(v[0]) for k, v in self.splits.items()},
        }


EXPERIMENT = HyperMNIST
