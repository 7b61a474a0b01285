"""The fixed Moving MNIST test set, its hashes, a loader for Srivastava's official test file, and
the command line ``python -m dfn_jax.data.moving_mnist`` that prints (and can save) the set.

Sequence ``i`` of the test set uses the key ``fold_in(key(TEST_SET_SEED), i)`` (threefry2x32,
``test_set_keys``) and the MNIST *test* digits, so a smaller set is a prefix of a larger one;
``test_set_sha256`` hashes its uint8 bytes on device, batch by batch. See
:mod:`dfn_jax.data.moving_mnist` for the hashes and how they were computed.
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

from dfn_jax._src.checks import positive_int
from dfn_jax.data import mnist
from dfn_jax.data._moving_mnist_generator import check_digits, sequences

TEST_SET_SEED = 160509673
"""Seed of the fixed Moving MNIST test set: the paper's arXiv number, 1605.09673."""

TEST_SET_SHA256 = "d56870116aa4d5336701cadd8bdbd29787a52f212fa4a090fe067043fcccce24"
"""sha256 of the uint8 bytes of the 10,000 test sequences (``[N, 20, 64, 64]``)."""

TEST_SET_SHA256_FIRST_100 = "e037a0f0e6964b293d97eb2f6203e7c722bb299c6dd3b92ff7c81a4d22a5a233"
"""sha256 of the uint8 bytes of the first 100 test sequences (``[100, 20, 64, 64]``)."""

OFFICIAL_TEST_SEQ_SHA256 = "c2a3e8d3939c001ab77bf543f130157424efa486bb4d0974d2cebb773b13f8b3"
"""sha256 of Srivastava's ``mnist_test_seq.npy`` (819,200,096 bytes, ``(20, 10000, 64, 64)``)."""


def test_set_keys(num_sequences: int, *, seed: int = TEST_SET_SEED) -> jax.Array:
    """Keys ``[num_sequences]`` of the test set: key ``i`` is ``fold_in(key(seed), i)`` (threefry).

    Key ``i`` does not depend on ``num_sequences``, so a smaller set is a prefix of a larger one.
    """
    num_sequences = positive_int(num_sequences, name="num_sequences")
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
    num_sequences = positive_int(num_sequences, name="num_sequences")
    batch_size = positive_int(batch_size, name="batch_size")
    digits = check_digits(test_digits, image_size=64)
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
    frames = sequences(keys, digits, num_frames=20, image_size=64, num_digits=2, step_length=0.1)
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


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: generates the test set, prints its sha256, optionally saves it."""
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
