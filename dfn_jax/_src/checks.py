"""Argument checks shared by ops, layers, models and data: every failure is a ``ValueError``
that names the argument, the shape or value it got and the one expected, before anything reaches
XLA."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def kernel_size_pair(
    kernel_size: int | Sequence[int], *, name: str = "kernel_size"
) -> tuple[int, int]:
    """Returns ``(kh, kw)`` from an int or a pair of ints, checking both are positive and odd.

    Bools and non-integers (``3.0``, ``"3"``) are rejected, not converted.
    """
    if is_int(kernel_size):
        pair = (int(kernel_size), int(kernel_size))
    else:
        try:
            items = tuple(kernel_size)
        except TypeError:
            items = None
        if items is None or not all(is_int(k) for k in items):
            raise ValueError(
                f"`{name}` must be an odd int or a pair (kh, kw) of odd ints, got {kernel_size!r}."
            )
        if len(items) != 2:
            raise ValueError(
                f"`{name}` must be an odd int or a pair (kh, kw), got {kernel_size!r}."
            )
        pair = (int(items[0]), int(items[1]))
    for k in pair:
        if k <= 0 or k % 2 == 0:
            raise ValueError(
                f"`{name}` must hold positive odd sizes (the filter is centred on the pixel), "
                f"got {kernel_size!r}."
            )
    return pair


def int_pair(value: int | Sequence[int], *, name: str) -> tuple[int, int]:
    """Returns a pair of positive ints from an int or a pair."""
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    else:
        pair = tuple(int(v) for v in value)
        if len(pair) != 2:
            raise ValueError(f"`{name}` must be an int or a pair of ints, got {value!r}.")
    if min(pair) <= 0:
        raise ValueError(f"`{name}` must be positive, got {value!r}.")
    return pair  # type: ignore[return-value]


def floating_array(x, *, name: str) -> jnp.ndarray:
    """Converts to a JAX array and rejects non-floating dtypes (ints, bools, complex)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"`{name}` must be a floating-point array (float32, bfloat16, float16 or float64), "
            f"got dtype {x.dtype}."
        )
    return x


def rank(x, ranks: Sequence[int], *, name: str, layout: str) -> None:
    """Checks ``x.ndim`` is one of ``ranks``; ``layout`` describes the expected shape."""
    if x.ndim not in ranks:
        raise ValueError(f"`{name}` must have shape {layout}, got shape {tuple(x.shape)}.")


def is_int(value) -> bool:
    """A Python or NumPy integer, but not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def positive_int(value, *, name: str, minimum: int = 1, expected: str | None = None) -> int:
    """Returns ``value`` as an ``int``, checking it is an integer (not a bool) ``>= minimum``.

    The message reads ``must be {expected}``; ``expected`` defaults to ``"an int >= {minimum}"``
    (the models say ``"a positive int"``).
    """
    if not is_int(value) or value < minimum:
        if expected is None:
            expected = f"an int >= {minimum}"
        raise ValueError(f"`{name}` must be {expected}, got {value!r}.")
    return int(value)


def key_array(keys, *, name: str, ndim: int) -> jax.Array:
    """A typed key array of rank ``ndim`` (0 or 1) from typed keys or legacy raw ``uint32 [..., 2]``
    keys (which are wrapped)."""
    dtype = getattr(keys, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if keys.ndim != ndim:
            layout = "[B]" if ndim == 1 else "[] (a single key)"
            raise ValueError(f"`{name}` must be a key array of shape {layout}, got {keys.shape}.")
        return keys
    if dtype == jnp.uint32 and keys.ndim == ndim + 1 and keys.shape[-1] == 2:
        return jax.random.wrap_key_data(keys)
    layout = "[B]" if ndim == 1 else "[]"
    raise ValueError(
        f"`{name}` must be PRNG keys of shape {layout} (from jax.random.key / split) or raw uint32 "
        f"keys of shape {layout[:-1] + ', 2]' if ndim else '[2]'}, got "
        f"{type(keys).__name__} with shape {getattr(keys, 'shape', None)} and dtype {dtype}."
    )


def choice(value, options: Sequence[str], *, name: str) -> None:
    if value not in options:
        raise ValueError(f"`{name}` must be one of {tuple(options)}, got {value!r}.")


FILTER_IMPLEMENTATIONS = ("fast", "xla", "reference")
"""Implementations of dynamic local filtering (``ops.dynamic_local_filter(implementation=)``)."""


def rate(value, *, name: str) -> float:
    """A dropout rate: a number in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"`{name}` must be a rate in [0, 1), got {value!r}.")
    return float(value)


def optional_path(value, *, name: str) -> pathlib.Path | None:
    """``value`` as a ``Path`` (``~`` expanded), ``None`` kept; anything else is an error."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"`{name}` must be a path (str or os.PathLike) or None, got {value!r}.")
    return pathlib.Path(value).expanduser()


def explicit_padding(padding, kernel_hw, image_hw, strides) -> tuple[tuple[int, int], ...]:
    """``((top, bottom), (left, right))`` from ``"SAME"``, ``"VALID"``, an int or the pairs."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(
                f"`padding` must be 'SAME', 'VALID', an int or ((top, bottom), (left, right)), "
                f"got {padding!r}."
            )
        pads = jax.lax.padtype_to_pads(image_hw, kernel_hw, strides, padding.upper())
        return tuple(tuple(p) for p in pads)
    if is_int(padding):
        if padding < 0:
            raise ValueError(f"`padding` must be non-negative, got {padding}.")
        return ((int(padding),) * 2,) * 2
    try:
        pads = tuple(tuple(int(p) for p in pair) for pair in padding)
    except (TypeError, ValueError):
        pads = ()
    if len(pads) != 2 or any(len(p) != 2 or min(p) < 0 for p in pads):
        raise ValueError(f"`padding` must be ((top, bottom), (left, right)), got {padding!r}.")
    return pads
