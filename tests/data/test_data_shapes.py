"""Tests for ``dfn_jax.data.shapes``: format, determinism, the sprites and their Moving-MNIST
motion."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from dfn_jax.data import shapes

FREE = 64 - 28


@pytest.fixture(scope="module")
def keys() -> jax.Array:
    return jax.random.split(jax.random.key(0), 4)


@pytest.fixture(scope="module")
def sequences(keys) -> np.ndarray:
    return np.asarray(shapes.bouncing_shapes_sequences(keys))


def test_shape_dtype_range(sequences):
    assert sequences.shape == (4, 20, 64, 64, 1) and sequences.dtype == np.float32
    assert sequences.min() == 0.0 and 0.5 <= sequences.max() <= 1.0
    ink = (sequences > 0).sum(axis=(2, 3, 4))
    assert ink.min() > 0


def test_determinism(keys, sequences):
    np.testing.assert_array_equal(np.asarray(shapes.bouncing_shapes_sequences(keys)), sequences)
    order = np.array([3, 1, 0, 2])
    permuted = shapes.bouncing_shapes_sequences(keys[order])
    np.testing.assert_array_equal(np.asarray(permuted), sequences[order])
    batch = shapes.generate_bouncing_shapes(jax.random.key(9), batch_size=4)
    expected = shapes.bouncing_shapes_sequences(jax.random.split(jax.random.key(9), 4))
    np.testing.assert_array_equal(np.asarray(batch), np.asarray(expected))


def test_random_sprites():
    sprites = np.asarray(shapes.random_sprites(jax.random.key(1), 200))
    assert sprites.shape == (200, 28, 28) and sprites.dtype == np.float32
    extents = []
    for sprite in sprites:
        levels = np.unique(sprite)
        assert len(levels) == 2 and levels[0] == 0.0  # one grey level on a zero background
        assert 0.5 <= levels[1] <= 1.0
        assert np.round(levels[1] * 255) / 255 == pytest.approx(levels[1], abs=1e-7)
        rows, cols = np.nonzero(sprite)
        extents.append(max(rows.max() - rows.min(), cols.max() - cols.min()) + 1)
        # Centred in the 28x28 box, like an MNIST digit.
        assert abs((rows.min() + rows.max()) / 2 - 13.5) <= 1.0
    assert min(extents) >= 9 and max(extents) <= 20
    assert len(set(extents)) > 5
    # All four kinds appear: their ink fractions of the bounding square differ.
    fill = [(s > 0).sum() / e**2 for s, e in zip(sprites, extents, strict=True)]
    assert min(fill) < 0.6 and max(fill) == 1.0
    assert any(0.7 < f < 0.85 for f in fill)  # discs cover about pi/4


def test_motion_is_moving_mnist_motion():
    # Sprites as large as their 28x28 box: every kind then reaches the box's left column and bottom
    # row, which give the box's corner exactly.
    keys = jax.random.split(jax.random.key(3), 32)
    frames = shapes.bouncing_shapes_sequences(keys, num_shapes=1, min_size=28, max_size=28)
    ink = np.asarray(frames)[..., 0] > 0  # [B, T, H, W]
    left = ink.any(axis=2).argmax(axis=2)
    bottom = 63 - ink.any(axis=3)[..., ::-1].argmax(axis=2)
    positions = np.stack([bottom - 27, left], axis=-1)  # [B, T, 2]
    assert positions.min() >= 0 and positions.max() <= FREE
    steps = np.diff(positions, axis=1)
    after = positions[:, 1:]
    straight = ((after > 0) & (after < FREE)).all(axis=-1)  # no wall contact, so no bounce
    speeds = np.linalg.norm(steps, axis=-1)[straight]
    assert straight.mean() > 0.5
    assert np.all(np.abs(speeds - 3.6) < np.sqrt(2)) and abs(speeds.mean() - 3.6) < 0.3
    both = straight[:, 1:] & straight[:, :-1]
    assert np.abs(np.diff(steps, axis=1))[both].max() <= 1  # constant velocity between bounces
    on_low, on_high = positions[:, :-1] == 0, positions[:, :-1] == FREE
    assert np.all(steps[on_low] >= 0) and np.all(steps[on_high] <= 0)  # bounce off the walls
    # The same sprite in every frame.
    area = ink.sum(axis=(2, 3))
    assert np.all(area == area[:, :1])


def test_whole_pixel_steps_move_by_the_same_pixels_every_frame():
    """``whole_pixel_steps``: between bounces every frame moves a sprite by the same whole number
    of pixels, its per-axis step ``step_length * free`` rounded (1.8 px: 1 or 2 on each axis);
    the default truncation moves it by alternating amounts."""
    keys = jax.random.split(jax.random.key(4), 32)
    options = dict(num_shapes=1, min_size=28, max_size=28, step_length=0.05)

    def positions(**extra):
        ink = np.asarray(shapes.bouncing_shapes_sequences(keys, **options, **extra))[..., 0] > 0
        left = ink.any(axis=2).argmax(axis=2)
        bottom = 63 - ink.any(axis=3)[..., ::-1].argmax(axis=2)
        return np.stack([bottom - 27, left], axis=-1)  # [B, T, 2]

    for whole, max_change in ((True, 0), (False, 1)):
        pos = positions(whole_pixel_steps=whole)
        assert pos.min() >= 0 and pos.max() <= FREE
        steps = np.diff(pos, axis=1)
        after = pos[:, 1:]
        straight = ((after > 0) & (after < FREE)).all(axis=-1)
        both = straight[:, 1:] & straight[:, :-1]
        changes = np.abs(np.diff(steps, axis=1))[both]
        assert changes.max() == max_change
        if whole:
            assert np.abs(steps[straight]).max() == 2 and (np.abs(steps[straight]) >= 1).any()
    # The option is part of the data's identity: other frames, same format.
    default = np.asarray(shapes.bouncing_shapes_sequences(keys[:2]))
    whole = np.asarray(shapes.bouncing_shapes_sequences(keys[:2], whole_pixel_steps=True))
    assert whole.shape == default.shape and not np.array_equal(whole, default)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"num_shapes": 0}, "`num_shapes` must be an int >= 1, got 0"),
        ({"min_size": 21}, "`min_size` <= `max_size` <= `sprite_size`"),
        ({"max_size": 30}, "`min_size` <= `max_size` <= `sprite_size`"),
        ({"sprite_size": 70, "max_size": 60}, "`sprite_size` must be at most `image_size` 64"),
        ({"min_grey": 0.0}, r"`min_grey` must be in \(0, 1\]"),
        ({"step_length": 2.0}, r"`step_length` must be in \(0, 1\]"),
    ],
)
def test_bad_arguments(keys, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        shapes.bouncing_shapes_sequences(keys, **kwargs)


def test_bad_keys():
    with pytest.raises(ValueError, match="`keys` must be"):
        shapes.bouncing_shapes_sequences(np.zeros(3))
    with pytest.raises(ValueError, match="`key` must be a key array of shape"):
        shapes.generate_bouncing_shapes(jax.random.split(jax.random.key(0), 2), batch_size=2)
