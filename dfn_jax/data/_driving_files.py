"""Driving data from files: grayscale videos and rectified stereo pairs from HDF5 datasets or
folders of frame images.

The authors' recording (a ~16k-frame highway drive from a stereo rig) came as HDF5 files with
datasets ``highway_L`` and ``highway_R`` of 64x64 grayscale frames. :func:`load_video` reads one
video from an HDF5 dataset or from a folder of frame images (PNG, JPEG, BMP, TIFF; sorted by name,
numbers compared as numbers so ``frame_9`` < ``frame_10``); :func:`load_stereo` reads left/right
pairs from the two HDF5 datasets or from a folder with ``left/`` and ``right/`` subfolders. Layouts,
value ranges and ``swap_hw`` are described in :mod:`dfn_jax.data.driving`. Both return ``float32
[N, H, W, 1]`` in [0, 1]; every problem raises an error that names the file and what was expected.
"""

from __future__ import annotations

import os
import pathlib
import re
from collections.abc import Sequence

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
HIGHWAY_DATASETS = ("highway_L", "highway_R")

PathLike = str | os.PathLike


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _to_unit_float(array: np.ndarray, where: str) -> np.ndarray:
    """uint8 -> /255; floats in [0, 1] kept, floats in [0, 255] -> /255; anything else an error."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(
                f"{where}: integer grey levels must lie in [0, 255], got values in "
                f"[{array.min()}, {array.max()}]."
            )
        return array.astype(np.float32) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{where}: expected uint8 or floating-point frames, got {array.dtype}.")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{where}: frames contain NaN or infinite values.")
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if low < 0 or high > 255:
        raise ValueError(
            f"{where}: floating-point frames must lie in [0, 1] (or [0, 255] grey levels), got "
            f"values in [{low}, {high}]."
        )
    return array / 255.0 if high > 1.0 else array


def _frames_nhwc(array: np.ndarray, where: str, *, swap_hw: bool) -> np.ndarray:
    """``[N, H, W]``, ``[N, H, W, 1]`` or ``[N, 1, H, W]`` -> ``[N, H, W, 1]``."""
    shape = tuple(array.shape)
    if array.ndim == 3:
        array = array[..., None]
    elif array.ndim == 4 and shape[-1] == 1:
        pass
    elif array.ndim == 4 and shape[1] == 1:
        array = np.moveaxis(array, 1, -1)
    else:
        raise ValueError(
            f"{where}: expected grayscale frames of shape [N, H, W], [N, H, W, 1] or "
            f"[N, 1, H, W], got {shape}."
        )
    if array.shape[0] == 0 or array.shape[1] == 0 or array.shape[2] == 0:
        raise ValueError(f"{where}: no frames (shape {shape}).")
    if swap_hw:
        array = np.swapaxes(array, 1, 2)
    return array


def _open_h5(path: pathlib.Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{str(path)!r} is not a readable HDF5 file: {e}") from e


def _read_h5_dataset(file, path: pathlib.Path, name: str, *, swap_hw: bool) -> np.ndarray:
    import h5py

    if name not in file or not isinstance(file[name], h5py.Dataset):
        available = sorted(k for k in file.keys() if isinstance(file[k], h5py.Dataset))
        raise ValueError(
            f"HDF5 file {str(path)!r} has no dataset {name!r}; its datasets are {available}."
        )
    where = f"dataset {name!r} of {str(path)!r}"
    array = np.asarray(file[name][()])
    return _to_unit_float(_frames_nhwc(array, where, swap_hw=swap_hw), where)


def _read_image_folder(folder: pathlib.Path) -> np.ndarray:
    from PIL import Image

    files = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: _natural_key(p.name),
    )
    if not files:
        raise ValueError(
            f"folder {str(folder)!r} holds no frame images (expected files ending in "
            f"{', '.join(IMAGE_SUFFIXES)})."
        )
    frames = []
    for file in files:
        try:
            with Image.open(file) as image:
                frame = np.asarray(image.convert("L"))
        except OSError as e:
            raise ValueError(f"cannot read image {str(file)!r}: {e}") from e
        if frames and frame.shape != frames[0].shape:
            raise ValueError(
                f"image {str(file)!r} is {frame.shape[1]}x{frame.shape[0]} (WxH) but "
                f"{str(files[0])!r} is {frames[0].shape[1]}x{frames[0].shape[0]}: all frames "
                f"must have one size."
            )
        frames.append(frame)
    return np.stack(frames)[..., None].astype(np.float32) / 255.0


def _existing(path: PathLike, what: str) -> pathlib.Path:
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"`path` must name {what}, got {path!r}.")
    path = pathlib.Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist.")
    return path


def load_video(path: PathLike, *, dataset: str = "highway_L", swap_hw: bool = False) -> np.ndarray:
    """Loads a grayscale video from an HDF5 file or a folder of frame images.

    Args:
      path: an HDF5 file, or a folder of frame images (sorted by name, numbers as numbers).
      dataset: the HDF5 dataset to read (``"highway_L"``: the left camera of the authors' files).
      swap_hw: transpose every frame (the authors' files store frames column-major).

    Returns:
      ``float32 [N, H, W, 1]`` in [0, 1].
    """
    path = _existing(path, "the video (an HDF5 file or a folder of frame images)")
    if path.is_dir():
        frames = _read_image_folder(path)
        return np.swapaxes(frames, 1, 2) if swap_hw else frames
    with _open_h5(path) as file:
        return _read_h5_dataset(file, path, dataset, swap_hw=swap_hw)


def load_stereo(
    path: PathLike,
    *,
    datasets: Sequence[str] = HIGHWAY_DATASETS,
    swap_hw: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads rectified stereo pairs from an HDF5 file or a folder with ``left/`` and ``right/``.

    Args:
      path: an HDF5 file holding both datasets, or a folder with subfolders ``left`` and
        ``right`` of equally many images (pairs matched by sorted order).
      datasets: ``(left, right)`` HDF5 dataset names.
      swap_hw: transpose every image (see :func:`load_video`).

    Returns:
      ``(left, right)``, each ``float32 [N, H, W, 1]`` in [0, 1].
    """
    path = _existing(path, "the stereo data (an HDF5 file or a folder with left/ and right/)")
    if path.is_dir():
        missing = [name for name in ("left", "right") if not (path / name).is_dir()]
        if missing:
            raise ValueError(
                f"stereo folder {str(path)!r} must hold subfolders 'left' and 'right' of images; "
                f"missing {missing}."
            )
        left, right = (_read_image_folder(path / name) for name in ("left", "right"))
        if swap_hw:
            left, right = np.swapaxes(left, 1, 2), np.swapaxes(right, 1, 2)
        where = f"stereo folder {str(path)!r}"
    else:
        if isinstance(datasets, str) or len(datasets) != 2:
            raise ValueError(f"`datasets` must be (left, right) names, got {datasets!r}.")
        with _open_h5(path) as file:
            left, right = (_read_h5_dataset(file, path, name, swap_hw=swap_hw) for name in datasets)
        where = f"datasets {tuple(datasets)} of {str(path)!r}"
    if left.shape != right.shape:
        raise ValueError(
            f"{where}: left and right must have the same shape, got {left.shape} and {right.shape}."
        )
    return left, right
