"""Moving MNIST generated on device, the fixed test set, and a loader for the official test file.

Each sequence shows ``num_digits`` (2) MNIST digits of 28x28 bouncing inside a 64x64 canvas for
``num_frames`` (20) frames, as in Srivastava et al. (2015) and the DFN paper: a digit's top-left
corner starts uniformly in the free range ``[0, 64 - 28] = [0, 36]`` on each axis, moves in a
uniformly random direction by ``step_length`` (0.1) of the free range per frame (3.6 px), and when
it leaves ``[0, 36]`` it is put back on the wall and that velocity component is reversed. As in the
original generator the position is stepped before each frame is drawn and truncated to whole
pixels; overlapping digits are combined with ``max``. Output is ``float32 [B, T, H, W, 1]`` in
[0, 1].

Built to be bit-reproducible across backends: the random numbers are raw ``jax.random.bits``
(threefry unless the caller's keys say otherwise), trajectories are integer fixed-point arithmetic
(a position unit is 1/65536 of the free range; the direction is one of 4096 equally spaced angles,
its step taken from a table computed once in NumPy float64), uint8 digits are scaled by one
multiplication and placed by slicing. No floating-point rounding decides a pixel, so the same key
should give the same bytes on CPU, GPU and TPU (checked on CPU so far).

The test set: sequence ``i`` uses the key ``fold_in(key(TEST_SET_SEED), i)`` (threefry2x32) and the
MNIST *test* digits, so any smaller set is a prefix of the 10,000-sequence one. Its uint8 bytes
(``round(255 * x)``, layout ``[N, T, H, W]``) hash, with sha256, to

- all 10,000 sequences (``TEST_SET_SHA256``):
  ``d56870116aa4d5336701cadd8bdbd29787a52f212fa4a090fe067043fcccce24``
- the first 100 (``TEST_SET_SHA256_FIRST_100``):
  ``e037a0f0e6964b293d97eb2f6203e7c722bb299c6dd3b92ff7c81a4d22a5a233``

The hashes were computed with JAX 0.10.2, whose threefry uses ``jax_threefry_partitionable=True``
(the default since JAX 0.5); recompute them with::

    python -m dfn_jax.data.moving_mnist --mnist_dir=DIR [--num_sequences=10000]

This is not Srivastava's file ``mnist_test_seq.npy`` (a different random draw);
``load_moving_mnist_npy`` reads that one.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import math
import os
import pathlib
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dfn_jax.data import mnist

__all__ = [
    "OFFICIAL_TEST_SEQ_SHA256",
    "TEST_SET_SEED",
    "TEST_SET_SHA256",
    "TEST_SET_SHA256_FIRST_100",
    "bouncing_trajectories",
    "generate_moving_mnist",
    "load_moving_mnist_npy",
    "moving_mnist_sequences",
    "moving_mnist_test_batches",
    "paste_sprites",
    "test_set_keys",
    "test_set_sha256",
    "trajectory_from_bits",
]

TEST_SET_SEED = 160509673
"""Seed of the fixed Moving MNIST test set: the paper's arXiv number, 1605.09673."""

TEST_SET_SHA256 = "d56870116aa4d5336701cadd8bdbd29787a52f212fa4a090fe067043fcccce24"
"""sha256 of the uint8 bytes of the 10,000 test sequences (``[N, 20, 64, 64]``)."""

TEST_SET_SHA256_FIRST_100 = "e037a0f0e6964b293d97eb2f6203e7c722bb299c6dd3b92ff7c81a4d22a5a233"
"""sha256 of the uint8 bytes of the first 100 test sequences (``[100, 20, 64, 64]``)."""

OFFICIAL_TEST_SEQ_SHA256 = "c2a3e8d3939c001ab77bf543f130157424efa486bb4d0974d2cebb773b13f8b3"
"""sha256 of Srivastava's ``mnist_test_seq.npy`` (819,200,096 bytes, ``(20, 10000, 64, 64)``)."""

POSITION_UNITS = 1 << 16
"""Fixed-point units per free range in which trajectories are computed."""

NUM_DIRECTIONS = 4096
"""Number of equally spaced directions a trajectory can take."""

_DIRECTION_BITS = 12  # log2(NUM_DIRECTIONS)


# ----------------------------------------------------------------------------------------------
# Argument checks (shapes and dtypes only, so they also run under jit).


def _positive_int(value, *, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}.")
    return int(value)


def _step_length(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"`step_length` must be a float in (0, 1], got {value!r}.")
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(
            f"`step_length` must be in (0, 1] (a fraction of the free range per frame), got "
            f"{value!r}."
        )
    return value


def _free_range_pair(free_range) -> tuple[int, int]:
    if isinstance(free_range, (int, np.integer)) and not isinstance(free_range, bool):
        pair = (int(free_range), int(free_range))
    elif isinstance(free_range, Sequence) and len(free_range) == 2:
        pair = tuple(free_range)
    else:
        raise ValueError(
            f"`free_range` must be an int or a pair (rows, cols) of ints >= 0, got {free_range!r}."
        )
    for value in pair:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"`free_range` must hold ints >= 0, got {free_range!r}.")
        if value * POSITION_UNITS >= 2**31:
            raise ValueError(f"`free_range` must be < 32768 pixels, got {free_range!r}.")
    return int(pair[0]), int(pair[1])


def _key_array(keys, *, name: str, ndim: int) -> jax.Array:
    """A typed key array of rank ``ndim`` from typed keys or legacy raw ``uint32 [..., 2]`` keys."""
    dtype = getattr(keys, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if keys.ndim != ndim:
            layout = "[B]" if ndim == 1 else "[] (a single key)"
            raise ValueError(f"`{name}` must be a key array of shape {layout}, got {keys.shape}.")
        return keys
    if dtype == jnp.uint32 and keys.ndim == ndim + 1 and keys.shape[-1] == 2:
        return jax.random.wrap_key_data(keys)
    layout = "[B]" if ndim == 1 else "[]"
    raise ValueError(
        f"`{name}` must be PRNG keys of shape {layout} (from jax.random.key / split) or raw uint32 "
        f"keys of shape {layout[:-1] + ', 2]' if ndim else '[2]'}, got "
        f"{type(keys).__name__} with shape {getattr(keys, 'shape', None)} and dtype {dtype}."
    )


def _check_digits(digits, *, image_size: int) -> jax.Array:
    if not hasattr(digits, "dtype") or not hasattr(digits, "ndim"):
        raise ValueError(
            f"`digits` must be an array [N, 28, 28] (float in [0, 1] or uint8), got "
            f"{type(digits).__name__}."
        )
    if digits.ndim != 3 or digits.shape[0] < 1:
        raise ValueError(f"`digits` must have shape [N, 28, 28] with N >= 1, got {digits.shape}.")
    if digits.shape[1] > image_size or digits.shape[2] > image_size:
        raise ValueError(
            f"`digits` of size {digits.shape[1:]} do not fit in a canvas of `image_size` "
            f"{image_size}; expected digits no larger than the canvas."
        )
    if digits.dtype != jnp.uint8 and not jnp.issubdtype(digits.dtype, jnp.floating):
        raise ValueError(
            f"`digits` must be float in [0, 1] (see digits_to_float) or uint8, got dtype "
            f"{digits.dtype}."
        )
    return jnp.asarray(digits)


# ----------------------------------------------------------------------------------------------
# Motion and drawing, shared with the embedded shapes dataset.


@functools.lru_cache(maxsize=16)
def _direction_table(step_length: float) -> np.ndarray:
    """``int32 [NUM_DIRECTIONS, 2]``: per-frame (row, col) step in position units per direction."""
    angles = (np.arange(NUM_DIRECTIONS, dtype=np.float64) + 0.5) * (2.0 * np.pi / NUM_DIRECTIONS)
    steps = step_length * POSITION_UNITS * np.stack([np.sin(angles), np.cos(angles)], axis=-1)
    return np.rint(steps).astype(np.int32)


def bouncing_trajectories(
    key: jax.Array,
    *,
    num_frames: int,
    free_range: int | tuple[int, int],
    step_length: float = 0.1,
) -> jax.Array:
    """Top-left pixel positions of one object bouncing in a box, ``int32 [T, 2]`` (row, col).

    The start is uniform in ``[0, free_range]`` per axis, the direction uniform over
    ``NUM_DIRECTIONS`` angles and the speed ``step_length * free_range`` px per frame. Each frame
    first takes a step; a coordinate that leaves the free range is put back on the wall and its
    velocity reversed. Positions are integer fixed point, truncated to pixels, so the result is
    bit-identical on every backend. ``vmap`` over keys for several objects.

    Args:
      key: one PRNG key (shape ``[]``).
      num_frames: ``T``.
      free_range: image size minus object size (36 for a 28 px digit on 64 px), or a pair
        (rows, cols).
      step_length: step per frame as a fraction of the free range.
    """
    key = _key_array(key, name="key", ndim=0)
    return _bouncing_trajectories(
        key,
        num_frames=_positive_int(num_frames, name="num_frames"),
        free_range=_free_range_pair(free_range),
        step_length=_step_length(step_length),
    )


@functools.partial(jax.jit, static_argnames=("num_frames", "free_range", "step_length"))
def _bouncing_trajectories(key, *, num_frames, free_range, step_length):
    return trajectory_from_bits(
        jax.random.bits(key, (3,), jnp.uint32),
        num_frames=num_frames,
        free_range=free_range,
        step_length=step_length,
    )


def trajectory_from_bits(
    bits: jax.Array,
    *,
    num_frames: int,
    free_range: int | tuple[int, int],
    step_length: float = 0.1,
) -> jax.Array:
    """``bouncing_trajectories`` from three random ``uint32`` words ``[3]`` instead of a key.

    The datasets draw all of a sequence's random bits with one ``jax.random.bits`` call (each
    threefry call costs about a second of CPU compile time) and hand three words to each object.
    """
    num_frames = _positive_int(num_frames, name="num_frames")
    free = np.asarray(_free_range_pair(free_range), dtype=np.int32)
    step_length = _step_length(step_length)
    if bits.shape != (3,) or bits.dtype != jnp.uint32:
        raise ValueError(f"`bits` must be uint32 of shape [3], got {bits.dtype} {bits.shape}.")
    start = (bits[:2] % jnp.uint32(POSITION_UNITS + 1)).astype(jnp.int32)
    direction = (bits[2] >> jnp.uint32(32 - _DIRECTION_BITS)).astype(jnp.int32)
    velocity = jnp.asarray(_direction_table(step_length))[direction]

    def step(carry, _):
        position, velocity = carry
        position = position + velocity
        outside = (position <= 0) | (position >= POSITION_UNITS)
        velocity = jnp.where(outside, -velocity, velocity)
        position = jnp.clip(position, 0, POSITION_UNITS)
        return (position, velocity), position

    _, positions = lax.scan(step, (start, velocity), None, length=num_frames)
    # positions * free < 2**31 (checked), so the product is exact in int32.
    return (positions * jnp.asarray(free)[None, :]) // POSITION_UNITS


def paste_sprites(sprites: jax.Array, positions: jax.Array, *, image_size: int) -> jax.Array:
    """Draws sprites at integer positions and combines overlaps with ``max``.

    Args:
      sprites: ``[D, h, w]`` float, values >= 0.
      positions: ``int32 [D, T, 2]`` top-left (row, col) per sprite and frame, within
        ``[0, image_size - h] x [0, image_size - w]``.
      image_size: canvas side ``H = W``.

    Returns:
      ``[T, H, W]`` frames, same dtype as ``sprites``. Positions outside the free range are clamped
      into it (the sprite is drawn against the wall), as ``lax.dynamic_slice`` does.
    """
    image_size = _positive_int(image_size, name="image_size")
    if sprites.ndim != 3 or sprites.shape[1] > image_size or sprites.shape[2] > image_size:
        raise ValueError(
            f"`sprites` must have shape [D, h, w] with h, w <= `image_size` {image_size}, got "
            f"{sprites.shape}."
        )
    if positions.ndim != 3 or positions.shape[0] != sprites.shape[0] or positions.shape[2] != 2:
        raise ValueError(
            f"`positions` must have shape [D, T, 2] with D = {sprites.shape[0]} (one row per "
            f"sprite), got {positions.shape}."
        )
    if not jnp.issubdtype(positions.dtype, jnp.integer):
        raise ValueError(f"`positions` must be integer pixel positions, got {positions.dtype}.")
    num, height, width = sprites.shape
    free_rows, free_cols = image_size - height, image_size - width
    # Each sprite sits in a zero plate so that the (H, W) window at (free - y, free - x) shows it at
    # (y, x): a batched dynamic slice, exact on every backend and faster on CPU than a scatter.
    plates = jnp.pad(sprites, ((0, 0), (free_rows, free_rows), (free_cols, free_cols)))

    def window(plate, position):
        return lax.dynamic_slice(
            plate, (free_rows - position[0], free_cols - position[1]), (image_size, image_size)
        )

    windows = jax.vmap(window, in_axes=(None, 0))  # one sprite over its [T, 2] positions
    frames = windows(plates[0], positions[0])
    for index in range(1, num):  # num is small and static; a loop of maxima is fastest on CPU
        frames = jnp.maximum(frames, windows(plates[index], positions[index]))
    return frames


# ----------------------------------------------------------------------------------------------
# Moving MNIST.


def _one_sequence(key, digits, *, num_frames, image_size, num_digits, step_length):
    # One threefry call per sequence: per digit, an index word and three trajectory words.
    bits = jax.random.bits(key, (num_digits, 4), jnp.uint32)
    index = (bits[:, 0] % jnp.uint32(digits.shape[0])).astype(jnp.int32)
    chosen = digits[index]
    if chosen.dtype == jnp.uint8:
        chosen = chosen.astype(jnp.float32) * mnist.UINT8_TO_FLOAT  # as digits_to_float does
    chosen = chosen.astype(jnp.float32)
    free_range = (image_size - digits.shape[1], image_size - digits.shape[2])
    trajectories = jax.vmap(
        functools.partial(
            trajectory_from_bits,
            num_frames=num_frames,
            free_range=free_range,
            step_length=step_length,
        )
    )(bits[:, 1:])
    return paste_sprites(chosen, trajectories, image_size=image_size)


@functools.partial(
    jax.jit, static_argnames=("num_frames", "image_size", "num_digits", "step_length")
)
def _sequences(keys, digits, *, num_frames, image_size, num_digits, step_length):
    frames = jax.vmap(
        functools.partial(
            _one_sequence,
            num_frames=num_frames,
            image_size=image_size,
            num_digits=num_digits,
            step_length=step_length,
        ),
        in_axes=(0, None),
    )(keys, digits)
    return frames[..., None]


def moving_mnist_sequences(
    keys: jax.Array,
    digits: jax.Array,
    *,
    num_frames: int = 20,
    image_size: int = 64,
    num_digits: int = 2,
    step_length: float = 0.1,
) -> jax.Array:
    """Moving MNIST sequences, one per key: ``float32 [B, T, H, W, 1]`` in [0, 1].

    Sequence ``b`` depends only on ``keys[b]`` (and on ``digits`` and the options), so batches can
    be split or regrouped freely. Jitted inside; also callable under ``jax.jit`` with the options
    static.

    Args:
      keys: ``[B]`` PRNG keys (or legacy raw ``uint32 [B, 2]``).
      digits: ``[N, 28, 28]`` float32 in [0, 1] (``digits_to_float``) or uint8 (0..255, converted
        on the fly, 4x less device memory). Each sequence draws ``num_digits`` of them uniformly.
      num_frames: ``T``.
      image_size: canvas side ``H = W``.
      num_digits: digits per sequence.
      step_length: speed as a fraction of the free range ``image_size - 28`` per frame.
    """
    num_frames = _positive_int(num_frames, name="num_frames")
    image_size = _positive_int(image_size, name="image_size")
    num_digits = _positive_int(num_digits, name="num_digits")
    step_length = _step_length(step_length)
    keys = _key_array(keys, name="keys", ndim=1)
    digits = _check_digits(digits, image_size=image_size)
    return _sequences(
        keys,
        digits,
        num_frames=num_frames,
        image_size=image_size,
        num_digits=num_digits,
        step_length=step_length,
    )


def generate_moving_mnist(
    key: jax.Array, digits: jax.Array, *, batch_size: int, **kwargs
) -> jax.Array:
    """A batch of ``batch_size`` sequences from one key: ``float32 [B, T, H, W, 1]`` in [0, 1].

    Splits ``key`` into ``batch_size`` keys and calls ``moving_mnist_sequences`` (which takes the
    same keyword options).
    """
    batch_size = _positive_int(batch_size, name="batch_size")
    key = _key_array(key, name="key", ndim=0)
    return moving_mnist_sequences(jax.random.split(key, batch_size), digits, **kwargs)


# ----------------------------------------------------------------------------------------------
# The fixed test set.


def test_set_keys(num_sequences: int, *, seed: int = TEST_SET_SEED) -> jax.Array:
    """Keys ``[num_sequences]`` of the test set: key ``i`` is ``fold_in(key(seed), i)`` (threefry).

    Key ``i`` does not depend on ``num_sequences``, so a smaller set is a prefix of a larger one.
    """
    num_sequences = _positive_int(num_sequences, name="num_sequences")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"`seed` must be an int, got {seed!r}.")
    base = jax.random.key(int(seed), impl="threefry2x32")
    indices = jnp.arange(num_sequences, dtype=jnp.uint32)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(base, indices)


test_set_keys.__test__ = False  # Not a pytest test, despite the name.


def _test_set_chunks(
    test_digits, *, num_sequences: int, batch_size: int, seed: int, as_uint8: bool
) -> Iterator[jax.Array]:
    """Checks the arguments now, then returns the generator of batches."""
    num_sequences = _positive_int(num_sequences, name="num_sequences")
    batch_size = _positive_int(batch_size, name="batch_size")
    digits = _check_digits(test_digits, image_size=64)
    keys = test_set_keys(math.ceil(num_sequences / batch_size) * batch_size, seed=seed)

    def batches():
        for start in range(0, num_sequences, batch_size):
            # Always a full batch (one compilation); the padding sequences are dropped.
            batch = _test_batch(keys[start : start + batch_size], digits, as_uint8=as_uint8)
            yield batch[: min(batch_size, num_sequences - start)]

    return batches()


@functools.partial(jax.jit, static_argnames=("as_uint8",))
def _test_batch(keys, digits, *, as_uint8):
    """One test batch, ``float32 [B, 20, 64, 64, 1]`` or (fused, 2-3x faster to hash) its uint8
    ``round(255 * x)`` as ``[B, 20, 64, 64]``."""
    frames = _sequences(keys, digits, num_frames=20, image_size=64, num_digits=2, step_length=0.1)
    if as_uint8:
        return jnp.round(frames[..., 0] * 255.0).astype(jnp.uint8)
    return frames


def moving_mnist_test_batches(
    test_digits: jax.Array,
    *,
    num_sequences: int = 10000,
    batch_size: int = 100,
    seed: int = TEST_SET_SEED,
) -> Iterator[jax.Array]:
    """Yields the fixed test set in order as ``float32 [b, 20, 64, 64, 1]`` batches in [0, 1].

    Every batch has ``batch_size`` sequences except possibly the last. ``test_digits`` are the
    MNIST test digits ``[10000, 28, 28]`` (float in [0, 1] or uint8); with them and the default
    seed the batches hash to ``TEST_SET_SHA256``. Arguments are checked at the call, batches are
    generated (on the default device) as the iterator is consumed.
    """
    return _test_set_chunks(
        test_digits,
        num_sequences=num_sequences,
        batch_size=batch_size,
        seed=seed,
        as_uint8=False,
    )


def test_set_sha256(
    test_digits: jax.Array,
    *,
    num_sequences: int = 10000,
    batch_size: int = 250,
    seed: int = TEST_SET_SEED,
) -> str:
    """sha256 hex of the test set's uint8 bytes (``round(255 * x)``, layout ``[N, 20, 64, 64]``).

    Computed batch by batch on device in uint8; the result does not depend on ``batch_size``.
    """
    digest = hashlib.sha256()
    for chunk in _test_set_chunks(
        test_digits,
        num_sequences=num_sequences,
        batch_size=batch_size,
        seed=seed,
        as_uint8=True,
    ):
        digest.update(np.ascontiguousarray(jax.device_get(chunk)).tobytes())
    return digest.hexdigest()


test_set_sha256.__test__ = False  # Not a pytest test, despite the name.


# ----------------------------------------------------------------------------------------------
# Srivastava's official test file.


def load_moving_mnist_npy(
    path: str | os.PathLike,
    *,
    num_frames: int | None = 20,
    image_size: int | None = 64,
    verify_sha256: bool = False,
) -> np.ndarray:
    """Reads ``mnist_test_seq.npy`` (layout ``(T, N, H, W)`` uint8) as ``uint8 [N, T, H, W, 1]``.

    The file is memory-mapped and the result is a (non-contiguous) view of it, so nothing is read
    until used. Values are 0..255: convert a batch with ``batch.astype(np.float32) / 255`` (or
    ``digits_to_float``) to match ``moving_mnist_sequences``.

    Args:
      path: the ``.npy`` file.
      num_frames: expected ``T`` (20 in the official file); ``None`` accepts any.
      image_size: expected ``H = W`` (64); ``None`` accepts any square size.
      verify_sha256: check the whole file against ``OFFICIAL_TEST_SEQ_SHA256`` (reads 819 MB).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Moving MNIST file not found: {str(path)!r}.")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(
            f"`path` {str(path)!r} is not a readable .npy file: {error}. Expected Srivastava's "
            "mnist_test_seq.npy, uint8 of shape (20, N, 64, 64)."
        ) from None
    if array.dtype != np.uint8:
        raise ValueError(
            f"`path` {str(path)!r} holds dtype {array.dtype}, expected uint8 (0..255) in layout "
            "(T, N, H, W)."
        )
    if array.ndim != 4:
        raise ValueError(
            f"`path` {str(path)!r} holds shape {array.shape}, expected rank 4 (T, N, H, W), e.g. "
            "(20, 10000, 64, 64)."
        )
    frames, _, height, width = array.shape
    if num_frames is not None and frames != num_frames:
        raise ValueError(
            f"`path` {str(path)!r} holds shape {array.shape}: {frames} frames on axis 0, expected "
            f"{num_frames} (layout (T, N, H, W))."
        )
    if height != width or (image_size is not None and height != image_size):
        expected = image_size if image_size is not None else "H = W"
        raise ValueError(
            f"`path` {str(path)!r} holds shape {array.shape}: frames of {height}x{width}, expected "
            f"{expected}x{expected} (layout (T, N, H, W))."
        )
    if verify_sha256:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            while chunk := file.read(1 << 24):
                digest.update(chunk)
        if digest.hexdigest() != OFFICIAL_TEST_SEQ_SHA256:
            raise ValueError(
                f"`path` {str(path)!r} has sha256 {digest.hexdigest()}, expected "
                f"{OFFICIAL_TEST_SEQ_SHA256} (the official mnist_test_seq.npy)."
            )
    return np.transpose(array, (1, 0, 2, 3))[..., None]


# ----------------------------------------------------------------------------------------------
# Command line: print (and optionally save) the test set.


def _main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dfn_jax.data.moving_mnist",
        description="Generates the fixed Moving MNIST test set and prints its sha256.",
    )
    parser.add_argument("--mnist_dir", default=None, help="folder with the MNIST IDX files")
    parser.add_argument("--tfds_data_dir", default=None, help="TFDS data dir with mnist prepared")
    parser.add_argument("--no_download", action="store_true", help="never download MNIST")
    parser.add_argument("--num_sequences", type=int, default=10000)
    parser.add_argument("--batch_size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=TEST_SET_SEED)
    parser.add_argument(
        "--save_npy",
        default=None,
        help="also write the set to this .npy in the official layout (20, N, 64, 64) uint8",
    )
    args = parser.parse_args(argv)
    digits = mnist.load_mnist_digits(
        "test",
        mnist_dir=args.mnist_dir,
        tfds_data_dir=args.tfds_data_dir,
        download=not args.no_download,
    )
    if args.save_npy is not None:
        out = np.lib.format.open_memmap(
            args.save_npy, mode="w+", dtype=np.uint8, shape=(20, args.num_sequences, 64, 64)
        )
    digest = hashlib.sha256()
    start = 0
    for chunk in _test_set_chunks(
        digits,
        num_sequences=args.num_sequences,
        batch_size=args.batch_size,
        seed=args.seed,
        as_uint8=True,
    ):
        chunk = np.ascontiguousarray(jax.device_get(chunk))
        digest.update(chunk.tobytes())
        if args.save_npy is not None:
            out[:, start : start + chunk.shape[0]] = np.transpose(chunk, (1, 0, 2, 3))
        start += chunk.shape[0]
    if args.save_npy is not None:
        out.flush()
        del out
    print(digest.hexdigest())


if __name__ == "__main__":
    _main()
