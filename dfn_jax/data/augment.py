"""On-device image augmentation for classification, one PRNG key per image: random crops of the
zero-padded image (MNIST's pad-to-30, CIFAR's pad-to-40 crops) and random horizontal flips.
Images are ``[B, H, W, ...]``; both are pure functions of the keys, usable inside ``jit``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dfn_jax._src.checks import key_array, positive_int


def _check_images(keys: jax.Array, images: jax.Array) -> jax.Array:
    keys = key_array(keys, name="keys", ndim=1)
    if images.ndim < 3 or images.shape[0] != keys.shape[0]:
        raise ValueError(
            f"`images` must have shape [B, H, W, ...] with B = {keys.shape[0]} (one key each), "
            f"got {tuple(images.shape)}."
        )
    return keys


def random_crops(keys: jax.Array, images: jax.Array, *, pad: int) -> jax.Array:
    """Per image: zero-pad ``pad`` pixels on every side, then crop back to the original size at
    a uniformly random offset (one key per image). ``images``: ``[B, H, W, ...]``."""
    keys = _check_images(keys, images)
    positive_int(pad, name="pad", minimum=0)
    h, w = images.shape[1:3]
    widths = [(0, 0), (pad, pad), (pad, pad)] + [(0, 0)] * (images.ndim - 3)
    padded = jnp.pad(images, widths)

    def crop(key, image):
        dy, dx = jax.random.randint(key, (2,), 0, 2 * pad + 1)
        starts = (dy, dx) + (0,) * (image.ndim - 2)
        return jax.lax.dynamic_slice(image, starts, (h, w, *image.shape[2:]))

    return jax.vmap(crop)(keys, padded)


def random_flips(keys: jax.Array, images: jax.Array) -> jax.Array:
    """Per image: mirrored left-right with probability 1/2 (one key per image)."""
    keys = _check_images(keys, images)
    flip = jax.vmap(jax.random.bernoulli)(keys)
    flip = flip.reshape((-1,) + (1,) * (images.ndim - 1))
    return jnp.where(flip, images[:, :, ::-1], images)
