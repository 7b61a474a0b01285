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

The code lives in three private modules: ``_bouncing`` (trajectories and sprite drawing, shared
with the bouncing shapes), ``_moving_mnist_generator`` (the sequences) and
``_moving_mnist_test_set`` (the test set, the official file's loader and the command line); this
module holds the public names.
"""

from __future__ import annotations

from dfn_jax.data._bouncing import (  # noqa: F401 - the constants stay importable from here
    NUM_DIRECTIONS,
    POSITION_UNITS,
    bouncing_trajectories,
    paste_sprites,
    trajectory_from_bits,
)
from dfn_jax.data._moving_mnist_generator import generate_moving_mnist, moving_mnist_sequences
from dfn_jax.data._moving_mnist_test_set import (
    OFFICIAL_TEST_SEQ_SHA256,
    TEST_SET_SEED,
    TEST_SET_SHA256,
    TEST_SET_SHA256_FIRST_100,
    load_moving_mnist_npy,
    moving_mnist_test_batches,
    test_set_keys,
    test_set_sha256,
)
from dfn_jax.data._moving_mnist_test_set import main as _main

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


if __name__ == "__main__":
    _main()
