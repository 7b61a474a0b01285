"""CIFAR-10 (Krizhevsky, 2009) for classification: ``uint8`` images ``[N, 32, 32, 3]`` and labels.

Sources, tried in order (no download: the files are 163 MB and this loader never fetches them):

1. ``cifar_dir`` (or the environment variable ``DFN_CIFAR10_DIR``): a folder holding either
   archive from https://www.cs.toronto.edu/~kriz/cifar.html, read in memory (nothing is
   extracted), or their unpacked batch files:

   * the binary version, ``cifar-10-binary.tar.gz`` (``data_batch_{1..5}.bin``, ``test_batch.bin``:
     records of one label byte and 3,072 pixel bytes, red then green then blue planes);
   * the Python version, ``cifar-10-python.tar.gz`` (``data_batch_{1..5}``, ``test_batch``).
     Its batches are Python pickles; they are **not unpickled** (unpickling runs code the file
     names). :func:`read_python_batch` reads the pickle's opcodes with
     :func:`pickletools.genops`, which only parses, and takes the ``labels`` integers and the
     ``data`` array's raw bytes from them.

2. ``tfds_data_dir``: a TFDS data dir where ``cifar10`` is prepared, read with
   ``tfds.data_source`` (no TensorFlow needed).

:func:`cifar10_classification_splits` gives the HyperNetworks paper's 45,000 / 5,000 / 10,000
split (the validation set: the last 5,000 training images).
"""

from __future__ import annotations

import os
import pathlib
import pickletools
import tarfile

import numpy as np

from dfn_jax._src.checks import choice
from dfn_jax.data._holdout import holdout_splits
from dfn_jax.data._tfds import tfds_images_and_labels

SPLITS = ("train", "test")
IMAGE_SHAPE = (32, 32, 3)
RECORD_BYTES = 1 + 32 * 32 * 3
CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
ARCHIVES = {"binary": "cifar-10-binary.tar.gz", "python": "cifar-10-python.tar.gz"}
BATCHES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
"""The batch files of each split (``.bin`` appended in the binary version)."""


class CIFAR10NotFoundError(FileNotFoundError):
    """No source supplied CIFAR-10; the message lists what was tried and how to fix it."""


def _pixels_to_images(pixels: np.ndarray) -> np.ndarray:
    """``[N, 3072]`` planar (R, G, B planes of 32x32) -> ``[N, 32, 32, 3]``."""
    return np.ascontiguousarray(pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _checked_labels(labels: np.ndarray, where: str) -> np.ndarray:
    if labels.size and labels.max() >= len(CLASSES):
        raise ValueError(f"{where}: a label is {int(labels.max())}; CIFAR-10 labels are 0..9.")
    return labels.astype(np.uint8)


def read_binary_batch(data: bytes, where: str = "batch") -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 32, 32, 3]`` and labels ``[N]`` of one binary-version batch file's bytes."""
    if not data or len(data) % RECORD_BYTES:
        raise ValueError(
            f"{where}: {len(data)} bytes is not a whole number of {RECORD_BYTES}-byte CIFAR-10 "
            "records (one label byte, 3,072 pixel bytes); is it a binary-version batch file?"
        )
    records = np.frombuffer(data, np.uint8).reshape(-1, RECORD_BYTES)
    return _pixels_to_images(records[:, 1:]), _checked_labels(records[:, 0], where)


_INT_OPCODES = frozenset({"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"})
_KEYS = frozenset({"data", "labels", "batch_label", "filenames"})


def read_python_batch(data: bytes, where: str = "batch") -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one Python-version batch (a pickled dict), **without unpickling**.

    The pickle's opcodes are parsed (:func:`pickletools.genops` executes nothing); the integers
    after the ``labels`` key are the labels, and the longest string after the ``data`` key is
    the ``uint8 [N, 3072]`` array's raw bytes (checked: ``N`` labels, a ``u1`` dtype).
    """
    section, labels, blobs, dtypes = None, [], [], set()
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if isinstance(arg, (str, bytes)) and len(arg) < 32:
                text = arg.decode("latin-1") if isinstance(arg, bytes) else arg
                if text in _KEYS:
                    section = text
                    continue
                if section == "data":
                    dtypes.add(text)
            if section == "labels" and opcode.name in _INT_OPCODES:
                labels.append(arg)
            elif section == "data" and isinstance(arg, (str, bytes)) and len(arg) >= 32:
                blobs.append(arg)
    except ValueError as error:
        raise ValueError(f"{where}: not a readable pickle ({error}).") from None
    if not labels or not blobs:
        raise ValueError(f"{where}: no `labels` list or no `data` array in the pickled batch.")
    blob = max(blobs, key=len)
    pixels = blob.encode("latin-1") if isinstance(blob, str) else bytes(blob)
    if len(pixels) != len(labels) * 3072 or not dtypes & {"u1", "|u1"}:
        raise ValueError(
            f"{where}: the `data` array has {len(pixels)} bytes for {len(labels)} labels "
            f"(expected {len(labels)} x 3,072 uint8)."
        )
    images = _pixels_to_images(np.frombuffer(pixels, np.uint8).reshape(len(labels), 3072))
    return images, _checked_labels(np.asarray(labels), where)


_READERS = {"binary": read_binary_batch, "python": read_python_batch}


def _member_name(version: str, batch: str) -> str:
    return batch + ".bin" if version == "binary" else batch


def _from_archive(path: pathlib.Path, version: str, split: str) -> list[tuple]:
    """Each batch of ``split`` read from the archive's members in memory (by base name)."""
    wanted = {_member_name(version, b): b for b in BATCHES[split]}
    found = {}
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            name = pathlib.PurePosixPath(member.name).name
            if member.isfile() and name in wanted:
                found[name] = _READERS[version](
                    archive.extractfile(member).read(), f"{path}:{name}"
                )
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise ValueError(f"{str(path)!r} lacks the batch files {missing}; is it the whole archive?")
    return [found[name] for name in wanted]


def _from_folder(folder: pathlib.Path, split: str) -> list[tuple] | None:
    """The unpacked batch files in ``folder`` or its ``cifar-10-batches-{bin,py}`` subfolder."""
    for version, sub in (("binary", "cifar-10-batches-bin"), ("python", "cifar-10-batches-py")):
        for base in (folder, folder / sub):
            paths = [base / _member_name(version, b) for b in BATCHES[split]]
            if all(p.is_file() for p in paths):
                return [_READERS[version](p.read_bytes(), str(p)) for p in paths]
    return None


def _from_dir(directory: pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray] | str:
    if not directory.is_dir():
        return f"{str(directory)!r} is not a directory"
    batches = _from_folder(directory, split)
    if batches is None:
        for version, archive in ARCHIVES.items():
            if (directory / archive).is_file():
                batches = _from_archive(directory / archive, version, split)
                break
    if batches is None:
        return (
            f"{str(directory)!r} has neither archive ({', '.join(ARCHIVES.values())}) nor the "
            f"unpacked {split} batch files"
        )
    images, labels = zip(*batches, strict=True)
    return np.concatenate(images), np.concatenate(labels)


def load_cifar10(
    split: str = "train",
    *,
    cifar_dir: str | os.PathLike | None = None,
    tfds_data_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 images ``uint8 [N, 32, 32, 3]`` and labels ``uint8 [N]`` (indices into
    ``CLASSES``) of ``split``: "train" (50,000) or "test" (10,000). Sources: module docstring.

    Raises:
      CIFAR10NotFoundError: no source has the data (the message says how to supply it).
      ValueError: a bad argument, or files that are there but not CIFAR-10.
    """
    choice(split, SPLITS, name="split")
    tried = []
    env_dir = os.environ.get("DFN_CIFAR10_DIR")
    label = "cifar_dir"
    if cifar_dir is None and env_dir:
        cifar_dir, label = env_dir, "DFN_CIFAR10_DIR"
    for value, name in ((cifar_dir, "cifar_dir"), (tfds_data_dir, "tfds_data_dir")):
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ValueError(
                f"`{name}` must be a path (str or os.PathLike) or None, got {value!r}."
            )
    if cifar_dir:
        result = _from_dir(pathlib.Path(cifar_dir).expanduser(), split)
        if not isinstance(result, str):
            return result
        tried.append(f"{label}: {result}")
    else:
        tried.append("cifar_dir: not given (and DFN_CIFAR10_DIR is not set)")
    if tfds_data_dir:
        path = pathlib.Path(tfds_data_dir).expanduser()
        result = tfds_images_and_labels("cifar10", split, path, IMAGE_SHAPE)
        if not isinstance(result, str):
            return result
        tried.append(f"tfds_data_dir: {result}")
    else:
        tried.append("tfds_data_dir: not given")
    raise CIFAR10NotFoundError(
        "\n".join(
            [f"Could not find the CIFAR-10 {split!r} split. Tried, in order:"]
            + [f"  - {item}" for item in tried]
            + [
                "Supply it in one of two ways:",
                "  1. download cifar-10-binary.tar.gz (or cifar-10-python.tar.gz) from "
                "https://www.cs.toronto.edu/~kriz/cifar.html into a folder and pass it as "
                "`cifar_dir=` (config key `data.cifar_dir`, or the environment variable "
                "DFN_CIFAR10_DIR); the archive is read as it is, unpacked batch files work too;",
                "  2. a TFDS data dir where `cifar10` is prepared (`tfds build cifar10 "
                "--data_dir=DIR` on a machine with TensorFlow), as `tfds_data_dir=`.",
            ]
        )
    )


def cifar10_classification_splits(
    *,
    cifar_dir: str | os.PathLike | None = None,
    tfds_data_dir: str | os.PathLike | None = None,
    validation_size: int = 5000,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train", "val", "test"}`` -> ``(images uint8 [N, 32, 32, 3], labels int32 [N])``: the
    first ``50,000 - validation_size`` training images train, the last ``validation_size``
    validate; sources as :func:`load_cifar10`."""
    kwargs = dict(cifar_dir=cifar_dir, tfds_data_dir=tfds_data_dir)
    return holdout_splits(
        load_cifar10("train", **kwargs),
        load_cifar10("test", **kwargs),
        validation_size=validation_size,
        validation_from="last",
    )
