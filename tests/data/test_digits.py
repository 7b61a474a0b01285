"""MNIST for classification: the 55,000 / 5,000 / 10,000 split and on-device random crops."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfn_jax.data import digits


def test_random_crops_are_shifts_of_the_zero_padded_image():
    images = jax.random.uniform(jax.random.key(0), (64, 6, 5, 2))
    keys = jax.random.split(jax.random.key(1), 64)
    crops = np.asarray(jax.jit(lambda k, x: digits.random_crops(k, x, pad=1))(keys, images))
    assert crops.shape == images.shape
    padded = np.pad(np.asarray(images), [(0, 0), (1, 1), (1, 1), (0, 0)])
    offsets = set()
    for b in range(64):
        matches = [
            (dy, dx)
            for dy in range(3)
            for dx in range(3)
            if np.array_equal(crops[b], padded[b, dy : dy + 6, dx : dx + 5])
        ]
        assert matches, b
        offsets.add(matches[0])
    assert len(offsets) == 9  # every offset of the 3x3 range occurs
    np.testing.assert_array_equal(digits.random_crops(keys, images, pad=0), images)


def test_random_crops_reject_bad_arguments():
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="one key each"):
        digits.random_crops(keys, jnp.zeros((3, 4, 4)), pad=1)
    with pytest.raises(ValueError, match="`pad`"):
        digits.random_crops(keys, jnp.zeros((2, 4, 4)), pad=-1)


def test_splits_are_the_standard_ones(mnist_dir):
    splits = digits.mnist_classification_splits(mnist_dir=mnist_dir, download=False)
    assert {k: len(v[0]) for k, v in splits.items()} == {
        "train": 55_000,
        "val": 5_000,
        "test": 10_000,
    }
    for images, labels in splits.values():
        assert images.dtype == np.uint8 and images.shape[1:] == (28, 28)
        assert labels.dtype == np.int32 and set(np.unique(labels)) == set(range(10))
    with pytest.raises(ValueError, match="`validation_size`"):
        digits.mnist_classification_splits(mnist_dir=mnist_dir, download=False, validation_size=0)
