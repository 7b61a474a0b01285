"""Records of a prepared TFDS dataset through ``tfds.data_source`` (which needs no TensorFlow),
or a string saying why they are not available, so that a loader can try its next source."""

from __future__ import annotations

import os
import pathlib

import numpy as np


def tfds_images_and_labels(
    name: str, split: str, data_dir: pathlib.Path, image_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray] | str:
    """``uint8`` images ``[N, *image_shape]`` and ``uint8`` labels ``[N]`` of dataset ``name``'s
    ``split`` prepared in ``data_dir``; or the reason they cannot be read.

    Raises:
      ValueError: the dataset is there but its images are not ``image_shape`` ``uint8``.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        return f"tensorflow_datasets is not importable ({error})"
    where = f"tfds.data_source({name!r}, data_dir={os.fspath(data_dir)!r})"
    try:
        source = tfds.data_source(name, split=split, data_dir=os.fspath(data_dir), download=False)
        num = len(source)
        records: list = []
        if hasattr(source, "__getitems__"):
            for start in range(0, num, 4096):
                records.extend(source.__getitems__(list(range(start, min(num, start + 4096)))))
        else:
            records = [source[i] for i in range(num)]
    except Exception as error:  # noqa: BLE001 - any TFDS failure means "not available here".
        return f"{where} failed: {error!r}"
    if not records:
        return f"the TFDS {name} {split!r} split in {os.fspath(data_dir)!r} is empty"
    images = np.stack([np.asarray(r["image"]) for r in records])
    if images.shape[1:] != tuple(image_shape) and images.shape[1:] == (*image_shape, 1):
        images = images[..., 0]
    if images.shape[1:] != tuple(image_shape) or images.dtype != np.uint8:
        raise ValueError(
            f"{where} gave images of shape {images.shape[1:]} and dtype {images.dtype}, "
            f"expected {list(image_shape)} uint8 per record."
        )
    labels = np.asarray([int(r["label"]) for r in records], dtype=np.uint8)
    return np.ascontiguousarray(images), labels
