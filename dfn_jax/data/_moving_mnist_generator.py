"""Moving MNIST generated on device: ``moving_mnist_sequences`` (one sequence per key) and
``generate_moving_mnist`` (a batch from one key).

Each sequence draws ``num_digits`` digits uniformly from the ``digits`` it is given and moves them
with :mod:`dfn_jax.data._bouncing` (``trajectory_from_bits``, ``paste_sprites``). All of a
sequence's random bits come from one ``jax.random.bits`` call on its key: per digit, an index word
and three trajectory words. See :mod:`dfn_jax.data.moving_mnist` for the format.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from dfn_jax._src.checks import key_array, positive_int
from dfn_jax.data._bouncing import animate_sprites, check_step_length
from dfn_jax.data._mnist_files import UINT8_TO_FLOAT


def check_digits(digits, *, image_size: int) -> jax.Array:
    """Checks ``digits`` (``[N, h, w]`` uint8 or float, ``N >= 1``, no larger than the canvas)."""
    if not hasattr(digits, "dtype") or not hasattr(digits, "ndim"):
        raise ValueError(
            f"`digits` must be an array [N, 28, 28] (float in [0, 1] or uint8), got "
            f"{type(digits).__name__}."
        )
    if digits.ndim != 3 or digits.shape[0] < 1:
        raise ValueError(f"`digits` must have shape [N, 28, 28] with N >= 1, got {digits.shape}.")
    if digits.shape[1] > image_size or digits.shape[2] > image_size:
        raise ValueError(
            f"`digits` of size {digits.shape[1:]} do not fit in a canvas of `image_size` "
            f"{image_size}; expected digits no larger than the canvas."
        )
    if digits.dtype != jnp.uint8 and not jnp.issubdtype(digits.dtype, jnp.floating):
        raise ValueError(
            f"`digits` must be float in [0, 1] (see digits_to_float) or uint8, got dtype "
            f"{digits.dtype}."
        )
    return jnp.asarray(digits)


def _one_sequence(key, digits, *, num_frames, image_size, num_digits, step_length):
    # One threefry call per sequence: per digit, an index word and three trajectory words.
    bits = jax.random.bits(key, (num_digits, 4), jnp.uint32)
    index = (bits[:, 0] % jnp.uint32(digits.shape[0])).astype(jnp.int32)
    chosen = digits[index]
    if chosen.dtype == jnp.uint8:
        chosen = chosen.astype(jnp.float32) * UINT8_TO_FLOAT  # as digits_to_float does
    chosen = chosen.astype(jnp.float32)
    return animate_sprites(
        chosen, bits[:, 1:], num_frames=num_frames, image_size=image_size, step_length=step_length
    )


@functools.partial(
    jax.jit, static_argnames=("num_frames", "image_size", "num_digits", "step_length")
)
def sequences(keys, digits, *, num_frames, image_size, num_digits, step_length):
    """``moving_mnist_sequences`` without the argument checks, jitted with the options static."""
    frames = jax.vmap(
        functools.partial(
            _one_sequence,
            num_frames=num_frames,
            image_size=image_size,
            num_digits=num_digits,
            step_length=step_length,
        ),
        in_axes=(0, None),
    )(keys, digits)
    return frames[..., None]


def moving_mnist_sequences(
    keys: jax.Array,
    digits: jax.Array,
    *,
    num_frames: int = 20,
    image_size: int = 64,
    num_digits: int = 2,
    step_length: float = 0.1,
) -> jax.Array:
    """Moving MNIST sequences, one per key: ``float32 [B, T, H, W, 1]`` in [0, 1].

    Sequence ``b`` depends only on ``keys[b]`` (and on ``digits`` and the options), so batches can
    be split or regrouped freely. Jitted inside; also callable under ``jax.jit`` with the options
    static.

    Args:
      keys: ``[B]`` PRNG keys (or legacy raw ``uint32 [B, 2]``).
      digits: ``[N, 28, 28]`` float32 in [0, 1] (``digits_to_float``) or uint8 (0..255, converted
        on the fly, 4x less device memory). Each sequence draws ``num_digits`` of them uniformly.
      num_frames: ``T``.
      image_size: canvas side ``H = W``.
      num_digits: digits per sequence.
      step_length: speed as a fraction of the free range ``image_size - 28`` per frame.
    """
    num_frames = positive_int(num_frames, name="num_frames")
    image_size = positive_int(image_size, name="image_size")
    num_digits = positive_int(num_digits, name="num_digits")
    step_length = check_step_length(step_length)
    keys = key_array(keys, name="keys", ndim=1)
    digits = check_digits(digits, image_size=image_size)
    return sequences(
        keys,
        digits,
        num_frames=num_frames,
        image_size=image_size,
        num_digits=num_digits,
        step_length=step_length,
    )


def generate_moving_mnist(
    key: jax.Array, digits: jax.Array, *, batch_size: int, **kwargs
) -> jax.Array:
    """A batch of ``batch_size`` sequences from one key: ``float32 [B, T, H, W, 1]`` in [0, 1].

    Splits ``key`` into ``batch_size`` keys and calls ``moving_mnist_sequences`` (which takes the
    same keyword options).
    """
    batch_size = positive_int(batch_size, name="batch_size")
    key = key_array(key, name="key", ndim=0)
    return moving_mnist_sequences(jax.random.split(key, batch_size), digits, **kwargs)
