"""The MNIST IDX files: what the four originals are, and reading and verifying them.

``MNIST_FILES`` lists the originals' names, published sha256, sizes and decoded shapes;
``read_idx_file`` reads one IDX file and checks it (the sha256 when given, the gzip stream, the
magic number, 2051 for images and 2049 for labels, and a header that matches the file size), and
``from_dir`` reads the files a split needs from a folder, gzipped (hash-checked) or not.
``digits_to_float`` maps their ``uint8`` pixels to ``float32`` in [0, 1]. Which source the files
come from (a folder, TFDS, the download cache) is decided in :mod:`dfn_jax.data.mnist`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pathlib
import zlib
from typing import NamedTuple

import numpy as np

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


def find_in_dir(directory: pathlib.Path, spec: MNISTFile) -> pathlib.Path | None:
    """``spec``'s file in ``directory``, gzipped or not (the ``.gz`` first), or ``None``."""
    gz = directory / spec.filename
    if gz.is_file():
        return gz
    plain = directory / spec.filename[: -len(".gz")]
    if plain.is_file():
        return plain
    return None


def read_spec(path: pathlib.Path, spec: MNISTFile) -> np.ndarray:
    """Reads ``spec``'s file at ``path``: the sha256 is checked for the gzipped original only."""
    sha = spec.sha256 if path.name.endswith(".gz") else None
    array = read_idx_file(path, expected_magic=spec.magic, sha256=sha)
    if array.shape[1:] != spec.shape[1:]:
        layout = "[N, 28, 28]" if spec.magic == IMAGE_MAGIC else "[N]"
        raise ValueError(
            f"MNIST file {str(path)!r} holds an array of shape {array.shape}, expected {layout}."
        )
    return array


def from_dir(directory: pathlib.Path, specs: list[MNISTFile]) -> list[np.ndarray] | str:
    """The arrays for ``specs`` from ``directory``, or the reason the folder does not have them."""
    if not directory.is_dir():
        return f"{str(directory)!r} is not a directory"
    paths = [find_in_dir(directory, spec) for spec in specs]
    missing = [spec.filename for spec, path in zip(specs, paths, strict=True) if path is None]
    if missing:
        return f"{str(directory)!r} lacks {', '.join(missing)} (or the same without .gz)"
    return [read_spec(path, spec) for path, spec in zip(paths, specs, strict=True)]
