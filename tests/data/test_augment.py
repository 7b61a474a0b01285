"""On-device augmentation: random crops of the zero-padded image and random flips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfn_jax.data import augment


def test_random_crops_are_shifts_of_the_zero_padded_image():
    images = jax.random.uniform(jax.random.key(0), (64, 6, 5, 2))
    keys = jax.random.split(jax.random.key(1), 64)
    crops = np.asarray(jax.jit(lambda k, x: augment.random_crops(k, x, pad=1))(keys, images))
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
    np.testing.assert_array_equal(augment.random_crops(keys, images, pad=0), images)


def test_random_crops_reject_bad_arguments():
    keys = jax.random.split(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="one key each"):
        augment.random_crops(keys, jnp.zeros((3, 4, 4)), pad=1)
    with pytest.raises(ValueError, match="`pad`"):
        augment.random_crops(keys, jnp.zeros((2, 4, 4)), pad=-1)


def test_random_flips_mirror_about_half_of_the_images():
    images = jax.random.uniform(jax.random.key(0), (200, 4, 5, 3))
    keys = jax.random.split(jax.random.key(1), 200)
    flipped = np.asarray(jax.jit(augment.random_flips)(keys, images))
    same = [np.array_equal(f, x) for f, x in zip(flipped, np.asarray(images), strict=True)]
    mirrored = [
        np.array_equal(f, x[:, ::-1]) for f, x in zip(flipped, np.asarray(images), strict=True)
    ]
    assert all(a != b for a, b in zip(same, mirrored, strict=True))  # exactly one of the two
    assert 70 < sum(mirrored) < 130
    with pytest.raises(ValueError, match="one key each"):
        augment.random_flips(keys[:3], images)
