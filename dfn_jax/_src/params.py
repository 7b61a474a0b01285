"""Counting a module's trainable parameters (used by models' users and by the trainer)."""

from __future__ import annotations

import jax
from flax import nnx


def count_params(model: nnx.Module) -> int:
    """Total number of scalars in the module's ``nnx.Param`` variables (trainable parameters)."""
    return int(sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))))
