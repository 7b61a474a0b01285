"""Driving data for the highway-driving and stereo experiments: file loaders and procedural
stand-ins that need no files.

**Files.** The authors' recording (a ~16k-frame highway drive from a stereo rig) came as HDF5
files with datasets ``highway_L`` and ``highway_R`` of 64x64 grayscale frames. Loaders:

* :func:`load_video`: one video from an HDF5 dataset, or from a folder of frame images (PNG,
  JPEG, BMP, TIFF; sorted by name, numbers compared as numbers so ``frame_9`` < ``frame_10``).
* :func:`load_stereo`: left/right pairs from the two HDF5 datasets, or from a folder with
  ``left/`` and ``right/`` subfolders of equally many images.

HDF5 datasets may be ``[N, H, W]``, ``[N, H, W, 1]`` or ``[N, 1, H, W]`` (channels first, the
authors' layout), ``uint8`` (divided by 255) or floating point (values in [0, 1] are kept; values
up to 255 are read as grey levels and divided by 255). The authors' loader transposed each frame
(``transpose(0, 1, 3, 2)``), so their files seem to store frames column-major: ``swap_hw=True``
does the same (unverified: the files could not be checked here). Every loader returns ``float32
[N, H, W, 1]`` in [0, 1]; every problem (missing file or dataset, bad shape or values, mismatched
pairs) raises an error that names the file and what was expected.

:func:`split_tail` holds out the last frames for testing (the recording is one drive, so a random
split would put near-identical neighbours in both sets); :func:`random_window_starts` and
:func:`gather_windows` draw training windows of consecutive frames; :func:`tiled_windows` cuts the
test part into non-overlapping windows.

**Stand-ins** (jittable, deterministic in the key, ``float32`` in [0, 1]), both rendered from one
procedural road scene, 2x2 supersampled: a perspective ground plane (textured asphalt with solid
edge lines and a dashed centre line on a slightly curved road, textured verges), a sky with clouds
and a tree line on the horizon, roadside posts and one or two cars, all fading into haze with
distance.

* :func:`highway_standin_sequences`: ``[B, T, H, W, 1]`` videos: the camera drives forward (the
  road texture, the dashes and the posts come towards the viewer, fastest at the bottom, at most
  about 4 px per frame at 64x64), drifts sideways, the cars ahead move relative to it, and a slow
  global brightness ramp mimics exposure changes (what the dynamic bias is for).
* :func:`stereo_standin_pairs`: ``(left, right, disparity)``, the scene seen from two cameras a
  baseline apart, with the exact disparity of the right view: ``right[y, x] = left[y, x + d]``
  (``d >= 0``, at most ``max_disparity`` pixels; the ground's disparity grows linearly from 0 at
  the horizon to ``max_disparity`` at the bottom row, the posts and cars have the disparity of the
  ground where they stand). This is the convention of :func:`dfn_jax.ops.filter_disparity`
  (positive: the output reads to the right), so a perfect ``1 x 13`` filter has its expected tap
  offset equal to ``d``. Occluded and disoccluded pixels keep the disparity of the surface seen in
  the right view.
"""

from __future__ import annotations

import functools
import os
import pathlib
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
HIGHWAY_DATASETS = ("highway_L", "highway_R")

PathLike = str | os.PathLike


# ------------------------------------------------------------------------------------------------
# File loaders


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


def check_frame_size(frames: np.ndarray, image_size: int, *, what: str) -> None:
    """Raises a ``ValueError`` unless ``frames [N, H, W, 1]`` are ``image_size`` square."""
    if frames.shape[1:3] != (image_size, image_size):
        raise ValueError(
            f"{what} has {frames.shape[1]}x{frames.shape[2]} frames but the model expects "
            f"{image_size}x{image_size} (`data.image_size`; no resizing is done)."
        )


def split_tail(frames: np.ndarray, *, test_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Splits ``frames [N, ...]`` into the first ``1 - test_fraction`` and the last part.

    Returns:
      ``(train, test)``, views of ``frames``; both non-empty.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must lie in (0, 1), got {test_fraction!r}.")
    n = len(frames)
    num_test = int(round(n * test_fraction))
    if num_test < 1 or num_test >= n:
        raise ValueError(
            f"cannot hold out {test_fraction:.0%} of {n} frames: both parts must be non-empty."
        )
    return frames[: n - num_test], frames[n - num_test :]


def random_window_starts(
    key: jax.Array, *, num_frames_total: int, window: int, batch_size: int
) -> np.ndarray:
    """``batch_size`` uniform start indices of windows of ``window`` consecutive frames in a video
    of ``num_frames_total`` frames, as an ``int64 [batch_size]`` NumPy array."""
    if num_frames_total < window:
        raise ValueError(
            f"a window of {window} consecutive frames needs a video of at least {window} frames, "
            f"got {num_frames_total}."
        )
    starts = jax.random.randint(key, (batch_size,), 0, num_frames_total - window + 1)
    return np.asarray(starts, np.int64)


def gather_windows(frames: np.ndarray, starts: np.ndarray, *, window: int) -> np.ndarray:
    """``frames [N, ...]`` and ``starts [B]`` -> ``[B, window, ...]`` consecutive frames."""
    return frames[np.asarray(starts)[:, None] + np.arange(window)[None, :]]


def tiled_windows(frames: np.ndarray, *, window: int) -> np.ndarray:
    """Cuts ``frames [N, ...]`` into ``N // window`` non-overlapping windows ``[M, window, ...]``
    (the remainder at the end is dropped)."""
    m = len(frames) // window
    if m == 0:
        raise ValueError(
            f"{len(frames)} frames hold no complete window of {window} consecutive frames."
        )
    return frames[: m * window].reshape(m, window, *frames.shape[1:])


# ------------------------------------------------------------------------------------------------
# Procedural road scene


_SUPERSAMPLE = 2
_NUM_POSTS = 6  # per side of the road
_POST_SPACING = 12.0  # metres between posts
_NUM_CARS = 2
_NEAREST = 1.0  # objects closer than this (metres) are culled


def _value_noise(grid: jax.Array, u: jax.Array, v: jax.Array) -> jax.Array:
    """Periodic smooth value noise: ``grid [G, G]`` interpolated (smoothstep) at ``(u, v)``."""
    g = grid.shape[0]
    u0, v0 = jnp.floor(u), jnp.floor(v)
    fu, fv = u - u0, v - v0
    fu, fv = fu * fu * (3.0 - 2.0 * fu), fv * fv * (3.0 - 2.0 * fv)
    i0 = jnp.mod(u0.astype(jnp.int32), g)
    j0 = jnp.mod(v0.astype(jnp.int32), g)
    i1, j1 = jnp.mod(i0 + 1, g), jnp.mod(j0 + 1, g)
    top = grid[j0, i0] * (1.0 - fu) + grid[j0, i1] * fu
    bottom = grid[j1, i0] * (1.0 - fu) + grid[j1, i1] * fu
    return top * (1.0 - fv) + bottom * fv - 0.5


def _fractal(grid, u, v, octaves: int = 3):
    return sum(
        _value_noise(grid, u * 2.0**o + 7.3 * o, v * 2.0**o + 3.1 * o) / 2.0**o
        for o in range(octaves)
    )


def _ground_texture(grid, lateral, along, footprint, cell: float, octaves: int = 4):
    """Fractal value noise on the ground plane, octave ``o`` of cell ``cell / 2**o`` metres,
    each faded out where it gets finer than the pixel footprint (no aliasing shimmer)."""
    total = 0.0
    for o in range(octaves):
        size = cell / 2.0**o
        weight = jnp.clip(size / footprint - 1.0, 0.0, 1.0)
        total = total + weight * _value_noise(grid, lateral / size + 5.1 * o, along / size) / (
            1.0 + 0.5 * o
        )
    return total


def _scene(key: jax.Array, image_size: int) -> dict:
    """Random parameters of one road scene (all scalars/arrays, so it vmaps)."""
    # One draw sliced into every parameter: each jax.random call compiles its own threefry, and
    # thirty of them took seconds to compile on CPU.
    draws = jax.random.uniform(key, (64 + 4 * 32 * 32,))
    used = [0]

    def u(lo, hi, shape=()):
        n = int(np.prod(shape))
        start = used[0]
        used[0] += n
        assert used[0] <= 64
        return lo + (hi - lo) * draws[start : start + n].reshape(shape)

    s = float(image_size)
    side = jnp.array([-1.0] * _NUM_POSTS + [1.0] * _NUM_POSTS)
    return {
        "horizon": u(0.32, 0.40) * s,
        "focal": u(0.65, 0.8) * s,
        "height": u(1.2, 1.6),
        "half_road": u(3.6, 4.4),
        "curvature": u(-0.004, 0.004),
        "asphalt": u(0.3, 0.5),
        "verge": u(0.15, 0.4),
        "marking": u(0.75, 0.95),
        "haze": u(0.6, 0.85),
        "sky_top": u(0.45, 0.9),
        "fog": u(25.0, 60.0),
        "dash_phase": u(0.0, 10.0),
        "nearest": jnp.float32(_NEAREST),
        "grids": draws[64:].reshape(4, 32, 32),
        "motion": u(0.0, 1.0, (6,)),  # for the caller: camera motion, exposure
        "tree_line": u(1.0, 5.0) * s / 64.0,
        "tree_grey": u(0.1, 0.3),
        # Roadside posts: lateral position, phase along the road, size and grey.
        "post_x": side * (u(5.0, 7.0) + u(-0.3, 0.3, (2 * _NUM_POSTS,))),
        "post_phase": u(0.0, _POST_SPACING, (2,)),
        "post_width": u(0.15, 0.4, (2,)),
        "post_height": u(1.0, 3.0, (2,)),
        "post_grey": u(0.6, 0.95, (2,)),
        # Cars ahead: lane (-1 or +1), distance, speed relative to the camera, size, grey.
        "car_lane": jnp.where(u(0.0, 1.0, (_NUM_CARS,)) < 0.5, -1.0, 1.0),
        "car_z": u(6.0, 30.0, (_NUM_CARS,)),
        "car_speed": u(-0.15, 0.15, (_NUM_CARS,)),
        "car_visible": jnp.concatenate([jnp.ones(1), (u(0.0, 1.0, (_NUM_CARS - 1,)) < 0.6)]),
        "car_width": u(1.6, 2.0, (_NUM_CARS,)),
        "car_height": u(1.3, 1.9, (_NUM_CARS,)),
        "car_grey": u(0.05, 0.95, (_NUM_CARS,)),
    }


def _render(p: dict, x, y, *, cam_x, cam_z, t):
    """Renders scene ``p`` at continuous pixel coordinates ``(x, y)`` (pixel ``i`` spans
    ``[i, i+1)``) from a camera at lateral ``cam_x`` and forward ``cam_z`` (metres), at time
    ``t`` (frames; moves the cars). Returns ``(grey, inverse depth 1/z; 0 at infinity)``."""
    width = x.shape[-1] / _SUPERSAMPLE
    cx = width / 2.0
    f, h, yh = p["focal"], p["height"], p["horizon"]
    haze = p["haze"]
    grids = p["grids"]

    # Sky, clouds and a tree line at infinity (no parallax, no motion).
    sky_t = jnp.clip(y / yh, 0.0, 1.0)
    sky = p["sky_top"] * (1.0 - sky_t) + haze * sky_t
    sky = sky + 0.12 * (1.0 - sky_t) * _fractal(grids[3], x / 12.0, y / 5.0, 2)
    tree_top = yh - p["tree_line"] * (1.0 + 1.6 * _value_noise(grids[3], x / 3.0 + 50.0, 0.0))
    trees = p["tree_grey"] + 0.1 * _value_noise(grids[2], x / 1.5, y / 1.5)
    grey = jnp.where(y >= tree_top, trees, sky)
    inv_z = jnp.zeros_like(grey)

    # Ground plane below the horizon.
    dy = jnp.maximum(y - yh, 1e-3)
    z = f * h / dy  # distance ahead
    lateral = (x - cx) * z / f + cam_x - p["curvature"] * z * z
    along = z + cam_z
    # Metres per pixel on the ground; octaves finer than about a pixel are faded out (LOD).
    footprint = jnp.maximum(z * z / (f * h), z / f)
    on_road = jnp.abs(lateral) < p["half_road"]
    asphalt = p["asphalt"] + 0.16 * _ground_texture(grids[0], lateral, along, footprint, 0.8)
    verge = p["verge"] + 0.3 * _ground_texture(grids[1], lateral, along, footprint, 1.2)
    ground = jnp.where(on_road, asphalt, verge)
    edge = jnp.abs(jnp.abs(lateral) - (p["half_road"] - 0.25)) < 0.1
    dash = (jnp.abs(lateral) < 0.08) & (jnp.mod(along + p["dash_phase"], 9.0) < 3.0)
    ground = jnp.where(edge | dash, p["marking"], ground)
    below = y > yh
    grey = jnp.where(below, ground, grey)
    inv_z = jnp.where(below, 1.0 / z, inv_z)
    depth = jnp.where(below, z, jnp.inf)

    # Upright objects, painted far to near: posts (periodic along the road) and cars.
    period = _NUM_POSTS * _POST_SPACING
    n = jnp.arange(2 * _NUM_POSTS) % _NUM_POSTS
    post_side = jnp.arange(2 * _NUM_POSTS) // _NUM_POSTS
    post_z = _NEAREST + jnp.mod(
        n * _POST_SPACING + p["post_phase"][post_side] - cam_z - _NEAREST, period
    )
    car_z = p["car_z"] + p["car_speed"] * t
    obj_z = jnp.concatenate([post_z, jnp.where(p["car_visible"] > 0, car_z, -1.0)])
    obj_x = jnp.concatenate([p["post_x"], p["car_lane"] * 1.8 + p["curvature"] * car_z * car_z])
    obj_w = jnp.concatenate([p["post_width"][post_side], p["car_width"]])
    obj_h = jnp.concatenate([p["post_height"][post_side], p["car_height"]])
    obj_grey = jnp.concatenate([p["post_grey"][post_side], p["car_grey"]])
    # A dark band on each object: the cars' rear window, the posts' reflector strip.
    band = jnp.concatenate(
        [
            jnp.full((2 * _NUM_POSTS, 2), jnp.array([0.8, 0.9])),
            jnp.tile(jnp.array([[0.55, 0.85]]), (_NUM_CARS, 1)),
        ]
    )
    objects = jnp.stack([obj_z, obj_x, obj_w, obj_h, obj_grey, band[:, 0], band[:, 1]], axis=1)
    objects = objects[jnp.argsort(-obj_z)]

    def paint(i, canvas):
        grey, inv_z, depth = canvas
        zo, xo, wo, ho, go, b0, b1 = (objects[i, c] for c in range(7))
        valid = zo > p["nearest"]
        zo = jnp.maximum(zo, _NEAREST)
        u_obj = (x - cx) * zo / f + cam_x - xo  # metres from the object's centre
        v_obj = h - (y - yh) * zo / f  # metres above the ground
        inside = valid & (jnp.abs(u_obj) < wo / 2) & (v_obj > 0) & (v_obj < ho)
        rel = v_obj / ho
        tone = jnp.where((rel > b0) & (rel < b1), 0.15, go)
        tone = tone + 0.06 * _value_noise(grids[2], u_obj / 0.15 + 3.7 * xo, v_obj / 0.15)
        return (
            jnp.where(inside, tone, grey),
            jnp.where(inside, 1.0 / zo, inv_z),
            jnp.where(inside, zo, depth),
        )

    grey, inv_z, depth = jax.lax.fori_loop(0, objects.shape[0], paint, (grey, inv_z, depth))

    fade = jnp.exp(-jnp.where(jnp.isfinite(depth), depth, 1e3) / p["fog"])
    grey = jnp.where(jnp.isfinite(depth), haze + (grey - haze) * fade, grey)
    return grey, inv_z


def _pixel_grid(image_size: int):
    offsets = (jnp.arange(image_size * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE
    return jnp.meshgrid(offsets, offsets)  # x, y: [S*H, S*W]


def _downsample(image: jax.Array, image_size: int) -> jax.Array:
    s = _SUPERSAMPLE
    return image.reshape(image_size, s, image_size, s).mean(axis=(1, 3))


def _check_keys(keys) -> jax.Array:
    keys = jnp.asarray(keys)
    if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
        if keys.ndim != 1:
            raise ValueError(f"`keys` must be a 1-D array of PRNG keys, got shape {keys.shape}.")
        return keys
    if keys.ndim != 2 or keys.shape[-1] != 2 or keys.dtype != jnp.uint32:
        raise ValueError(
            f"`keys` must be a 1-D array of PRNG keys (e.g. jax.random.split(key, B)), got shape "
            f"{keys.shape} and dtype {keys.dtype}."
        )
    return keys


def _check_size(image_size) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise ValueError(f"`image_size` must be an int >= 16, got {image_size!r}.")
    if image_size < 16:
        raise ValueError(f"`image_size` must be an int >= 16, got {image_size!r}.")
    return int(image_size)


# Jitted per key, so that every batch size reuses one compiled renderer (and a caller's jit of the
# public functions traces it once per key, not once per batch shape).
@functools.partial(jax.jit, static_argnames=("num_frames", "image_size"))
def _highway_one(key, *, num_frames: int, image_size: int):
    x, y = _pixel_grid(image_size)
    scale = image_size / 64.0
    p = _scene(key, image_size)
    m = p["motion"]
    # Forward speed v (m/frame): the bottom row (distance z_min) moves f*h*v/z_min^2 pixels
    # per frame, 1 to 4 at 64x64 (so 11x11 filters can follow it).
    z_min = p["focal"] * p["height"] / (image_size - p["horizon"])
    speed = (1.0 + 3.0 * m[0]) * scale * z_min * z_min / (p["focal"] * p["height"])
    cam_x0 = (m[1] - 0.5) * 2.0
    drift = (m[2] - 0.5) * 0.06
    start = m[3] * 50.0
    gain0 = 0.85 + 0.25 * m[4]
    gain_slope = (m[5] - 0.5) * 0.06

    def frame(t):
        t = t.astype(jnp.float32)
        grey, _ = _render(p, x, y, cam_x=cam_x0 + drift * t, cam_z=start + speed * t, t=t)
        grey = grey * (gain0 + gain_slope * t)
        return jnp.clip(_downsample(grey, image_size), 0.0, 1.0)

    return jax.vmap(frame)(jnp.arange(num_frames))[..., None]


def highway_standin_sequences(
    keys: jax.Array, *, num_frames: int, image_size: int = 64
) -> jax.Array:
    """Procedural highway-driving videos, one per PRNG key (see the module docstring).

    Args:
      keys: ``[B]`` PRNG keys; sequence ``b`` depends only on ``keys[b]`` and the options.
      num_frames: frames per sequence ``T``.
      image_size: frame side (>= 16).

    Returns:
      ``float32 [B, T, image_size, image_size, 1]`` in [0, 1].
    """
    keys = _check_keys(keys)
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)):
        raise ValueError(f"`num_frames` must be a positive int, got {num_frames!r}.")
    if num_frames < 1:
        raise ValueError(f"`num_frames` must be a positive int, got {num_frames!r}.")
    size = _check_size(image_size)
    return jnp.stack([_highway_one(k, num_frames=int(num_frames), image_size=size) for k in keys])


@functools.partial(jax.jit, static_argnames=("image_size",))
def _stereo_one(key, max_disparity, *, image_size: int):
    x, y = _pixel_grid(image_size)
    p = _scene(key, image_size)
    m = p["motion"]
    # Baseline so that the bottom row (the nearest visible ground) has max_disparity:
    # d = baseline * f / z = baseline * (y - horizon) / height.
    baseline = max_disparity * p["height"] / (image_size - p["horizon"])
    cam_x = (m[0] - 0.5) * 2.0
    cam_z = m[1] * 100.0
    # Objects must not be nearer than the bottom row's ground, or their disparity would
    # exceed max_disparity.
    z_min = p["focal"] * p["height"] / (image_size - p["horizon"])
    p = dict(p, car_z=jnp.maximum(p["car_z"], z_min), nearest=z_min)
    left, _ = _render(p, x, y, cam_x=cam_x, cam_z=cam_z, t=0.0)
    right, inv_z = _render(p, x, y, cam_x=cam_x + baseline, cam_z=cam_z, t=0.0)
    gain = 1.0 + (m[2] - 0.5) * 0.06  # the two cameras' exposures differ a little
    disparity = jnp.minimum(baseline * p["focal"] * inv_z, max_disparity)
    return (
        jnp.clip(_downsample(left, image_size), 0.0, 1.0)[..., None],
        jnp.clip(_downsample(right * gain, image_size), 0.0, 1.0)[..., None],
        _downsample(disparity, image_size),
    )


def stereo_standin_pairs(
    keys: jax.Array, *, image_size: int = 64, max_disparity: float = 5.0
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Procedural rectified stereo pairs with their exact disparity (see the module docstring).

    Args:
      keys: ``[B]`` PRNG keys; pair ``b`` depends only on ``keys[b]`` and the options.
      image_size: image side (>= 16).
      max_disparity: largest disparity in pixels, ``0 < max_disparity <= 6`` so that ``1 x 13``
        filters (offsets -6..6) can represent every shift.

    Returns:
      ``(left [B, H, W, 1], right [B, H, W, 1], disparity [B, H, W])``, float32; ``right[y, x]
      = left[y, x + disparity[y, x]]`` wherever the point is visible in both views.
    """
    keys = _check_keys(keys)
    if isinstance(max_disparity, bool) or not isinstance(max_disparity, (int, float, np.number)):
        raise ValueError(f"`max_disparity` must be a number in (0, 6], got {max_disparity!r}.")
    if not 0.0 < float(max_disparity) <= 6.0:
        raise ValueError(f"`max_disparity` must be a number in (0, 6], got {max_disparity!r}.")
    size = _check_size(image_size)
    pairs = [_stereo_one(k, jnp.float32(max_disparity), image_size=size) for k in keys]
    return tuple(jnp.stack(parts) for parts in zip(*pairs, strict=True))
