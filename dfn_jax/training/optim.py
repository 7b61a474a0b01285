"""Optimisers and learning-rate schedules from a config, built from optax's own pieces.

``config.optimizer.name`` picks the update rule, ``config.lr_schedule`` the schedule (keys and
defaults: :func:`dfn_jax.training.config.base_config`):

==============  ==========================================================================
optimizer       optax transformation
==============  ==========================================================================
``adam``        ``optax.adam(lr, b1, b2, eps)`` (the DFN paper's)
``adamw``       ``optax.adamw(lr, b1, b2, eps, weight_decay, mask)`` (decoupled decay)
``sgd``         ``optax.sgd(lr, momentum, nesterov)`` (momentum 0: plain SGD)
``rmsprop``     ``optax.rmsprop(lr, decay, eps, momentum, nesterov)``
==============  ==========================================================================

==================  ======================================================================
schedule            learning rate at step ``t``
==================  ======================================================================
``constant``        ``learning_rate``
``step_halving``    ``learning_rate * 0.5 ** (t // lr_halve_every_steps)`` (DFN paper)
``exponential``     ``max(learning_rate * lr_decay_rate ** (t / lr_transition_steps),
                    lr_end_value)`` (HyperNetworks' MNIST notebook: 0.999 per step)
``piecewise``       ``learning_rate`` times the product of the ``lr_scales`` whose
                    ``lr_boundaries`` are ``<= t`` (wide ResNets' step schedule)
``cosine``          cosine decay from ``learning_rate`` to ``lr_end_value`` over the run
==================  ======================================================================

``lr_warmup_steps`` > 0 puts a linear warm-up from 0 in front of any of them. Weight decay
(``optimizer.weight_decay``) is decoupled for ``adamw`` and an L2 term added to the gradient
(``optax.add_decayed_weights``) otherwise, on kernels only by default (parameters named
``kernel``: no biases, norms or embeddings). ``grad_clip_norm`` > 0 clips the global gradient
norm first (``optax.clip_by_global_norm``).
"""

from __future__ import annotations

import jax
import optax

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "step_halving", "exponential", "piecewise", "cosine")
WEIGHT_DECAY_ON = ("kernels", "all")


def step_halving_schedule(learning_rate: float, *, halve_every: int) -> optax.Schedule:
    """``learning_rate * 0.5 ** (step // halve_every)`` (the DFN paper halves the rate every
    ``decay_after`` epochs of 200 batches); ``halve_every <= 0`` keeps it constant."""
    if halve_every <= 0:
        return optax.constant_schedule(learning_rate)
    return optax.exponential_decay(
        learning_rate, transition_steps=halve_every, decay_rate=0.5, staircase=True
    )


def learning_rate_schedule(config) -> optax.Schedule:
    """The run's schedule, from ``config.lr_schedule`` and its ``lr_*`` keys (module docstring)."""
    lr, name = config.learning_rate, config.get("lr_schedule", "constant")
    if name == "constant":
        schedule = optax.constant_schedule(lr)
    elif name == "step_halving":
        schedule = step_halving_schedule(lr, halve_every=config.lr_halve_every_steps)
    elif name == "exponential":
        end = config.lr_end_value
        schedule = optax.exponential_decay(
            lr,
            transition_steps=config.lr_transition_steps,
            decay_rate=config.lr_decay_rate,
            end_value=end if end > 0 else None,
        )
    elif name == "piecewise":
        schedule = optax.piecewise_constant_schedule(
            lr, dict(zip(config.lr_boundaries, config.lr_scales, strict=True))
        )
    elif name == "cosine":
        decay_steps = max(config.num_train_steps - config.get("lr_warmup_steps", 0), 1)
        alpha = config.lr_end_value / lr
        schedule = optax.cosine_decay_schedule(lr, decay_steps=decay_steps, alpha=alpha)
    else:
        raise ValueError(f"`lr_schedule` must be one of {SCHEDULES}, got {name!r}.")
    warmup = config.get("lr_warmup_steps", 0)
    if warmup > 0:
        ramp = optax.linear_schedule(0.0, lr, transition_steps=warmup)
        schedule = optax.join_schedules([ramp, schedule], boundaries=[warmup])
    return schedule


def kernel_mask(params):
    """``True`` for the leaves whose name is ``kernel`` (the weights of NNX ``Linear``/``Conv``),
    ``False`` elsewhere: the parameters weight decay applies to by default."""

    def is_kernel(path, _):
        last = path[-1] if path else None
        return getattr(last, "key", getattr(last, "name", None)) == "kernel"

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_optimizer(config, schedule: optax.Schedule | None = None) -> optax.GradientTransformation:
    """The run's optimiser: optional clipping, optional L2, then the update rule of
    ``config.optimizer.name`` with ``schedule`` (default :func:`learning_rate_schedule`)."""
    opt = config.optimizer
    schedule = schedule if schedule is not None else learning_rate_schedule(config)
    mask = kernel_mask if opt.weight_decay_on == "kernels" else None
    momentum = opt.momentum if opt.momentum > 0 else None
    parts = []
    if config.get("grad_clip_norm", 0.0) > 0:
        parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
    if opt.weight_decay > 0 and opt.name != "adamw":
        parts.append(optax.add_decayed_weights(opt.weight_decay, mask=mask))
    if opt.name == "adam":
        parts.append(optax.adam(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps))
    elif opt.name == "adamw":
        parts.append(
            optax.adamw(
                schedule,
                b1=opt.b1,
                b2=opt.b2,
                eps=opt.eps,
                weight_decay=opt.weight_decay,
                mask=mask,
            )
        )
    elif opt.name == "sgd":
        parts.append(optax.sgd(schedule, momentum=momentum, nesterov=opt.nesterov))
    elif opt.name == "rmsprop":
        parts.append(
            optax.rmsprop(
                schedule, decay=opt.decay, eps=opt.eps, momentum=momentum, nesterov=opt.nesterov
            )
        )
    else:
        raise ValueError(f"`optimizer.name` must be one of {OPTIMIZERS}, got {opt.name!r}.")
    return optax.chain(*parts)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def optimizer_problems(config) -> list[str]:
    """Problems with the optimiser and schedule keys, each a sentence (checked before building)."""
    problems, opt = [], config.get("optimizer", {})
    if opt.get("name") not in OPTIMIZERS:
        problems.append(f"`optimizer.name` must be one of {OPTIMIZERS}, got {opt.get('name')!r}.")
    if opt.get("weight_decay_on") not in WEIGHT_DECAY_ON:
        problems.append(
            f"`optimizer.weight_decay_on` must be one of {WEIGHT_DECAY_ON}, "
            f"got {opt.get('weight_decay_on')!r}."
        )
    for name in ("momentum", "weight_decay"):
        if not _number(opt.get(name)) or opt.get(name) < 0:
            problems.append(f"`optimizer.{name}` must be a number >= 0, got {opt.get(name)!r}.")
    lr = config.get("learning_rate")
    if not _number(lr) or not lr > 0:
        problems.append(f"`learning_rate` must be a positive number, got {lr!r}.")
    name = config.get("lr_schedule")
    if name not in SCHEDULES:
        problems.append(f"`lr_schedule` must be one of {SCHEDULES}, got {name!r}.")
    if config.get("lr_halve_every_steps", 0) and name != "step_halving":
        problems.append(
            f"`lr_halve_every_steps` is read only by lr_schedule='step_halving' (got {name!r})."
        )
    if name == "exponential":
        rate, steps = config.get("lr_decay_rate"), config.get("lr_transition_steps")
        if not _number(rate) or not 0 < rate <= 1:
            problems.append(f"`lr_decay_rate` must be in (0, 1], got {rate!r}.")
        if not isinstance(steps, int) or steps <= 0:
            problems.append(f"`lr_transition_steps` must be a positive integer, got {steps!r}.")
    if name == "piecewise":
        bounds, scales = tuple(config.get("lr_boundaries", ())), tuple(config.get("lr_scales", ()))
        if len(bounds) != len(scales) or not bounds:
            problems.append(
                "`lr_boundaries` and `lr_scales` must be non-empty and of equal length, got "
                f"{bounds!r} and {scales!r}."
            )
        elif list(bounds) != sorted(bounds) or not all(isinstance(b, int) for b in bounds):
            problems.append(f"`lr_boundaries` must be increasing integers, got {bounds!r}.")
    return problems
