"""Rolling a recurrent step over time: ``lax.scan`` with the unroll and remat settings.

One place decides what ``unroll`` means for every recurrent model and config file: ``"auto"``
(the configs' default) is a fully unrolled loop on CPU, where convolution gradients inside a
rolled ``lax.scan`` run 10-40x slower (jax issue 12868), and a rolled loop elsewhere; strings from
the command line (``--config.model.unroll=1``, ``=true``) become the int or bool they spell.
"""

from __future__ import annotations

import jax
import numpy as np

UNROLL_AUTO = "auto"


def resolve_unroll(unroll: int | bool | str, *, name: str = "unroll") -> int | bool:
    """``unroll`` as ``lax.scan`` takes it: ``True`` (fully unrolled), ``False`` or an int >= 1.

    ``"auto"`` picks per backend (``True`` on CPU, ``1`` elsewhere); ``"true"``, ``"false"`` and
    digit strings are converted; anything else raises a ``ValueError`` naming ``name``.
    """
    if isinstance(unroll, str):
        text = unroll.strip().lower()
        if text == UNROLL_AUTO:
            return True if jax.default_backend() == "cpu" else 1
        if text in ("true", "false"):
            return text == "true"
        if not text.isdigit():
            raise ValueError(f"`{name}` must be 'auto', true/false or an int >= 1, got {unroll!r}.")
        unroll = int(text)
    if isinstance(unroll, (bool, np.bool_)):
        return bool(unroll)
    if not isinstance(unroll, (int, np.integer)) or unroll < 1:
        raise ValueError(f"`{name}` must be 'auto', true/false or an int >= 1, got {unroll!r}.")
    return int(unroll)


def check_time_loop_fields(cfg) -> None:
    """Checks the ``unroll`` and ``remat`` fields of a recurrent model's config."""
    resolve_unroll(cfg.unroll)
    if not isinstance(cfg.remat, (bool, np.bool_)):
        raise ValueError(f"`remat` must be True or False, got {cfg.remat!r}.")


def scan_steps(step, init, xs, length: int, unroll: int | bool | str, remat: bool = False):
    """``jax.lax.scan`` of ``step``, with ``unroll`` resolved by :func:`resolve_unroll`, except
    that a single step is called directly.

    ``lax.scan`` turns ``unroll=True`` into ``unroll=length``, so a length-1 scan stays a rolled
    while loop, where XLA:CPU runs convolution gradients on its slow path (jax issue 12868).

    ``remat=True`` wraps the step in ``jax.checkpoint``: the backward pass keeps only each step's
    carry and outputs and recomputes the step's activations, trading about one more forward pass
    for activation memory that no longer grows with the number of steps times the layer count.
    """
    if remat:
        step = jax.checkpoint(step)
    if length != 1:
        return jax.lax.scan(step, init, xs, length=length, unroll=resolve_unroll(unroll))
    carry, ys = step(init, None if xs is None else jax.tree.map(lambda x: x[0], xs))
    return carry, jax.tree.map(lambda y: y[None], ys)
