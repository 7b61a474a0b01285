"""Data for the experiments: MNIST digits (IDX files, TFDS or download), Moving MNIST generated on
device with its fixed test set and the official test-file loader, and the embedded bouncing-shapes
dataset that needs no download.

Every generator returns ``float32 [B, T, H, W, 1]`` in [0, 1], one sequence per PRNG key.

The names below load their module on first use, so that ``python -m dfn_jax.data.moving_mnist``
runs the module once (an eager import here would load it twice and make ``runpy`` warn).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "mnist": (
        "MNIST_FILES",
        "MNIST_MIRRORS",
        "MNISTNotFoundError",
        "default_cache_dir",
        "digits_to_float",
        "load_mnist",
        "load_mnist_digits",
        "load_mnist_labels",
        "read_idx_file",
    ),
    "moving_mnist": (
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
    ),
    "shapes": (
        "SHAPE_KINDS",
        "bouncing_shapes_sequences",
        "generate_bouncing_shapes",
        "random_sprites",
    ),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from dfn_jax.data.mnist import (  # noqa: F401
        MNIST_FILES,
        MNIST_MIRRORS,
        MNISTNotFoundError,
        default_cache_dir,
        digits_to_float,
        load_mnist,
        load_mnist_digits,
        load_mnist_labels,
        read_idx_file,
    )
    from dfn_jax.data.moving_mnist import (  # noqa: F401
        OFFICIAL_TEST_SEQ_SHA256,
        TEST_SET_SEED,
        TEST_SET_SHA256,
        TEST_SET_SHA256_FIRST_100,
        bouncing_trajectories,
        generate_moving_mnist,
        load_moving_mnist_npy,
        moving_mnist_sequences,
        moving_mnist_test_batches,
        paste_sprites,
        test_set_keys,
        test_set_sha256,
        trajectory_from_bits,
    )
    from dfn_jax.data.shapes import (  # noqa: F401
        SHAPE_KINDS,
        bouncing_shapes_sequences,
        generate_bouncing_shapes,
        random_sprites,
    )
