"""MNIST for classification: the standard 55,000 / 5,000 / 10,000 split (the HyperNetworks paper's
augmentation, pad to 30x30 and crop 28x28, is :func:`dfn_jax.data.augment.random_crops`).

The validation set is the *first* 5,000 training images, as TensorFlow's MNIST reader (which the
HyperNetworks authors used) takes it; the remaining 55,000 train.
"""

from __future__ import annotations

import os

import numpy as np

from dfn_jax.data._holdout import holdout_splits
from dfn_jax.data.mnist import load_mnist

SPLITS = ("train", "val", "test")


def mnist_classification_splits(
    *,
    mnist_dir: str | os.PathLike | None = None,
    tfds_data_dir: str | os.PathLike | None = None,
    download: bool = True,
    validation_size: int = 5000,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train", "val", "test"}`` -> ``(images uint8 [N, 28, 28], labels int32 [N])``; sources
    and arguments as in :func:`dfn_jax.data.mnist.load_mnist_digits`."""
    kwargs = dict(mnist_dir=mnist_dir, tfds_data_dir=tfds_data_dir, download=download)
    return holdout_splits(
        load_mnist("train", **kwargs),
        load_mnist("test", **kwargs),
        validation_size=validation_size,
        validation_from="first",
    )
