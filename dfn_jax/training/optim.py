"""Optimizers and schedules from a config: Adam with the DFN paper's step-halving schedule."""

from __future__ import annotations

import optax


def step_halving_schedule(learning_rate: float, *, halve_every: int) -> optax.Schedule:
    """``learning_rate * 0.5 ** (step // halve_every)`` (the paper halves the rate every
    ``decay_after`` epochs of 200 batches); ``halve_every <= 0`` keeps it constant."""
    if halve_every <= 0:
        return optax.constant_schedule(learning_rate)
    return optax.exponential_decay(
        learning_rate, transition_steps=halve_every, decay_rate=0.5, staircase=True
    )


def learning_rate_schedule(config) -> optax.Schedule:
    """The run's schedule: ``config.learning_rate`` halved every ``config.lr_halve_every_steps``."""
    return step_halving_schedule(
        config.learning_rate, halve_every=config.get("lr_halve_every_steps", 0)
    )


def make_optimizer(config) -> optax.GradientTransformation:
    """Adam (b1 0.9, b2 0.999, eps 1e-8) with :func:`learning_rate_schedule` and optional
    global-norm clipping ``config.grad_clip_norm`` (0 disables it)."""
    schedule = learning_rate_schedule(config)
    parts = []
    if config.get("grad_clip_norm", 0.0) > 0:
        parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
    parts.append(optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8))
    return optax.chain(*parts)
