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

The file loaders live in ``dfn_jax.data._driving_files`` and the road scene in
``dfn_jax.data._road_scene``; this module holds the windowing, the stand-ins and the public names.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dfn_jax._src import checks as _checks
from dfn_jax.data import _road_scene
from dfn_jax.data._driving_files import (  # noqa: F401 - the constants stay importable from here
    HIGHWAY_DATASETS,
    IMAGE_SUFFIXES,
    PathLike,
    load_stereo,
    load_video,
)

# ------------------------------------------------------------------------------------------------
# Windows of a recording


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
# Procedural stand-ins


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
    return _checks.positive_int(image_size, name="image_size", minimum=16)


# Jitted per key, so that every batch size reuses one compiled renderer (and a caller's jit of the
# public functions traces it once per key, not once per batch shape).
@functools.partial(jax.jit, static_argnames=("num_frames", "image_size"))
def _highway_one(key, *, num_frames: int, image_size: int):
    x, y = _road_scene.pixel_grid(image_size)
    scale = image_size / 64.0
    p = _road_scene.scene(key, image_size)
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
        grey, _ = _road_scene.render(
            p, x, y, cam_x=cam_x0 + drift * t, cam_z=start + speed * t, t=t
        )
        grey = grey * (gain0 + gain_slope * t)
        return jnp.clip(_road_scene.downsample(grey, image_size), 0.0, 1.0)

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
    num_frames = _checks.positive_int(num_frames, name="num_frames", expected="a positive int")
    size = _check_size(image_size)
    return jnp.stack([_highway_one(k, num_frames=num_frames, image_size=size) for k in keys])


@functools.partial(jax.jit, static_argnames=("image_size",))
def _stereo_one(key, max_disparity, *, image_size: int):
    x, y = _road_scene.pixel_grid(image_size)
    p = _road_scene.scene(key, image_size)
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
    left, _ = _road_scene.render(p, x, y, cam_x=cam_x, cam_z=cam_z, t=0.0)
    right, inv_z = _road_scene.render(p, x, y, cam_x=cam_x + baseline, cam_z=cam_z, t=0.0)
    gain = 1.0 + (m[2] - 0.5) * 0.06  # the two cameras' exposures differ a little
    disparity = jnp.minimum(baseline * p["focal"] * inv_z, max_disparity)
    return (
        jnp.clip(_road_scene.downsample(left, image_size), 0.0, 1.0)[..., None],
        jnp.clip(_road_scene.downsample(right * gain, image_size), 0.0, 1.0)[..., None],
        _road_scene.downsample(disparity, image_size),
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
