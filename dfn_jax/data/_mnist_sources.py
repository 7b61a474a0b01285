"""Where MNIST comes from besides a folder: a prepared TFDS data dir, and the download cache
(files downloaded earlier, or a fresh download from the mirrors, sha256-checked before it is kept).

Each source returns the arrays or, when it cannot supply them, a string saying why, so that
:func:`dfn_jax.data.mnist.load_mnist_digits` can try the next one and list every reason when none
works. The mirrors are an argument (``dfn_jax.data.mnist.MNIST_MIRRORS`` at the time of the call).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import pathlib
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence

import numpy as np

from dfn_jax.data._mnist_files import DIGIT_SIZE, MNISTFile, read_spec
from dfn_jax.data._tfds import tfds_images_and_labels

# Logged under the public module's name, as the loaders always were.
_LOG = logging.getLogger("dfn_jax.data.mnist")

_DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK_BYTES = 1 << 20


def from_tfds(data_dir: pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray] | str:
    """Images ``[N, 28, 28]`` and labels ``[N]`` from a prepared TFDS data dir, or a reason."""
    return tfds_images_and_labels("mnist", split, data_dir, (DIGIT_SIZE, DIGIT_SIZE))


def download_file(
    spec: MNISTFile, cache_dir: pathlib.Path, mirrors: Sequence[str]
) -> pathlib.Path | str:
    """Downloads ``spec`` into ``cache_dir`` from the first mirror that serves the right bytes."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot create the cache dir {str(cache_dir)!r}: {error}"
    destination = cache_dir / spec.filename
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + spec.filename
        tmp_path = None
        try:
            with tempfile.NamedTemporaryFile(
                dir=cache_dir, prefix=spec.filename + ".", suffix=".tmp", delete=False
            ) as tmp:
                tmp_path = pathlib.Path(tmp.name)
                digest = hashlib.sha256()
                with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                    while chunk := response.read(_CHUNK_BYTES):
                        digest.update(chunk)
                        tmp.write(chunk)
            if digest.hexdigest() != spec.sha256:
                failures.append(
                    f"{url}: sha256 {digest.hexdigest()} differs from the expected {spec.sha256}"
                )
                continue
            os.replace(tmp_path, destination)
            tmp_path = None
            _LOG.info("Downloaded %s to %s", url, destination)
            return destination
        except (OSError, http.client.HTTPException, ValueError) as error:
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            failures.append(f"{url}: {reason}")
        finally:
            if tmp_path is not None:
                tmp_path.unlink(missing_ok=True)
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
