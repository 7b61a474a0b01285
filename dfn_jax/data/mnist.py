"""MNIST digits for Moving MNIST and the other digit experiments, from whichever source is at hand.

``load_mnist_digits`` returns the 28x28 digit images as ``uint8 [N, 28, 28]`` (0 = background,
255 = ink), ``load_mnist_labels`` the class labels as ``uint8 [N]``, ``load_mnist`` both. The
sources are tried in this order:

1. ``mnist_dir`` (or the environment variable ``DFN_MNIST_DIR`` when it is ``None``; experiment
   configs pass ``data.mnist_dir``): a folder holding the original IDX files
   ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
   ``t10k-labels-idx1-ubyte.gz``, or the same names without ``.gz``. Gzipped files are checked
   against the published sha256 (``MNIST_FILES``); every file is checked for its IDX magic number
   (2051 for images, 2049 for labels) and for a header that matches the file size.
2. ``tfds_data_dir``: a TFDS data dir where ``mnist`` has been prepared, read through
   ``tfds.data_source`` (random access; it needs no TensorFlow).
3. The cache dir (``cache_dir``, else ``$DFN_CACHE_DIR/mnist``, else ``~/.cache/dfn_jax/mnist``):
   files downloaded earlier, then, when ``download`` is true, a fresh download of the missing files
   from ``MNIST_MIRRORS`` (written to a temporary file, sha256-checked, then renamed into place).

When none of them works ``MNISTNotFoundError`` says what was tried and the three ways to supply the
digits. A file that is found but corrupt raises ``ValueError`` instead of being skipped.

The IDX format and the file checks live in ``dfn_jax.data._mnist_files``, the TFDS and download
sources in ``dfn_jax.data._mnist_sources``; this module puts them in order and holds the public
names.
"""

from __future__ import annotations

import logging
import os
import pathlib

import numpy as np

from dfn_jax._src.checks import optional_path
from dfn_jax.data import _download, _mnist_files, _mnist_sources
from dfn_jax.data._mnist_files import (  # noqa: F401 - the constants stay importable from here
    DIGIT_SIZE,
    IMAGE_MAGIC,
    LABEL_MAGIC,
    MNIST_FILES,
    SPLITS,
    UINT8_TO_FLOAT,
    MNISTFile,
    digits_to_float,
    read_idx_file,
)

__all__ = [
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNISTNotFoundError",
    "default_cache_dir",
    "digits_to_float",
    "load_mnist",
    "load_mnist_digits",
    "load_mnist_labels",
    "read_idx_file",
]

_LOG = logging.getLogger(__name__)

MNIST_MIRRORS: tuple[str, ...] = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
"""Base URLs tried in order for a download; each serves the four original ``.gz`` files."""


class MNISTNotFoundError(FileNotFoundError):
    """No source supplied the MNIST files; the message lists what was tried and how to fix it."""


def default_cache_dir() -> pathlib.Path:
    """The MNIST download cache: ``$DFN_CACHE_DIR/mnist``, else ``$XDG_CACHE_HOME/dfn_jax/mnist``,
    else ``~/.cache/dfn_jax/mnist``."""
    return _download.default_cache_dir("mnist")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}.")


def _not_found_message(
    split: str, what: str, tried: list[str], cache_dir: pathlib.Path, download: bool
) -> str:
    lines = [f"Could not find the MNIST {split!r} {what}. Tried, in order:"]
    lines += [f"  - {item}" for item in tried]
    lines += [
        "Supply the digits in one of three ways:",
        "  1. an MNIST folder: `mnist_dir=` (or the environment variable DFN_MNIST_DIR, or the "
        "config key `data.mnist_dir`) naming a folder with the four original IDX files "
        + ", ".join(spec.filename for spec in MNIST_FILES.values())
        + " (gzipped or not);",
        "  2. a TFDS data dir: `tfds_data_dir=` naming a data dir where `mnist` has been prepared "
        "(e.g. by `tfds build mnist --data_dir=DIR` on a machine with TensorFlow);",
        f"  3. a network download (download=True{'' if download else ', currently off'}) into the "
        f"cache dir {str(cache_dir)!r} (set `cache_dir=` or DFN_CACHE_DIR) from "
        + ", ".join(MNIST_MIRRORS)
        + "; or copy the four files there yourself.",
    ]
    return "\n".join(lines)


def _load(
    split: str,
    kinds: tuple[str, ...],
    *,
    mnist_dir,
    tfds_data_dir,
    download: bool,
    cache_dir,
) -> list[np.ndarray]:
    _check_split(split)
    if not isinstance(download, bool):
        raise ValueError(f"`download` must be a bool, got {download!r}.")
    mnist_dir = optional_path(mnist_dir, name="mnist_dir")
    tfds_data_dir = optional_path(tfds_data_dir, name="tfds_data_dir")
    cache_dir = optional_path(cache_dir, name="cache_dir") or default_cache_dir()
    specs = [MNIST_FILES[(split, kind)] for kind in kinds]
    tried = []

    env_dir = os.environ.get("DFN_MNIST_DIR")
    if mnist_dir is None and env_dir:
        mnist_dir, dir_label = pathlib.Path(env_dir).expanduser(), "DFN_MNIST_DIR"
    else:
        dir_label = "mnist_dir"
    if mnist_dir is not None:
        result = _mnist_files.from_dir(mnist_dir, specs)
        if not isinstance(result, str):
            return result
        tried.append(f"{dir_label}: {result}")
        _LOG.warning("MNIST not usable from %s: %s; trying other sources.", dir_label, result)
    else:
        tried.append("mnist_dir: not given (and DFN_MNIST_DIR is not set)")

    if tfds_data_dir is not None:
        result = _mnist_sources.from_tfds(tfds_data_dir, split)
        if not isinstance(result, str):
            by_kind = {"images": result[0], "labels": result[1]}
            return [by_kind[kind] for kind in kinds]
        tried.append(f"tfds_data_dir: {result}")
        _LOG.warning("MNIST not usable from tfds_data_dir: %s; trying other sources.", result)
    else:
        tried.append("tfds_data_dir: not given")

    result = _mnist_sources.from_cache(cache_dir, specs, download, MNIST_MIRRORS)
    if not isinstance(result, str):
        return result
    tried.append(f"cache dir {str(cache_dir)!r}: {result}")
    raise MNISTNotFoundError(_not_found_message(split, "/".join(kinds), tried, cache_dir, download))


def load_mnist(
    split: str = "train",
    *,
    mnist_dir: str | os.PathLike | None = None,
    tfds_data_dir: str | os.PathLike | None = None,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST images ``uint8 [N, 28, 28]`` and labels ``uint8 [N]`` of ``split`` ("train": N = 60000,
    "test": N = 10000). Sources and arguments as in ``load_mnist_digits``."""
    images, labels = _load(
        split,
        ("images", "labels"),
        mnist_dir=mnist_dir,
        tfds_data_dir=tfds_data_dir,
        download=download,
        cache_dir=cache_dir,
    )
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"MNIST {split!r} images and labels disagree: {images.shape[0]} images, "
            f"{labels.shape[0]} labels."
        )
    return images, labels


def load_mnist_digits(
    split: str = "train",
    *,
    mnist_dir: str | os.PathLike | None = None,
    tfds_data_dir: str | os.PathLike | None = None,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """The MNIST digit images of ``split``, ``uint8 [N, 28, 28]`` (0 = background, 255 = ink).

    Args:
      split: "train" (60,000 digits) or "test" (10,000).
      mnist_dir: folder with the original IDX files; ``None`` reads ``DFN_MNIST_DIR``.
      tfds_data_dir: a TFDS data dir where ``mnist`` is prepared.
      download: whether to download missing files into the cache dir.
      cache_dir: the download cache; ``None`` means ``default_cache_dir()``.

    Use ``digits_to_float`` for ``float32`` in [0, 1]. See the module docstring for the order in
    which the sources are tried.

    Raises:
      MNISTNotFoundError: no source has the files (the message lists the three ways to add one).
      ValueError: a bad argument, or a file that is there but corrupt.
    """
    (images,) = _load(
        split,
        ("images",),
        mnist_dir=mnist_dir,
        tfds_data_dir=tfds_data_dir,
        download=download,
        cache_dir=cache_dir,
    )
    return images


def load_mnist_labels(
    split: str = "train",
    *,
    mnist_dir: str | os.PathLike | None = None,
    tfds_data_dir: str | os.PathLike | None = None,
    download: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """The MNIST class labels of ``split``, ``uint8 [N]`` in 0..9; arguments as in
    ``load_mnist_digits``."""
    (labels,) = _load(
        split,
        ("labels",),
        mnist_dir=mnist_dir,
        tfds_data_dir=tfds_data_dir,
        download=download,
        cache_dir=cache_dir,
    )
    return labels
