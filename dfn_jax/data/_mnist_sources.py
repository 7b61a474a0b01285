"""Where MNIST comes from besides a folder: a prepared TFDS data dir, and the download cache
(files downloaded earlier, or a fresh download from the mirrors, sha256-checked before it is kept).

Each source returns the arrays or, when it cannot supply them, a string saying why, so that
:func:`dfn_jax.data.mnist.load_mnist_digits` can try the next one and list every reason when none
works. The mirrors are an argument (``dfn_jax.data.mnist.MNIST_MIRRORS`` at the time of the call).
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Sequence

import numpy as np

from dfn_jax.data._download import download
from dfn_jax.data._mnist_files import DIGIT_SIZE, MNISTFile, read_spec
from dfn_jax.data._tfds import tfds_images_and_labels

# Logged under the public module's name, as the loaders always were.
_LOG = logging.getLogger("dfn_jax.data.mnist")


def from_tfds(data_dir: pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray] | str:
    """Images ``[N, 28, 28]`` and labels ``[N]`` from a prepared TFDS data dir, or a reason."""
    return tfds_images_and_labels("mnist", split, data_dir, (DIGIT_SIZE, DIGIT_SIZE))


def download_file(
    spec: MNISTFile, cache_dir: pathlib.Path, mirrors: Sequence[str]
) -> pathlib.Path | str:
    """Downloads ``spec`` into ``cache_dir`` from the first mirror that serves the right bytes."""
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + spec.filename
        result = download(url, cache_dir / spec.filename, sha256=spec.sha256, logger=_LOG)
        if isinstance(result, pathlib.Path):
            return result
        failures.append(result)
    return "download failed: " + "; ".join(failures)


def from_cache(
    cache_dir: pathlib.Path, specs: list[MNISTFile], download: bool, mirrors: Sequence[str]
) -> list[np.ndarray] | str:
    """The arrays for ``specs`` from ``cache_dir``, downloading (when ``download``) what is missing
    or unusable; or the reason they are not available."""
    arrays = []
    for spec in specs:
        path = cache_dir / spec.filename
        if path.is_file():
            try:
                arrays.append(read_spec(path, spec))
                continue
            except ValueError as error:
                if not download:
                    raise
                _LOG.warning("Cached MNIST file is unusable (%s); downloading it again.", error)
        if not download:
            return f"{str(path)!r} is not there and download=False"
        result = download_file(spec, cache_dir, mirrors)
        if isinstance(result, str):
            return result
        arrays.append(read_spec(result, spec))
    return arrays
