"""MNIST for classification: the 55,000 / 5,000 / 10,000 split."""

import numpy as np
import pytest

from dfn_jax.data import digits


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
