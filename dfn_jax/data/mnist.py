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
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import pathlib
import tempfile
import urllib.error
import urllib.request
import zlib
from typing import NamedTuple

import numpy as np

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

SPLITS = ("train", "test")
IMAGE_MAGIC = 2051
LABEL_MAGIC = 2049
DIGIT_SIZE = 28
UINT8_TO_FLOAT = np.float32(1.0 / 255.0)
"""The factor from uint8 pixels to [0, 1], shared by host and device code."""


class MNISTFile(NamedTuple):
    """One of the four original IDX files."""

    filename: str
    sha256: str
    num_bytes: int
    shape: tuple[int, ...]
    magic: int


MNIST_FILES: dict[tuple[str, str], MNISTFile] = {
    ("train", "images"): MNISTFile(
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        9_912_422,
        (60000, 28, 28),
        IMAGE_MAGIC,
    ),
    ("train", "labels"): MNISTFile(
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        28_881,
        (60000,),
        LABEL_MAGIC,
    ),
    ("test", "images"): MNISTFile(
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        1_648_877,
        (10000, 28, 28),
        IMAGE_MAGIC,
    ),
    ("test", "labels"): MNISTFile(
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        4_542,
        (10000,),
        LABEL_MAGIC,
    ),
}
"""The original gzip IDX files by ``(split, kind)``: name, sha256, size, decoded shape, magic."""

MNIST_MIRRORS: tuple[str, ...] = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
"""Base URLs tried in order for a download; each serves the four original ``.gz`` files."""

_DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK_BYTES = 1 << 20


class MNISTNotFoundError(FileNotFoundError):
    """No source supplied the MNIST files; the message lists what was tried and how to fix it."""


def default_cache_dir() -> pathlib.Path:
    """The MNIST download cache: ``$DFN_CACHE_DIR/mnist``, else ``$XDG_CACHE_HOME/dfn_jax/mnist``,
    else ``~/.cache/dfn_jax/mnist``."""
    root = os.environ.get("DFN_CACHE_DIR")
    if root:
        return pathlib.Path(root).expanduser() / "mnist"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg).expanduser() if xdg else pathlib.Path.home() / ".cache"
    return base / "dfn_jax" / "mnist"


def digits_to_float(digits):
    """Maps ``uint8`` digits (0..255) to ``float32`` in [0, 1]: ``x * float32(1 / 255)``.

    Accepts a NumPy or a JAX array of any shape (usually ``[N, 28, 28]``) and returns the same kind.
    Floating input is taken to be in [0, 1] already and is only cast to ``float32``. The scaling
    is one multiplication, so NumPy, XLA and every backend give the same bits (XLA rewrites a
    division by a constant into this product anyway) and ``round(255 * x)`` gives the uint8 back.
    """
    if not hasattr(digits, "dtype"):
        digits = np.asarray(digits)
    dtype = np.dtype(digits.dtype)
    if dtype == np.uint8:
        return digits.astype(np.float32) * UINT8_TO_FLOAT
    if np.issubdtype(dtype, np.floating):
        return digits.astype(np.float32)
    raise ValueError(
        f"`digits` must be uint8 (0..255) or floating (already in [0, 1]), got dtype {dtype}."
    )


def read_idx_file(
    path: str | os.PathLike,
    *,
    expected_magic: int | None = None,
    sha256: str | None = None,
) -> np.ndarray:
    """Reads one IDX file (gzipped when its name ends in ``.gz``) into a ``uint8`` array.

    Args:
      path: the file.
      expected_magic: 2051 for images, 2049 for labels; ``None`` accepts any uint8 IDX file.
      sha256: expected sha256 hex of the file as stored (checked before decoding); ``None`` skips
        the check.

    Returns:
      ``uint8`` array with the shape from the header, e.g. ``[N, 28, 28]`` or ``[N]``.

    Raises:
      ValueError: the hash, the gzip stream, the magic number or the header does not match.
    """
    path = pathlib.Path(path)
    raw = path.read_bytes()
    if sha256 is not None:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != sha256:
            raise ValueError(
                f"MNIST file {str(path)!r} is corrupt or not the original: expected sha256 "
                f"{sha256}, got {actual} ({len(raw):,} bytes). Delete it and supply the original "
                "file (or let the loader download it again)."
            )
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(
                f"MNIST file {str(path)!r} is not a valid gzip stream: {error}."
            ) from None
    if len(raw) < 4:
        raise ValueError(
            f"IDX file {str(path)!r} is too short for a header: got {len(raw)} bytes, expected at "
            "least 4."
        )
    magic = int.from_bytes(raw[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"IDX file {str(path)!r} has magic number {magic}, expected {expected_magic} "
            f"({'images' if expected_magic == IMAGE_MAGIC else 'labels'}: 2051 = uint8 images "
            "[N, 28, 28], 2049 = uint8 labels [N])."
        )
    if magic >> 8 != 0x08:
        raise ValueError(
            f"IDX file {str(path)!r} has magic number {magic} (0x{magic:08x}), expected a uint8 "
            "IDX file (0x000008NN, e.g. 2051 or 2049)."
        )
    ndim = magic & 0xFF
    header_bytes = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header_bytes:
        raise ValueError(
            f"IDX file {str(path)!r} has a truncated header: {ndim} dims need {header_bytes} "
            f"bytes, got {len(raw)}."
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_size = header_bytes + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected_size:
        raise ValueError(
            f"IDX file {str(path)!r} has header shape {shape}, which needs {expected_size:,} "
            f"bytes, but the (decompressed) file has {len(raw):,} bytes."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_bytes).reshape(shape).copy()


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}.")


def _path_or_none(value, *, name: str) -> pathlib.Path | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"`{name}` must be a path (str or os.PathLike) or None, got {value!r}.")
    return pathlib.Path(value).expanduser()


def _find_in_dir(directory: pathlib.Path, spec: MNISTFile) -> pathlib.Path | None:
    gz = directory / spec.filename
    if gz.is_file():
        return gz
    plain = directory / spec.filename[: -len(".gz")]
    if plain.is_file():
        return plain
    return None


def _read_spec(path: pathlib.Path, spec: MNISTFile) -> np.ndarray:
    sha = spec.sha256 if path.name.endswith(".gz") else None
    array = read_idx_file(path, expected_magic=spec.magic, sha256=sha)
    if array.shape[1:] != spec.shape[1:]:
        layout = "[N, 28, 28]" if spec.magic == IMAGE_MAGIC else "[N]"
        raise ValueError(
            f"MNIST file {str(path)!r} holds an array of shape {array.shape}, expected {layout}."
        )
    return array


def _from_dir(directory: pathlib.Path, specs: list[MNISTFile]) -> list[np.ndarray] | str:
    """The arrays for ``specs`` from ``directory``, or the reason the folder does not have them."""
    if not directory.is_dir():
        return f"{str(directory)!r} is not a directory"
    paths = [_find_in_dir(directory, spec) for spec in specs]
    missing = [spec.filename for spec, path in zip(specs, paths, strict=True) if path is None]
    if missing:
        return f"{str(directory)!r} lacks {', '.join(missing)} (or the same without .gz)"
    return [_read_spec(path, spec) for path, spec in zip(paths, specs, strict=True)]


def _from_tfds(data_dir: pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray] | str:
    """Images ``[N, 28, 28]`` and labels ``[N]`` from a prepared TFDS data dir, or a reason."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        return f"tensorflow_datasets is not importable ({error})"
    try:
        source = tfds.data_source(
            "mnist", split=split, data_dir=os.fspath(data_dir), download=False
        )
        num = len(source)
        records: list = []
        if hasattr(source, "__getitems__"):
            for start in range(0, num, 4096):
                records.extend(source.__getitems__(list(range(start, min(num, start + 4096)))))
        else:
            records = [source[i] for i in range(num)]
    except Exception as error:  # noqa: BLE001 - any TFDS failure means "not available here".
        return f"tfds.data_source('mnist', data_dir={os.fspath(data_dir)!r}) failed: {error!r}"
    if not records:
        return f"the TFDS mnist {split!r} split in {os.fspath(data_dir)!r} is empty"
    images = np.stack([np.asarray(r["image"]) for r in records])
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.shape[1:] != (DIGIT_SIZE, DIGIT_SIZE) or images.dtype != np.uint8:
        raise ValueError(
            f"TFDS mnist in {os.fspath(data_dir)!r} gave images of shape {images.shape[1:]} and "
            f"dtype {images.dtype}, expected [28, 28, 1] uint8 per record."
        )
    labels = np.asarray([int(r["label"]) for r in records], dtype=np.uint8)
    return np.ascontiguousarray(images), labels


def _download(spec: MNISTFile, cache_dir: pathlib.Path) -> pathlib.Path | str:
    """Downloads ``spec`` into ``cache_dir`` from the first mirror that serves the right bytes."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot create the cache dir {str(cache_dir)!r}: {error}"
    destination = cache_dir / spec.filename
    failures = []
    for mirror in MNIST_MIRRORS:
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


def _from_cache(
    cache_dir: pathlib.Path, specs: list[MNISTFile], download: bool
) -> list[np.ndarray] | str:
    arrays = []
    for spec in specs:
        path = cache_dir / spec.filename
        if path.is_file():
            try:
                arrays.append(_read_spec(path, spec))
                continue
            except ValueError as error:
                if not download:
                    raise
                _LOG.warning("Cached MNIST file is unusable (%s); downloading it again.", error)
        if not download:
            return f"{str(path)!r} is not there and download=False"
        result = _download(spec, cache_dir)
        if isinstance(result, str):
            return result
        arrays.append(_read_spec(result, spec))
    return arrays


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
    mnist_dir = _path_or_none(mnist_dir, name="mnist_dir")
    tfds_data_dir = _path_or_none(tfds_data_dir, name="tfds_data_dir")
    cache_dir = _path_or_none(cache_dir, name="cache_dir") or default_cache_dir()
    specs = [MNIST_FILES[(split, kind)] for kind in kinds]
    tried = []

    env_dir = os.environ.get("DFN_MNIST_DIR")
    if mnist_dir is None and env_dir:
        mnist_dir, dir_label = pathlib.Path(env_dir).expanduser(), "DFN_MNIST_DIR"
    else:
        dir_label = "mnist_dir"
    if mnist_dir is not None:
        result = _from_dir(mnist_dir, specs)
        if not isinstance(result, str):
            return result
        tried.append(f"{dir_label}: {result}")
        _LOG.warning("MNIST not usable from %s: %s; trying other sources.", dir_label, result)
    else:
        tried.append("mnist_dir: not given (and DFN_MNIST_DIR is not set)")

    if tfds_data_dir is not None:
        result = _from_tfds(tfds_data_dir, split)
        if not isinstance(result, str):
            by_kind = {"images": result[0], "labels": result[1]}
            return [by_kind[kind] for kind in kinds]
        tried.append(f"tfds_data_dir: {result}")
        _LOG.warning("MNIST not usable from tfds_data_dir: %s; trying other sources.", result)
    else:
        tried.append("tfds_data_dir: not given")

    result = _from_cache(cache_dir, specs, download)
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
