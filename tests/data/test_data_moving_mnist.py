"""Tests for ``dfn_jax.data.moving_mnist``: determinism, the motion statistics of the original
generator, max-combination, the fixed test set and its hashes, the CLI and the ``.npy`` loader."""

from __future__ import annotations

import functools
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfn_jax.data import mnist
from dfn_jax.data import moving_mnist as mm

SPEED = 3.6  # 0.1 of the 36 px free range, per frame
FREE = 36


LEVELS = 128 + 12 * np.arange(10)  # uint8 grey levels of the square digits; two sum to > 255


@pytest.fixture(scope="module")
def square_digits_uint8() -> np.ndarray:
    """Ten full 28x28 squares of grey 128, 140, ..., 236: any sum of two would exceed 1.0."""
    return np.broadcast_to(LEVELS.astype(np.uint8)[:, None, None], (10, 28, 28)).copy()


@pytest.fixture(scope="module")
def square_digits(square_digits_uint8) -> jax.Array:
    return jnp.asarray(mnist.digits_to_float(square_digits_uint8))


@pytest.fixture(scope="module")
def keys() -> jax.Array:
    return jax.random.split(jax.random.key(42), 4)


@pytest.fixture(scope="module")
def sequences(keys, square_digits) -> np.ndarray:
    return np.asarray(mm.moving_mnist_sequences(keys, square_digits))


@pytest.fixture(scope="module")
def real_test_digits(mnist_dir) -> np.ndarray:
    return mnist.load_mnist_digits("test", mnist_dir=mnist_dir, download=False)


# ------------------------------------------------------------------------------------------------
# Generation.


def test_shape_dtype_range(sequences):
    assert sequences.shape == (4, 20, 64, 64, 1)
    assert sequences.dtype == np.float32
    assert sequences.min() == 0.0 and sequences.max() <= 1.0


def test_same_key_same_sequence_jitted_or_not(keys, square_digits, sequences):
    again = mm.moving_mnist_sequences(keys, square_digits)
    np.testing.assert_array_equal(np.asarray(again), sequences)
    jitted = jax.jit(mm.moving_mnist_sequences, static_argnames=("num_frames", "num_digits"))
    np.testing.assert_array_equal(np.asarray(jitted(keys, square_digits, num_frames=20)), sequences)
    # Legacy raw uint32 keys [B, 2] name the same keys.
    raw = jax.random.key_data(keys)
    np.testing.assert_array_equal(
        np.asarray(mm.moving_mnist_sequences(raw, square_digits)), sequences
    )


def test_a_sequence_depends_only_on_its_key(keys, square_digits, sequences):
    order = np.array([2, 0, 3, 1])
    permuted = mm.moving_mnist_sequences(keys[order], square_digits)
    np.testing.assert_array_equal(np.asarray(permuted), sequences[order])
    assert not np.array_equal(sequences[0], sequences[1])


def test_generate_splits_the_key(square_digits):
    key = jax.random.key(7)
    batch = mm.generate_moving_mnist(key, square_digits, batch_size=4)
    expected = mm.moving_mnist_sequences(jax.random.split(key, 4), square_digits)
    np.testing.assert_array_equal(np.asarray(batch), np.asarray(expected))


def test_uint8_digits_give_the_same_floats(keys, square_digits_uint8, sequences):
    from_uint8 = mm.moving_mnist_sequences(keys, jnp.asarray(square_digits_uint8))
    np.testing.assert_array_equal(np.asarray(from_uint8), sequences)


def test_overlaps_are_combined_with_max(sequences):
    levels = set(mnist.digits_to_float(LEVELS.astype(np.uint8)).tolist()) | {0.0}
    assert set(np.unique(sequences).tolist()) <= levels  # a sum would be > 1.0
    ink = (sequences[..., 0] > 0).sum(axis=(2, 3))  # [B, T]
    assert ink.max() <= 2 * 28 * 28 and ink.min() >= 28 * 28
    assert (ink < 2 * 28 * 28).any(), "no overlap to test in these sequences"


def _positions(frames: np.ndarray) -> np.ndarray:
    """Top-left corners ``[B, T, 2]`` of the single fully inked 28x28 digit in ``[B, T, H, W]``."""
    ink = frames > 0
    rows, cols = ink.any(axis=3), ink.any(axis=2)
    return np.stack([rows.argmax(axis=2), cols.argmax(axis=2)], axis=-1)


@pytest.fixture(scope="module")
def single_digit_run():
    digit = np.random.default_rng(0).uniform(0.1, 1.0, (1, 28, 28)).astype(np.float32)
    keys = jax.random.split(jax.random.key(5), 32)
    frames = np.asarray(mm.moving_mnist_sequences(keys, jnp.asarray(digit), num_digits=1))
    return digit[0], frames[..., 0]


def test_single_digit_is_drawn_unchanged(single_digit_run):
    digit, frames = single_digit_run
    positions = _positions(frames)
    for b, t in [(0, 0), (3, 7), (31, 19)]:
        y, x = positions[b, t]
        np.testing.assert_array_equal(frames[b, t, y : y + 28, x : x + 28], digit)
        assert frames[b, t].sum() == pytest.approx(digit.sum(), rel=1e-6)


def _check_motion(positions: np.ndarray) -> None:
    """The bouncing rules on recovered top-left corners ``[B, T, 2]`` in the 36 px free range."""
    assert positions.min() >= 0 and positions.max() <= FREE
    steps = np.diff(positions, axis=1)  # [B, T-1, 2]
    after = positions[:, 1:]
    # A bounce puts the corner exactly on a wall (pixel 0 or 36); other steps are straight moves
    # of 3.6 px, truncated to whole pixels (each axis within 1 px of the true step).
    straight = ((after > 0) & (after < FREE)).all(axis=-1)
    speeds = np.linalg.norm(steps, axis=-1)[straight]
    assert straight.mean() > 0.5
    assert np.all(np.abs(speeds - SPEED) < np.sqrt(2))
    assert abs(speeds.mean() - SPEED) < 0.3
    # Between bounces the velocity is constant: consecutive straight steps differ by <= 1 px/axis.
    both = straight[:, 1:] & straight[:, :-1]
    assert np.abs(np.diff(steps, axis=1))[both].max() <= 1
    # After touching a wall a digit moves away from it (or stays on it).
    on_low, on_high = positions[:, :-1] == 0, positions[:, :-1] == FREE
    assert np.all(steps[on_low] >= 0) and np.all(steps[on_high] <= 0)
    # A component of the motion reverses only at a wall.
    reverses = steps[:, 1:] * steps[:, :-1] < 0  # [B, T-2, 2]
    assert reverses.any()
    assert set(positions[:, 1:-1][reverses].tolist()) <= {0, FREE}


def test_single_digit_motion(single_digit_run):
    _, frames = single_digit_run
    _check_motion(_positions(frames))


def test_trajectory_statistics():
    keys = jax.random.split(jax.random.key(11), 2000)
    make = functools.partial(mm.bouncing_trajectories, num_frames=20, free_range=FREE)
    positions = np.asarray(jax.jit(jax.vmap(make))(keys))
    assert positions.shape == (2000, 20, 2) and positions.dtype == np.int32
    _check_motion(positions)
    # Uniform start: about as many digits in each half of the range, and every position visited.
    assert abs((positions[:, 0] < 18).mean() - 0.5) < 0.05
    assert set(np.unique(positions).tolist()) == set(range(FREE + 1))
    # Uniform direction: the first straight steps point equally often into each octant. (A wide
    # free range, so that truncation to whole pixels does not favour any direction.)
    wide = 30000
    make = functools.partial(mm.bouncing_trajectories, num_frames=2, free_range=wide)
    positions = np.asarray(jax.jit(jax.vmap(make))(keys))
    first = np.diff(positions, axis=1)[:, 0]
    inside = ((positions > 0) & (positions < wide)).all(axis=(1, 2))
    assert inside.mean() > 0.7
    np.testing.assert_allclose(np.linalg.norm(first[inside], axis=-1), 0.1 * wide, atol=2)
    angles = np.arctan2(first[inside, 0], first[inside, 1])
    counts = np.histogram(angles, bins=8, range=(-np.pi, np.pi))[0]
    assert counts.min() > 0.8 * counts.mean()


def test_trajectory_free_range_pair_and_other_speed():
    positions = np.asarray(
        mm.bouncing_trajectories(
            jax.random.key(2), num_frames=50, free_range=(10, 100), step_length=0.5
        )
    )
    assert positions[:, 0].max() <= 10 and positions[:, 1].max() <= 100


def test_paste_sprites_matches_numpy():
    rng = np.random.default_rng(0)
    sprites = rng.uniform(0, 1, (3, 28, 20)).astype(np.float32)
    positions = np.stack(
        [rng.integers(0, 37, (3, 5)), rng.integers(0, 45, (3, 5))], axis=-1
    ).astype(np.int32)
    got = np.asarray(mm.paste_sprites(jnp.asarray(sprites), jnp.asarray(positions), image_size=64))
    expected = np.zeros((5, 64, 64), np.float32)
    for d in range(3):
        for t in range(5):
            y, x = positions[d, t]
            canvas = np.zeros((64, 64), np.float32)
            canvas[y : y + 28, x : x + 20] = sprites[d]
            expected[t] = np.maximum(expected[t], canvas)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"keys": jax.random.key(0)}, r"`keys` must be a key array of shape \[B\], got \(\)"),
        ({"keys": np.zeros((4, 3), np.uint32)}, r"`keys` must be PRNG keys.*\(4, 3\)"),
        ({"digits": np.zeros((28, 28), np.float32)}, r"`digits` must have shape \[N, 28, 28\]"),
        ({"digits": np.zeros((0, 28, 28), np.float32)}, r"`digits` must have shape.*N >= 1"),
        ({"digits": np.zeros((2, 28, 28), np.int32)}, "`digits` must be float.*int32"),
        ({"digits": [[0.0]]}, "`digits` must be an array"),
        ({"image_size": 20}, r"`digits` of size \(28, 28\) do not fit.*`image_size` 20"),
        ({"num_frames": 0}, "`num_frames` must be an int >= 1, got 0"),
        ({"num_digits": 1.5}, "`num_digits` must be an int >= 1, got 1.5"),
        ({"step_length": 0.0}, r"`step_length` must be in \(0, 1\]"),
        ({"step_length": "fast"}, "`step_length` must be a float"),
    ],
)
def test_bad_arguments(kwargs, pattern):
    arguments = {
        "keys": jax.random.split(jax.random.key(0), 2),
        "digits": np.zeros((2, 28, 28), np.float32),
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        mm.moving_mnist_sequences(arguments.pop("keys"), arguments.pop("digits"), **arguments)


def test_bad_paste_arguments():
    sprites = jnp.zeros((2, 28, 28))
    with pytest.raises(ValueError, match=r"`positions` must have shape \[D, T, 2\] with D = 2"):
        mm.paste_sprites(sprites, jnp.zeros((3, 5, 2), jnp.int32), image_size=64)
    with pytest.raises(ValueError, match="`positions` must be integer"):
        mm.paste_sprites(sprites, jnp.zeros((2, 5, 2)), image_size=64)
    with pytest.raises(ValueError, match=r"`sprites` must have shape \[D, h, w\]"):
        mm.paste_sprites(sprites, jnp.zeros((2, 5, 2), jnp.int32), image_size=20)


def test_bad_test_set_arguments(square_digits):
    # Checked at the call, before any batch is asked for.
    with pytest.raises(ValueError, match="`batch_size` must be an int >= 1, got 0"):
        mm.moving_mnist_test_batches(square_digits, batch_size=0)
    with pytest.raises(ValueError, match="`digits` must have shape"):
        mm.moving_mnist_test_batches(square_digits[0])
    with pytest.raises(ValueError, match="`seed` must be an int"):
        mm.test_set_sha256(square_digits, seed="x")


def test_bad_trajectory_arguments():
    with pytest.raises(ValueError, match="`free_range` must be an int or a pair"):
        mm.bouncing_trajectories(jax.random.key(0), num_frames=3, free_range=(1, 2, 3))
    with pytest.raises(ValueError, match="`free_range` must hold ints >= 0"):
        mm.bouncing_trajectories(jax.random.key(0), num_frames=3, free_range=-1)
    with pytest.raises(ValueError, match="`batch_size` must be an int >= 1"):
        mm.generate_moving_mnist(jax.random.key(0), np.zeros((2, 28, 28)), batch_size=0)
    with pytest.raises(ValueError, match=r"`bits` must be uint32 of shape \[3\]"):
        mm.trajectory_from_bits(jnp.zeros((4,), jnp.uint32), num_frames=3, free_range=36)


# ------------------------------------------------------------------------------------------------
# The fixed test set.


def test_test_set_keys_are_a_prefix():
    small, large = mm.test_set_keys(3), mm.test_set_keys(10)
    base = jax.random.key(mm.TEST_SET_SEED, impl="threefry2x32")
    np.testing.assert_array_equal(jax.random.key_data(small), jax.random.key_data(large[:3]))
    np.testing.assert_array_equal(
        jax.random.key_data(large[7]), jax.random.key_data(jax.random.fold_in(base, 7))
    )
    with pytest.raises(ValueError, match="`num_sequences` must be an int >= 1, got 0"):
        mm.test_set_keys(0)


def test_test_batches_and_hash(square_digits):
    batches = list(mm.moving_mnist_test_batches(square_digits, num_sequences=10, batch_size=4))
    assert [b.shape for b in batches] == [(4, 20, 64, 64, 1)] * 2 + [(2, 20, 64, 64, 1)]
    assert all(b.dtype == jnp.float32 for b in batches)
    frames = np.concatenate([np.asarray(b) for b in batches])
    expected = mm.moving_mnist_sequences(mm.test_set_keys(10)[4:8], square_digits)
    np.testing.assert_array_equal(frames[4:8], np.asarray(expected))
    as_bytes = np.round(frames[..., 0] * 255).astype(np.uint8).tobytes()
    digest = mm.test_set_sha256(square_digits, num_sequences=10, batch_size=4)
    assert digest == hashlib.sha256(as_bytes).hexdigest()


def test_test_set_first_100_hash(real_test_digits):
    assert mm.test_set_sha256(real_test_digits, num_sequences=100) == mm.TEST_SET_SHA256_FIRST_100


def test_test_set_full_hash(real_test_digits):
    # About 5 s on 2 CPU cores after compilation, so it stays in the default run.
    assert mm.test_set_sha256(real_test_digits) == mm.TEST_SET_SHA256


def test_command_line(mnist_dir, tmp_path, capsys):
    saved = tmp_path / "set.npy"
    mm._main(
        [
            f"--mnist_dir={mnist_dir}",
            "--num_sequences=100",
            "--no_download",
            f"--save_npy={saved}",
        ]
    )
    assert capsys.readouterr().out.strip() == mm.TEST_SET_SHA256_FIRST_100
    loaded = mm.load_moving_mnist_npy(saved)
    assert loaded.shape == (100, 20, 64, 64, 1)
    digest = hashlib.sha256(np.ascontiguousarray(loaded[..., 0]).tobytes()).hexdigest()
    assert digest == mm.TEST_SET_SHA256_FIRST_100


# ------------------------------------------------------------------------------------------------
# The official file's loader.


def test_load_moving_mnist_npy(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (20, 5, 64, 64), dtype=np.uint8)
    path = tmp_path / "mnist_test_seq.npy"
    np.save(path, data)
    loaded = mm.load_moving_mnist_npy(path)
    assert loaded.shape == (5, 20, 64, 64, 1) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded[3, :, :, :, 0], data[:, 3])
    assert isinstance(loaded.base, np.ndarray)  # a view of the memory map, nothing copied
    assert mm.load_moving_mnist_npy(path, num_frames=None).shape == (5, 20, 64, 64, 1)
    with pytest.raises(ValueError, match=f"sha256 .* expected {mm.OFFICIAL_TEST_SEQ_SHA256}"):
        mm.load_moving_mnist_npy(path, verify_sha256=True)


@pytest.mark.parametrize(
    "array, pattern",
    [
        (np.zeros((20, 5, 64, 64), np.float32), "dtype float32, expected uint8"),
        (np.zeros((20, 5, 64), np.uint8), r"shape \(20, 5, 64\), expected rank 4"),
        (np.zeros((5, 20, 64, 64), np.uint8), "5 frames on axis 0, expected 20"),
        (np.zeros((20, 5, 64, 32), np.uint8), "frames of 64x32, expected 64x64"),
    ],
)
def test_load_moving_mnist_npy_bad_files(tmp_path, array, pattern):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(ValueError, match=pattern):
        mm.load_moving_mnist_npy(path)


def test_load_moving_mnist_npy_not_npy(tmp_path):
    path = tmp_path / "text.npy"
    path.write_text("hello")
    with pytest.raises(ValueError, match="not a readable .npy file"):
        mm.load_moving_mnist_npy(path)
    with pytest.raises(FileNotFoundError):
        mm.load_moving_mnist_npy(tmp_path / "missing.npy")
