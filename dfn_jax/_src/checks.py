"""Argument checks shared by ops, layers, models and data: every failure is a ``ValueError``
that names the argument, the shape or value it got and the one expected, before anything reaches
XLA."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np


def kernel_size_pair(
    kernel_size: int | Sequence[int], *, name: str = "kernel_size"
) -> tuple[int, int]:
    """Returns ``(kh, kw)`` from an int or a pair, checking both are positive and odd."""
    if isinstance(kernel_size, (int, np.integer)):
        pair = (int(kernel_size), int(kernel_size))
    else:
        try:
            pair = tuple(int(k) for k in kernel_size)
        except (TypeError, ValueError):
            raise ValueError(
                f"`{name}` must be an odd int or a pair (kh, kw) of odd ints, got {kernel_size!r}."
            ) from None
        if len(pair) != 2:
            raise ValueError(
                f"`{name}` must be an odd int or a pair (kh, kw), got {kernel_size!r}."
            )
    for k in pair:
        if k <= 0 or k % 2 == 0:
            raise ValueError(
                f"`{name}` must hold positive odd sizes (the filter is centred on the pixel), "
                f"got {kernel_size!r}."
            )
    return pair  # type: ignore[return-value]


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


def choice(value, options: Sequence[str], *, name: str) -> None:
    if value not in options:
        raise ValueError(f"`{name}` must be one of {tuple(options)}, got {value!r}.")


FILTER_IMPLEMENTATIONS = ("fast", "xla", "reference")
"""Implementations of dynamic local filtering (``ops.dynamic_local_filter(implementation=)``)."""
