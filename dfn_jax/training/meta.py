"""The meta-learning loop beside the trainer: meta-training a learned optimizer by truncated
backpropagation through the optimization it performs ("Learning to learn by gradient descent by
gradient descent", Sec. 2).

One *meta-epoch* draws ``num_problems`` fresh problems of a task (:mod:`dfn_jax.data.optimizees`,
``vmap``-ed), and optimizes them for ``unroll_steps`` steps with the learned optimizer, in
truncations of ``truncation`` steps. Each truncation is one meta-step: its meta-loss is the sum of
the optimizee losses ``f(theta_t)`` after each of its updates, averaged over the problems, with
weights ``w_t`` by ``step_weights`` (:func:`step_weights`): ``"uniform"``, all 1 (the paper's), or
``"linear"``, ``w_t = 2 t / (unroll_steps + 1)`` for the ``t``-th step of the whole unroll (mean 1
over the unroll; later steps, where the learned optimizer tends to fall behind, count more),
differentiated with respect to the optimizer's meta-parameters ``phi`` (the optimizee's
gradients are inputs: their own derivatives are dropped unless ``second_order``), and ``phi``
takes an Adam step. The optimizees' parameters and the optimizer's state carry over to the next
truncation without gradient. Every ``eval_every_epochs`` the optimizer runs on fixed validation
problems and the best ``phi`` by mean final loss is kept. The whole state (``phi``, Adam's state,
the optimizees and their optimizer state mid-epoch, the best ``phi``) is checkpointed by
:class:`~dfn_jax.training.run.Run`, so a killed run resumes bitwise.

:func:`optimize` runs any optax optimizer on a batch of problems (the learned one and the
baselines alike); :func:`optimize_at` runs a baseline at a learning rate given as an argument,
so that :func:`tune_learning_rate` (which picks it on validation problems) and the test at the
chosen rate share one compilation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dfn_jax.layers.rollout import resolve_unroll
from dfn_jax.training.run import Run

OptimizerFn = Callable[[Any], optax.GradientTransformation]

#: The meta-loss's weightings of the steps (:func:`step_weights`); ``config.meta.step_weights``.
STEP_WEIGHTS = ("uniform", "linear")


def check_step_weights(name: str) -> str:
    """``name`` if it is one of :data:`STEP_WEIGHTS`, else a ``ValueError``."""
    if name not in STEP_WEIGHTS:
        allowed = ", ".join(repr(v) for v in STEP_WEIGHTS)
        raise ValueError(f"`meta.step_weights` must be one of {allowed}, not {name!r}.")
    return name


def step_weights(name: str, start, length: int, unroll_steps: int | None, dtype=jnp.float32):
    """The weights ``[length]`` of the losses after the steps ``start + 1 .. start + length``
    (1-based over the whole unroll of ``unroll_steps``; ``start`` may be traced): all 1
    (``"uniform"``) or ``2 t / (unroll_steps + 1)`` (``"linear"``, mean 1 over the unroll)."""
    check_step_weights(name)
    if name == "uniform":
        return jnp.ones((length,), dtype)
    if unroll_steps is None:
        raise ValueError("`meta.step_weights='linear'` needs `unroll_steps`.")
    t = jnp.asarray(start) + jnp.arange(1, length + 1)
    return (2.0 * t / (unroll_steps + 1)).astype(dtype)


def optimize_scan(
    optimizer: optax.GradientTransformation,
    task,
    data,
    params,
    opt_state,
    problem,
    start,
    length: int,
    *,
    stop_gradients: bool = True,
    unroll: int | bool = 1,
    meta: bool = False,
):
    """``length`` optimization steps of one problem from step ``start``: returns ``(params,
    opt_state)``, the losses ``f(theta_t)`` at which each step's gradient was taken
    ``[length]``, and the loss after the last step (at step ``start + length``). ``unroll``:
    of the ``lax.scan`` over the steps. ``meta``: the losses returned are ``task.meta_loss``
    (what meta-training sums; ``task.loss`` when the task has none) instead of the minibatch
    losses ``task.loss``."""

    meta_loss = getattr(task, "meta_loss", task.loss)

    def body(carry, t):
        params, opt_state = carry
        value, grads = jax.value_and_grad(task.loss)(params, problem, t, data)
        if meta:
            value = meta_loss(params, problem, t, data)
        if stop_gradients:
            grads = jax.lax.stop_gradient(grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    steps = start + jnp.arange(length)
    (params, opt_state), values = jax.lax.scan(body, (params, opt_state), steps, unroll=unroll)
    final = (meta_loss if meta else task.loss)(params, problem, start + length, data)
    return (params, opt_state), values, final


def truncation_meta_loss(
    meta_params, optimizer_fn: OptimizerFn, task, data, params, opt_state, problems, start,
    length: int, second_order: bool = False, *, unroll: int | bool = 1,
    weights: str = "uniform", unroll_steps: int | None = None,
):  # fmt: skip
    """Mean over problems of ``sum_{t = start+1}^{start+length} w_t f(theta_t)``, each ``f``
    the task's ``meta_loss``, ``w_t`` by ``weights`` (:func:`step_weights`; ``"linear"`` needs
    ``unroll_steps``, the length of the whole unroll); aux: the carried ``(params, opt_state)``
    and the mean final loss (unweighted)."""
    optimizer = optimizer_fn(meta_params)

    def one(params, opt_state, problem):
        carry, values, final = optimize_scan(
            optimizer, task, data, params, opt_state, problem, start, length,
            stop_gradients=not second_order, unroll=unroll, meta=True,
        )  # fmt: skip
        if weights == "uniform":  # the paper's: kept as it was, bitwise
            return jnp.sum(values[1:]) + final, carry, final
        w = step_weights(weights, start, length, unroll_steps, values.dtype)
        return jnp.sum(w[:-1] * values[1:]) + w[-1] * final, carry, final

    losses, carry, finals = jax.vmap(one)(params, opt_state, problems)
    return jnp.mean(losses), (carry, jnp.mean(finals))


def optimize(optimizer: optax.GradientTransformation, task, data, keys: jax.Array, steps: int):
    """Runs ``optimizer`` on the problems ``task.sample(key)`` for each of ``keys`` for
    ``steps`` steps; returns their losses ``[num_problems, steps + 1]`` (before each step and
    after the last). Compiled once per optimizer, task and ``steps``."""
    return _optimize(optimizer, task, steps, data, keys)


def optimize_at(
    make: Callable[[jax.Array], optax.GradientTransformation],
    learning_rate: float,
    task,
    data,
    keys: jax.Array,
    steps: int,
):
    """:func:`optimize` with ``make(learning_rate)``, the learning rate an argument of the
    compiled function, not a constant: one compilation per ``make`` (hashed as itself: pass
    the same function object each time), task, ``steps`` and number of problems serves every
    learning rate, tuning and testing alike."""
    return _optimize_at(make, task, steps, jnp.asarray(learning_rate, jnp.float32), data, keys)


def _losses(optimizer, task, steps, data, keys):
    def one(key):
        params, problem = task.sample(key)
        _, values, final = optimize_scan(
            optimizer, task, data, params, optimizer.init(params), problem, 0, steps
        )
        return jnp.concatenate([values, final[None]])

    return jax.vmap(one)(keys)


_optimize = jax.jit(_losses, static_argnums=(0, 1, 2))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _optimize_at(make, task, steps, learning_rate, data, keys):
    return _losses(make(learning_rate), task, steps, data, keys)


def tune_learning_rate(
    make: Callable[[jax.Array], optax.GradientTransformation],
    learning_rates: Sequence[float],
    task,
    data,
    keys: jax.Array,
    steps: int,
) -> tuple[float, dict[float, float]]:
    """The learning rate of ``learning_rates`` with the lowest mean final loss of
    ``make(lr)`` on the problems of ``keys`` (non-finite counts as worst), and every rate's
    mean final loss. Compiled once for the whole grid (:func:`optimize_at`)."""
    scores = {}
    for lr in learning_rates:
        final = float(jnp.mean(optimize_at(make, lr, task, data, keys, steps)[:, -1]))
        scores[float(lr)] = final if np.isfinite(final) else float("inf")
    return min(scores, key=scores.get), scores


def epoch_unrolls(
    seed: int, num_epochs: int, unroll_steps: int, choices: Sequence[int] = ()
) -> list[int]:
    """The unroll length of each meta-epoch: ``unroll_steps`` for all, or with ``choices`` one
    of them per meta-epoch, drawn uniformly and deterministically from ``seed`` (a mix of
    horizons; the same on resumption)."""
    if not choices:
        return [int(unroll_steps)] * num_epochs
    rng = np.random.default_rng([int(seed), 4242])
    return [int(v) for v in rng.choice(np.asarray(choices, int), size=num_epochs)]


def epoch_starts(lengths: Sequence[int], truncation: int) -> np.ndarray:
    """``[num_epochs + 1]``: the meta-step at which each meta-epoch of the unroll ``lengths``
    (:func:`epoch_unrolls`) starts, in truncations of ``truncation``; the last entry is the
    total number of meta-steps."""
    return np.concatenate([[0], np.cumsum([n // truncation for n in lengths])]).astype(int)


def problem_keys(seed: int, purpose: int, count: int) -> jax.Array:
    """Keys of ``count`` problems for a purpose (1 validation, 2 test, 3 tuning): disjoint
    streams of one seed, apart from every meta-training epoch's."""
    return jax.random.split(jax.random.fold_in(jax.random.key(seed), 1000 + purpose), count)


def meta_train(
    run: Run,
    *,
    optimizer_fn: OptimizerFn,
    init_meta_params,
    task,
    data,
    seed: int,
    num_epochs: int,
    num_problems: int,
    unroll_steps: int,
    truncation: int,
    meta_optimizer: optax.GradientTransformation,
    second_order: bool = False,
    eval_every_epochs: int = 0,
    num_val_problems: int = 0,
    unroll: int | bool | str = "auto",
    step_weights: str = "uniform",
    unroll_choices: Sequence[int] = (),
) -> dict:
    """Meta-trains in ``run`` (module docstring); returns the final state, whose
    ``best_meta_params`` are the best by validation (the last ones when there is none).
    ``unroll``: of each truncation's ``lax.scan`` (``"auto"``: fully unrolled on CPU, where a
    rolled loop's backward pass is several times slower, rolled elsewhere). ``step_weights``:
    of the meta-loss's steps, one of :data:`STEP_WEIGHTS`. ``unroll_choices``: each meta-epoch's
    unroll drawn from these instead of ``unroll_steps`` (:func:`epoch_unrolls`; the linear
    weights then span each epoch's own unroll, and validation runs for the longest)."""
    weights = check_step_weights(step_weights)
    unroll = resolve_unroll(unroll)
    for name, value in [("unroll_steps", unroll_steps)] + [
        ("unroll_choices", v) for v in unroll_choices
    ]:
        if value <= 0 or value % truncation:
            raise ValueError(
                f"`{name}` ({value}) must be a positive multiple of `truncation` ({truncation})."
            )
    lengths = epoch_unrolls(seed, num_epochs, unroll_steps, unroll_choices)
    starts = epoch_starts(lengths, truncation)
    val_steps = max(unroll_choices) if unroll_choices else unroll_steps
    val_keys = problem_keys(seed, 1, num_val_problems) if num_val_problems else None

    def epoch_problems(epoch):
        """The optimizees' initial parameters and the problems of meta-epoch ``epoch``: from
        ``fold_in(key(seed), epoch)`` for the first 1,000 epochs, then from a stream of their
        own, so that no training epoch meets the evaluation streams (:func:`problem_keys`)."""
        root = jax.random.key(seed)
        if epoch >= 1000:
            root = jax.random.fold_in(root, 2000)
        keys = jax.random.split(jax.random.fold_in(root, epoch), num_problems)
        return jax.vmap(task.sample)(keys)

    def init_opt_state(meta_params, params):
        return jax.vmap(optimizer_fn(meta_params).init)(params)

    # Every array the meta-step reads is committed to one device from the start, as those
    # restored from a checkpoint are: one compilation serves a fresh and a resumed run.
    commit = functools.partial(jax.device_put, device=jax.devices()[0])
    data = commit(data)
    params0, _ = epoch_problems(0)
    opt_state0 = init_opt_state(init_meta_params, params0)
    initial = {
        "step": jnp.asarray(0, jnp.int32),
        "train_time_s": jnp.asarray(0.0, jnp.float32),
        "meta_params": init_meta_params,
        "meta_opt_state": meta_optimizer.init(init_meta_params),
        "params": params0,
        "opt_state": opt_state0,
        "best_meta_params": init_meta_params,
        "best_val": jnp.asarray(jnp.inf, jnp.float32),
    }
    state = run.restore(commit(initial))

    step_settings = _StepSettings(
        optimizer_fn, task, meta_optimizer, truncation, second_order, unroll, weights
    )
    total = int(starts[-1])
    drawn_epoch = None
    try:
        for step in range(run.start, total):
            epoch = int(np.searchsorted(starts, step, side="right")) - 1
            index, per_epoch = step - int(starts[epoch]), lengths[epoch] // truncation
            if drawn_epoch != epoch:  # drawn once per epoch, not per truncation
                initial_params, problems = commit(epoch_problems(epoch))
                drawn_epoch = epoch
            if index == 0:  # fresh problems: the optimizees and the optimizer's state restart
                params = initial_params
                opt_state = commit(init_opt_state(state["meta_params"], params))
            else:
                params, opt_state = state["params"], state["opt_state"]
            meta_params, meta_opt_state, (params, opt_state), metrics = _meta_step(
                step_settings, lengths[epoch], state["meta_params"], state["meta_opt_state"],
                params, opt_state, problems, index * truncation, data,
            )  # fmt: skip
            state = dict(
                state,
                step=jnp.asarray(step + 1, jnp.int32),
                meta_params=meta_params,
                meta_opt_state=meta_opt_state,
                params=params,
                opt_state=opt_state,
            )
            end_of_epoch = index == per_epoch - 1
            validating = val_keys is not None and eval_every_epochs > 0
            if validating and end_of_epoch and (epoch + 1) % eval_every_epochs == 0:
                value = float(_validate(optimizer_fn, task, val_steps, meta_params, data, val_keys))
                run.log(step + 1, {"val_final_loss": value}, prefix="eval/")
                if value < float(state["best_val"]):
                    best = jnp.asarray(value, jnp.float32)
                    state = dict(state, best_meta_params=meta_params, best_val=best)
            state = run.after_step(step + 1, state, metrics)
    finally:
        run.close_loop()
    if val_keys is None:
        state = dict(state, best_meta_params=state["meta_params"])
    return state


class _StepSettings(NamedTuple):
    """What a meta-step is compiled for (hashed by each field; functions and optax
    transformations by identity), so that calls of :func:`meta_train` with the same objects,
    such as a resumed run in the same process, reuse the compilation."""

    optimizer_fn: OptimizerFn
    task: Any
    meta_optimizer: optax.GradientTransformation
    truncation: int
    second_order: bool
    unroll: int | bool
    weights: str


@functools.partial(jax.jit, static_argnums=(0, 1))
def _meta_step(
    settings, horizon, meta_params, meta_opt_state, params, opt_state, problems, start, data
):
    """One truncation of ``settings.truncation`` steps and one update of the meta-parameters;
    ``horizon``: the epoch's unroll (the linear step weights span it)."""
    grad_fn = jax.value_and_grad(truncation_meta_loss, has_aux=True)
    (loss, (carry, final)), grads = grad_fn(
        meta_params, settings.optimizer_fn, settings.task, data, params, opt_state, problems,
        start, settings.truncation, settings.second_order, unroll=settings.unroll,
        weights=settings.weights, unroll_steps=horizon,
    )  # fmt: skip
    updates, meta_opt_state = settings.meta_optimizer.update(grads, meta_opt_state, meta_params)
    meta_params = optax.apply_updates(meta_params, updates)
    metrics = {"loss": loss, "final_loss": final, "grad_norm": optax.tree.norm(grads)}
    return meta_params, meta_opt_state, carry, metrics


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _validate(optimizer_fn, task, steps, meta_params, data, keys):
    """The mean final loss of ``optimizer_fn(meta_params)`` on the problems of ``keys``."""
    losses = _losses(optimizer_fn(meta_params), task, steps, data, keys)
    return jnp.mean(losses[:, -1])


class MetaExperiment:
    """An experiment driven by the meta-learning loop rather than the trainer:
    ``experiments.main`` calls :meth:`run` with the work directory and prints the results
    (``steps``, ``num_params`` and ``test`` like the trainer's)."""

    def __init__(self, config):
        self.config = config

    def run(self, workdir: str) -> dict:
        raise NotImplementedError
