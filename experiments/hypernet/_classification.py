"""What the HyperNetworks image classifiers share: epochs of shuffled training batches (a pure
function of the seed and the step), on-device augmentation from the step's key, softmax
cross-entropy, and validation and test sets evaluated together so that ``results.json``'s
``best`` holds the test error at the lowest validation error (early stopping, as the paper
reports). Errors are in percent. A subclass gives the splits, the model and the input
preprocessing (:mod:`experiments.hypernet.mnist`, :mod:`experiments.hypernet.wrn`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dfn_jax.training import Experiment


class ImageClassification(Experiment):
    """Subclasses define ``splits`` (``{"train", "val", "test"}`` -> ``(uint8 images, int32
    labels)``), ``build_model``, ``inputs`` (uint8 -> float model input) and ``augment_images``."""

    splits: dict

    def inputs(self, images: jax.Array) -> jax.Array:
        raise NotImplementedError

    def augment_images(self, images: jax.Array, key: jax.Array) -> jax.Array:
        """The training images' augmentation (after :meth:`inputs`); none by default."""
        del key
        return images

    @property
    def steps_per_epoch(self) -> int:
        return len(self.splits["train"][0]) // self.config.batch_size

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
        """The validation set, then the test set, in batches of ``eval_batch_size``; ``is_val``
        says which set, and the last batch of each is padded with examples of ``weight`` 0, so
        that every example counts once whatever the set's size."""
        size = self.eval_batch_size
        for split, flag in (("val", 1.0), ("test", 0.0)):
            images, labels = self.splits[split]
            for start in range(0, len(images), size):
                index = np.arange(start, start + size)
                weight = (index < len(images)).astype(np.float32)
                index = np.where(weight > 0, index, 0)
                if rows is not None:
                    index, weight = index[rows], weight[rows]
                yield {
                    "images": images[index],
                    "labels": labels[index],
                    "is_val": np.full(len(index), flag, np.float32),
                    "weight": weight,
                }

    def loss(self, model, batch, key):
        images = self.augment_images(self.inputs(batch["images"]), key)
        logits = model(images)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()
        error = 100.0 * jnp.mean(jnp.argmax(logits, -1) != batch["labels"])
        return loss, {"train_error": error}

    def eval_sums(self, model, batch):
        logits = model(self.inputs(batch["images"]))
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"])
        errors = 100.0 * (jnp.argmax(logits, -1) != batch["labels"]).astype(jnp.float32)
        is_val, counted = batch["is_val"], batch["weight"]
        sums = {}
        for prefix, weight in (("val", counted * is_val), ("test", counted * (1.0 - is_val))):
            sums[f"{prefix}_error"] = jnp.sum(weight * errors)
            sums[f"{prefix}_loss"] = jnp.sum(weight * losses)
            sums[f"{prefix}_count"] = jnp.sum(weight)
        return sums

    def describe(self) -> dict:
        return {
            "epochs": self.config.num_train_steps / self.steps_per_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "split_sizes": {k: len(v[0]) for k, v in self.splits.items()},
        }
