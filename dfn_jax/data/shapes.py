"""Bouncing shapes: an embedded Moving-MNIST-like dataset that needs no download.

Each sequence shows ``num_shapes`` procedural sprites (filled squares, discs, plus-shaped crosses
and triangles, 10 to 20 px across, grey level 0.5 to 1) drawn centred in a 28x28 box, the size of
an MNIST digit, and moving exactly like Moving MNIST digits: the same trajectory code
(``trajectory_from_bits``, the core of ``bouncing_trajectories``) and ``paste_sprites`` (start
uniform in the free range, uniform direction, 0.1 of the free range per frame, bouncing off the
walls, overlaps combined with ``max``). Sprites are built on device from the key, so a sequence
depends only on its key. Output is ``float32 [B, T, H, W, 1]`` in [0, 1], the format of
``moving_mnist_sequences``; the README quick start and the small test configs use it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from dfn_jax._src.checks import key_array, positive_int
from dfn_jax.data._bouncing import animate_sprites, check_step_length
from dfn_jax.data._mnist_files import UINT8_TO_FLOAT

__all__ = [
    "SHAPE_KINDS",
    "bouncing_shapes_sequences",
    "generate_bouncing_shapes",
    "random_sprites",
    "sprite_options",
]

SHAPE_KINDS = ("square", "disc", "cross", "triangle")
"""The sprite kinds, drawn uniformly."""

_SPRITE_SIZE, _MIN_SIZE, _MAX_SIZE = 28, 10, 20  # the default box and extents, in pixels


def _check_sprite_options(
    sprite_size: int, min_size: int, max_size: int, min_grey: float, image_size: int | None = None
) -> None:
    sprite_size = positive_int(sprite_size, name="sprite_size")
    min_size = positive_int(min_size, name="min_size")
    max_size = positive_int(max_size, name="max_size")
    if not min_size <= max_size <= sprite_size:
        raise ValueError(
            f"`min_size` <= `max_size` <= `sprite_size` expected, got min_size={min_size}, "
            f"max_size={max_size}, sprite_size={sprite_size}."
        )
    if image_size is not None and sprite_size > image_size:
        raise ValueError(
            f"`sprite_size` must be at most `image_size` {image_size}, got {sprite_size}."
        )
    if isinstance(min_grey, bool) or not isinstance(min_grey, (int, float)):
        raise ValueError(f"`min_grey` must be a float in (0, 1], got {min_grey!r}.")
    if not 0.0 < min_grey <= 1.0:
        raise ValueError(f"`min_grey` must be in (0, 1], got {min_grey!r}.")


def _sprite_from_bits(bits, *, sprite_size, min_size, max_size, min_grey):
    kind = (bits[0] % jnp.uint32(len(SHAPE_KINDS))).astype(jnp.int32)
    size = min_size + (bits[1] % jnp.uint32(max_size - min_size + 1)).astype(jnp.int32)
    # Grey levels are whole multiples of 1/255, so sprites survive a round trip through uint8.
    lowest = round(min_grey * 255)
    grey = (lowest + (bits[2] % jnp.uint32(256 - lowest)).astype(jnp.int32)).astype(jnp.float32)
    grey = grey * UINT8_TO_FLOAT

    # Offsets from the box centre are multiples of 1/2, so every comparison below is exact.
    offsets = jnp.arange(sprite_size, dtype=jnp.float32) - (sprite_size - 1) / 2
    dy, dx = offsets[:, None], offsets[None, :]
    half = size.astype(jnp.float32) / 2
    arm = jnp.maximum(2, size // 3).astype(jnp.float32) / 2
    inside_box = (jnp.abs(dy) < half) & (jnp.abs(dx) < half)
    square = inside_box
    disc = dy * dy + dx * dx <= half * half
    cross = inside_box & ((jnp.abs(dy) < arm) | (jnp.abs(dx) < arm))
    triangle = inside_box & (jnp.abs(dx) <= (dy + half) / 2)  # apex up, base at the bottom
    mask = jnp.stack([square, disc, cross, triangle])[kind]
    return jnp.where(mask, grey, jnp.float32(0.0))


def random_sprites(
    key: jax.Array,
    num_sprites: int,
    *,
    sprite_size: int = _SPRITE_SIZE,
    min_size: int = _MIN_SIZE,
    max_size: int = _MAX_SIZE,
    min_grey: float = 0.5,
) -> jax.Array:
    """Random procedural sprites, ``float32 [num_sprites, sprite_size, sprite_size]`` in [0, 1].

    Each is one of ``SHAPE_KINDS``, ``min_size`` to ``max_size`` px across, centred in its box,
    filled with one grey level in ``[min_grey, 1]`` (a multiple of 1/255) on a zero background.
    """
    num_sprites = positive_int(num_sprites, name="num_sprites")
    _check_sprite_options(sprite_size, min_size, max_size, min_grey)
    key = key_array(key, name="key", ndim=0)
    return _random_sprites(
        key,
        num_sprites=num_sprites,
        sprite_size=int(sprite_size),
        min_size=int(min_size),
        max_size=int(max_size),
        min_grey=float(min_grey),
    )


@functools.partial(
    jax.jit, static_argnames=("num_sprites", "sprite_size", "min_size", "max_size", "min_grey")
)
def _random_sprites(key, *, num_sprites, sprite_size, min_size, max_size, min_grey):
    make = functools.partial(
        _sprite_from_bits,
        sprite_size=sprite_size,
        min_size=min_size,
        max_size=max_size,
        min_grey=min_grey,
    )
    return jax.vmap(make)(jax.random.bits(key, (num_sprites, 3), jnp.uint32))


def _one_sequence(
    key, *, num_frames, image_size, num_shapes, step_length, whole_pixel_steps, sprite_options
):
    # One threefry call per sequence: per shape, three sprite words and three trajectory words.
    bits = jax.random.bits(key, (num_shapes, 6), jnp.uint32)
    sprites = jax.vmap(functools.partial(_sprite_from_bits, **sprite_options))(bits[:, :3])
    return animate_sprites(
        sprites,
        bits[:, 3:],
        num_frames=num_frames,
        image_size=image_size,
        step_length=step_length,
        whole_pixel_steps=whole_pixel_steps,
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "num_frames",
        "image_size",
        "num_shapes",
        "step_length",
        "whole_pixel_steps",
        "sprite_options",
    ),
)
def _sequences(
    keys, *, num_frames, image_size, num_shapes, step_length, whole_pixel_steps, sprite_options
):
    make = functools.partial(
        _one_sequence,
        num_frames=num_frames,
        image_size=image_size,
        num_shapes=num_shapes,
        step_length=step_length,
        whole_pixel_steps=whole_pixel_steps,
        sprite_options=dict(sprite_options),
    )
    return jax.vmap(make)(keys)[..., None]


def bouncing_shapes_sequences(
    keys: jax.Array,
    *,
    num_frames: int = 20,
    image_size: int = 64,
    num_shapes: int = 2,
    step_length: float = 0.1,
    whole_pixel_steps: bool = False,
    sprite_size: int = _SPRITE_SIZE,
    min_size: int = _MIN_SIZE,
    max_size: int = _MAX_SIZE,
    min_grey: float = 0.5,
) -> jax.Array:
    """Bouncing-shapes sequences, one per key: ``float32 [B, T, H, W, 1]`` in [0, 1].

    Args:
      keys: ``[B]`` PRNG keys (or legacy raw ``uint32 [B, 2]``); sequence ``b`` depends only on
        ``keys[b]`` and the options.
      num_frames: ``T``.
      image_size: canvas side ``H = W``.
      num_shapes: sprites per sequence.
      step_length: speed as a fraction of the free range ``image_size - sprite_size`` per frame.
      whole_pixel_steps: move each sprite by the same whole number of pixels every frame (its
        step rounded per axis) instead of truncating a fractional position to pixels, so that
        one shift filter predicts every frame exactly (``trajectory_from_bits``).
      sprite_size: side of the box a sprite moves in (28, like an MNIST digit).
      min_size, max_size: range of the sprite's extent in pixels.
      min_grey: lowest grey level of a sprite.
    """
    num_frames = positive_int(num_frames, name="num_frames")
    image_size = positive_int(image_size, name="image_size")
    num_shapes = positive_int(num_shapes, name="num_shapes")
    step_length = check_step_length(step_length)
    _check_sprite_options(sprite_size, min_size, max_size, min_grey, image_size=image_size)
    keys = key_array(keys, name="keys", ndim=1)
    sprite_options = (
        ("sprite_size", int(sprite_size)),
        ("min_size", int(min_size)),
        ("max_size", int(max_size)),
        ("min_grey", float(min_grey)),
    )
    return _sequences(
        keys,
        num_frames=num_frames,
        image_size=image_size,
        num_shapes=num_shapes,
        step_length=step_length,
        whole_pixel_steps=bool(whole_pixel_steps),
        sprite_options=sprite_options,
    )


def sprite_options(sprite_size: int) -> dict:
    """The sprite options of ``bouncing_shapes_sequences`` for a box of ``sprite_size`` pixels,
    scaled from the defaults (extents 10 to 20 pixels in a 28-pixel box)."""
    sprite_size = positive_int(sprite_size, name="sprite_size")
    return {
        "sprite_size": sprite_size,
        "min_size": max(1, round(sprite_size * _MIN_SIZE / _SPRITE_SIZE)),
        "max_size": max(1, round(sprite_size * _MAX_SIZE / _SPRITE_SIZE)),
    }


def generate_bouncing_shapes(key: jax.Array, *, batch_size: int, **kwargs) -> jax.Array:
    """A batch of ``batch_size`` sequences from one key: ``float32 [B, T, H, W, 1]`` in [0, 1].

    Splits ``key`` into ``batch_size`` keys and calls ``bouncing_shapes_sequences`` (same keyword
    options).
    """
    batch_size = positive_int(batch_size, name="batch_size")
    key = key_array(key, name="key", ndim=0)
    return bouncing_shapes_sequences(jax.random.split(key, batch_size), **kwargs)
