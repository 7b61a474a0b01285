"""Bouncing motion and sprite drawing, shared by Moving MNIST and the bouncing shapes.

``bouncing_trajectories`` (or ``trajectory_from_bits``, from three random words instead of a key)
gives the top-left pixel positions of one object bouncing in a box, as in Srivastava et al.
(2015): uniform start in the free range, uniform direction, ``step_length`` of the free range per
frame, put back on the wall and reflected when it leaves. The arithmetic is integer fixed point (a
position unit is 1/65536 of the free range; the direction is one of 4096 equally spaced angles,
its step taken from a table computed once in NumPy float64), truncated to whole pixels, so the
positions are bit-identical on every backend. ``paste_sprites`` draws sprites at such positions by
slicing and combines overlaps with ``max``; ``animate_sprites`` does both for a set of sprites, one
trajectory each (the frames of one Moving MNIST or bouncing-shapes sequence).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dfn_jax._src.checks import key_array, positive_int

POSITION_UNITS = 1 << 16
"""Fixed-point units per free range in which trajectories are computed."""

NUM_DIRECTIONS = 4096
"""Number of equally spaced directions a trajectory can take."""

_DIRECTION_BITS = 12  # log2(NUM_DIRECTIONS)


def check_step_length(value) -> float:
    """``step_length`` as a float, checked to lie in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"`step_length` must be a float in (0, 1], got {value!r}.")
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(
            f"`step_length` must be in (0, 1] (a fraction of the free range per frame), got "
            f"{value!r}."
        )
    return value


def _free_range_pair(free_range) -> tuple[int, int]:
    if isinstance(free_range, (int, np.integer)) and not isinstance(free_range, bool):
        pair = (int(free_range), int(free_range))
    elif isinstance(free_range, Sequence) and len(free_range) == 2:
        pair = tuple(free_range)
    else:
        raise ValueError(
            f"`free_range` must be an int or a pair (rows, cols) of ints >= 0, got {free_range!r}."
        )
    for value in pair:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"`free_range` must hold ints >= 0, got {free_range!r}.")
        if value * POSITION_UNITS >= 2**31:
            raise ValueError(f"`free_range` must be < 32768 pixels, got {free_range!r}.")
    return int(pair[0]), int(pair[1])


@functools.lru_cache(maxsize=16)
def _direction_table(step_length: float) -> np.ndarray:
    """``int32 [NUM_DIRECTIONS, 2]``: per-frame (row, col) step in position units per direction."""
    angles = (np.arange(NUM_DIRECTIONS, dtype=np.float64) + 0.5) * (2.0 * np.pi / NUM_DIRECTIONS)
    steps = step_length * POSITION_UNITS * np.stack([np.sin(angles), np.cos(angles)], axis=-1)
    return np.rint(steps).astype(np.int32)


@functools.lru_cache(maxsize=64)
def _whole_pixel_direction_table(step_length: float, free: tuple[int, int]) -> np.ndarray:
    """``int32 [NUM_DIRECTIONS, 2]``: per-frame (row, col) step in whole pixels per direction,
    each axis's ``step_length * free * (sin, cos)`` rounded to the nearest pixel."""
    angles = (np.arange(NUM_DIRECTIONS, dtype=np.float64) + 0.5) * (2.0 * np.pi / NUM_DIRECTIONS)
    steps = step_length * np.stack([free[0] * np.sin(angles), free[1] * np.cos(angles)], axis=-1)
    return np.rint(steps).astype(np.int32)


def bouncing_trajectories(
    key: jax.Array,
    *,
    num_frames: int,
    free_range: int | tuple[int, int],
    step_length: float = 0.1,
) -> jax.Array:
    """Top-left pixel positions of one object bouncing in a box, ``int32 [T, 2]`` (row, col).

    The start is uniform in ``[0, free_range]`` per axis, the direction uniform over
    ``NUM_DIRECTIONS`` angles and the speed ``step_length * free_range`` px per frame. Each frame
    first takes a step; a coordinate that leaves the free range is put back on the wall and its
    velocity reversed. Positions are integer fixed point, truncated to pixels, so the result is
    bit-identical on every backend. ``vmap`` over keys for several objects.

    Args:
      key: one PRNG key (shape ``[]``).
      num_frames: ``T``.
      free_range: image size minus object size (36 for a 28 px digit on 64 px), or a pair
        (rows, cols).
      step_length: step per frame as a fraction of the free range.
    """
    key = key_array(key, name="key", ndim=0)
    return _bouncing_trajectories(
        key,
        num_frames=positive_int(num_frames, name="num_frames"),
        free_range=_free_range_pair(free_range),
        step_length=check_step_length(step_length),
    )


@functools.partial(jax.jit, static_argnames=("num_frames", "free_range", "step_length"))
def _bouncing_trajectories(key, *, num_frames, free_range, step_length):
    return trajectory_from_bits(
        jax.random.bits(key, (3,), jnp.uint32),
        num_frames=num_frames,
        free_range=free_range,
        step_length=step_length,
    )


def trajectory_from_bits(
    bits: jax.Array,
    *,
    num_frames: int,
    free_range: int | tuple[int, int],
    step_length: float = 0.1,
    whole_pixel_steps: bool = False,
) -> jax.Array:
    """``bouncing_trajectories`` from three random ``uint32`` words ``[3]`` instead of a key.

    The datasets draw all of a sequence's random bits with one ``jax.random.bits`` call (each
    threefry call costs about a second of CPU compile time) and hand three words to each object.

    With ``whole_pixel_steps``, the trajectory is computed in pixels instead: a whole-pixel start,
    and a per-frame step of ``step_length * free_range`` rounded to whole pixels on each axis, so
    every frame moves the object by the same number of pixels (until it bounces). Truncating a
    fractional step instead moves it by alternating amounts (1 and 2 px for 1.8), which no
    filter can predict exactly.
    """
    num_frames = positive_int(num_frames, name="num_frames")
    free = _free_range_pair(free_range)
    step_length = check_step_length(step_length)
    if bits.shape != (3,) or bits.dtype != jnp.uint32:
        raise ValueError(f"`bits` must be uint32 of shape [3], got {bits.dtype} {bits.shape}.")
    direction = (bits[2] >> jnp.uint32(32 - _DIRECTION_BITS)).astype(jnp.int32)
    if whole_pixel_steps:
        bound = jnp.asarray(free, jnp.int32)
        start = (bits[:2] % (bound + 1).astype(jnp.uint32)).astype(jnp.int32)
        velocity = jnp.asarray(_whole_pixel_direction_table(step_length, free))[direction]
    else:
        bound = jnp.int32(POSITION_UNITS)
        start = (bits[:2] % jnp.uint32(POSITION_UNITS + 1)).astype(jnp.int32)
        velocity = jnp.asarray(_direction_table(step_length))[direction]

    def step(carry, _):
        position, velocity = carry
        position = position + velocity
        outside = (position <= 0) | (position >= bound)
        velocity = jnp.where(outside, -velocity, velocity)
        position = jnp.clip(position, 0, bound)
        return (position, velocity), position

    _, positions = lax.scan(step, (start, velocity), None, length=num_frames)
    if whole_pixel_steps:
        return positions
    # positions * free < 2**31 (checked), so the product is exact in int32.
    return (positions * jnp.asarray(free, jnp.int32)[None, :]) // POSITION_UNITS


def paste_sprites(sprites: jax.Array, positions: jax.Array, *, image_size: int) -> jax.Array:
    """Draws sprites at integer positions and combines overlaps with ``max``.

    Args:
      sprites: ``[D, h, w]`` float, values >= 0.
      positions: ``int32 [D, T, 2]`` top-left (row, col) per sprite and frame, within
        ``[0, image_size - h] x [0, image_size - w]``.
      image_size: canvas side ``H = W``.

    Returns:
      ``[T, H, W]`` frames, same dtype as ``sprites``. Positions outside the free range are clamped
      into it (the sprite is drawn against the wall), as ``lax.dynamic_slice`` does.
    """
    image_size = positive_int(image_size, name="image_size")
    if sprites.ndim != 3 or sprites.shape[1] > image_size or sprites.shape[2] > image_size:
        raise ValueError(
            f"`sprites` must have shape [D, h, w] with h, w <= `image_size` {image_size}, got "
            f"{sprites.shape}."
        )
    if positions.ndim != 3 or positions.shape[0] != sprites.shape[0] or positions.shape[2] != 2:
        raise ValueError(
            f"`positions` must have shape [D, T, 2] with D = {sprites.shape[0]} (one row per "
            f"sprite), got {positions.shape}."
        )
    if not jnp.issubdtype(positions.dtype, jnp.integer):
        raise ValueError(f"`positions` must be integer pixel positions, got {positions.dtype}.")
    num, height, width = sprites.shape
    free_rows, free_cols = image_size - height, image_size - width
    # Each sprite sits in a zero plate so that the (H, W) window at (free - y, free - x) shows it at
    # (y, x): a batched dynamic slice, exact on every backend and faster on CPU than a scatter.
    plates = jnp.pad(sprites, ((0, 0), (free_rows, free_rows), (free_cols, free_cols)))

    def window(plate, position):
        return lax.dynamic_slice(
            plate, (free_rows - position[0], free_cols - position[1]), (image_size, image_size)
        )

    windows = jax.vmap(window, in_axes=(None, 0))  # one sprite over its [T, 2] positions
    frames = windows(plates[0], positions[0])
    for index in range(1, num):  # num is small and static; a loop of maxima is fastest on CPU
        frames = jnp.maximum(frames, windows(plates[index], positions[index]))
    return frames


def animate_sprites(
    sprites: jax.Array,
    bits: jax.Array,
    *,
    num_frames: int,
    image_size: int,
    step_length: float,
    whole_pixel_steps: bool = False,
) -> jax.Array:
    """Frames ``[T, H, W]`` of ``sprites [D, h, w]`` bouncing on an ``image_size`` canvas: sprite
    ``d`` follows ``trajectory_from_bits(bits[d])`` (``bits``: ``uint32 [D, 3]``) in the free range
    ``image_size - (h, w)``, drawn with ``paste_sprites``."""
    free_range = (image_size - sprites.shape[1], image_size - sprites.shape[2])
    trajectories = jax.vmap(
        functools.partial(
            trajectory_from_bits,
            num_frames=num_frames,
            free_range=free_range,
            step_length=step_length,
            whole_pixel_steps=whole_pixel_steps,
        )
    )(bits)
    return paste_sprites(sprites, trajectories, image_size=image_size)
