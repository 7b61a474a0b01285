"""MNIST for classification: the standard 55,000 / 5,000 / 10,000 split and on-device random
crops (the HyperNetworks paper's augmentation: pad to 30x30, crop 28x28).

The validation set is the *first* 5,000 training images, as TensorFlow's MNIST reader (which the
HyperNetworks authors used) takes it; the remaining 55,000 train.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from dfn_jax._src.checks import key_array, positive_int
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
    positive_int(validation_size, name="validation_size")
    kwargs = dict(mnist_dir=mnist_dir, tfds_data_dir=tfds_data_dir, download=download)
    train_images, train_labels = load_mnist("train", **kwargs)
    test_images, test_labels = load_mnist("test", **kwargs)
    if validation_size >= len(train_images):
        raise ValueError(
            f"`validation_size` ({validation_size}) must leave training images "
            f"(there are {len(train_images)})."
        )
    v = validation_size
    return {
        "train": (train_images[v:], train_labels[v:].astype(np.int32)),
        "val": (train_images[:v], train_labels[:v].astype(np.int32)),
        "test": (test_images, test_labels.astype(np.int32)),
    }


def random_crops(keys: jax.Array, images: jax.Array, *, pad: int) -> jax.Array:
    """Per image: zero-pad ``pad`` pixels on every side, then crop back to the original size at
    a uniformly random offset (one key per image). ``images``: ``[B, H, W, ...]``."""
    keys = key_array(keys, name="keys", ndim=1)
    if images.ndim < 3 or images.shape[0] != keys.shape[0]:
        raise ValueError(
            f"`images` must have shape [B, H, W, ...] with B = {keys.shape[0]} (one key each), "
            f"got {tuple(images.shape)}."
        )
    positive_int(pad, name="pad", minimum=0)
    h, w = images.shape[1:3]
    widths = [(0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (images.ndim - 3)
    padded = jnp.pad(images, widths)

    def crop(key, image):
        dy, dx = jax.random.randint(key, (2,), 0, 2 * pad + 1)
        starts = (dy, dx) + (0,) * (image.ndim - 2)
        return jax.lax.dynamic_slice(image, starts, (h, w, *image.shape[2:]))

    return jax.vmap(crop)(keys, padded)
