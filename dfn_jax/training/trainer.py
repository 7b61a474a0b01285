"""The one shared trainer: functional train state, jitted steps, evaluation.

``train_and_evaluate(experiment, workdir)`` runs an :class:`~dfn_jax.training.Experiment`:

* the model is split once (``nnx.split``) into a static graph, its parameters and every other
  variable it has (batch statistics, RNG counts), all plain pytrees;
* the train state is ``{step, params, model_state, opt_state, carry, key, train_time_s}``; the
  train step is a pure ``jax.jit`` function of ``(state, batch)``, state donated: it hands the
  experiment's loss this step's key (``fold_in(key, step)``) and the carry, and returns the new
  parameters, model variables, optimiser state and carry (``optax.apply_updates``);
* data parallel over a 1-D device mesh (:mod:`dfn_jax.training.mesh`); the same code runs on 1 or
  N devices and hosts;
* checkpoints, logs, progress, preemption and ``results.json`` belong to the
  :class:`~dfn_jax.training.run.Run` (shared with the meta-learning loop).
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from dfn_jax._src.params import count_params
from dfn_jax.training import validation
from dfn_jax.training.experiment import Experiment
from dfn_jax.training.mesh import OnMesh, host_local_copy, make_mesh, process_rows
from dfn_jax.training.metric_writer import read_metrics
from dfn_jax.training.run import Preempted, Run, jsonable

__all__ = ["Preempted", "Trainer", "train_and_evaluate"]

#: ``fold_in(key(seed), TRAIN_KEY_STREAM)`` is the train steps' key (data batches use stream 1).
TRAIN_KEY_STREAM = 2


class Trainer:
    """Holds the compiled steps of one experiment; :func:`train_and_evaluate` drives it."""

    def __init__(self, experiment: Experiment):
        self.experiment = experiment
        config = experiment.config
        self.config = config
        validation.raise_if_problems(
            validation.trainer_problems(config)
            + validation.unknown_key_problems(config, experiment.config_keys, experiment.data_keys)
            + experiment.config_problems()
        )
        self.mesh = make_mesh(config.get("mesh", {}).get("data", -1))
        self.batch_sharding = NamedSharding(self.mesh, P("data"))
        self.replicated = NamedSharding(self.mesh, P())
        self.carry_sharding = NamedSharding(self.mesh, experiment.carry_spec)
        self._local_rows: dict[int, np.ndarray | None] = {}

        model = experiment.build_model(nnx.Rngs(config.seed))
        self.num_params = count_params(model)
        self.graphdef, params, model_state = nnx.split(model, nnx.Param, ...)
        self.learning_rate = experiment.learning_rate_schedule()  # logged next to the loss
        self.optimizer = experiment.make_optimizer()
        self._init_params = nnx.to_pure_dict(params)
        self._init_model_state = nnx.to_pure_dict(model_state)
        self.train_step = OnMesh(jax.jit(self._train_step, donate_argnums=0), self.mesh)
        self.eval_step = OnMesh(jax.jit(self._eval_step), self.mesh)

    @property
    def param_shapes(self) -> dict:
        """The shapes of the model's parameters, as the pure dict a checkpoint holds."""
        return jax.tree.map(jnp.shape, self._init_params)

    # -- pure functions -------------------------------------------------------------------
    def bind(self, params, model_state=None) -> nnx.Module:
        """The model with the given parameters and other variables (pure dicts; ``None``: the
        initial ones)."""
        if model_state is None:
            model_state = self._init_model_state
        return nnx.merge(self.graphdef, params, model_state)

    def init_state(self) -> dict:
        params = self._init_params
        state = {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "model_state": self._init_model_state,
            "opt_state": self.optimizer.init(params),
            "train_time_s": jnp.zeros((), jnp.float32),
        }
        # Copies: the train step donates the state, which must not delete the initial parameters
        # (init_state() again, bind(None), evaluate(params) of the initial model).
        state = jax.device_put(state, self.replicated, may_alias=False)
        # Made by jitted functions so that they land on the global mesh on every process.
        seed = self.config.seed
        # Stored as raw key data (uint32): typed key arrays in a donated argument make the
        # jitted step miss its dispatch cache on a multi-device mesh (it recompiled).
        state["key"] = jax.jit(
            lambda: jax.random.key_data(jax.random.fold_in(jax.random.key(seed), TRAIN_KEY_STREAM)),
            out_shardings=self.replicated,
        )()
        state["carry"] = jax.jit(self.experiment.init_carry, out_shardings=self.carry_sharding)()
        return state

    def _train_step(self, state, batch):
        key = jax.random.fold_in(jax.random.wrap_key_data(state["key"]), state["step"])

        def loss_fn(params):
            model = self.bind(params, state["model_state"])
            loss, metrics, carry = self.experiment.carried_loss(model, batch, key, state["carry"])
            model_state = nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))
            return loss, (metrics, carry, model_state)

        (loss, (metrics, carry, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"]
        )
        updates, opt_state = self.optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        carry = jax.lax.with_sharding_constraint(jax.lax.stop_gradient(carry), self.carry_sharding)
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
        new_state = dict(
            state,
            step=state["step"] + 1,
            params=params,
            model_state=model_state,
            opt_state=opt_state,
            carry=carry,
        )
        return new_state, metrics

    def _eval_step(self, params, model_state, batch):
        model = self.bind(params, model_state)
        model.eval()  # dropout off, batch statistics frozen
        return self.experiment.eval_sums(model, batch)

    # -- host-side loops ------------------------------------------------------------------
    def local_rows(self, batch_size: int) -> np.ndarray | None:
        """The rows of a global batch of ``batch_size`` that this process loads (``None``: all),
        worked out once per batch size."""
        if batch_size not in self._local_rows:
            self._local_rows[batch_size] = process_rows(self.batch_sharding, batch_size)
        return self._local_rows[batch_size]

    def shard_batch(self, local_batch, batch_size: int | None = None):
        """A global batch sharded on ``"data"`` from this process's rows of it.

        ``local_batch`` holds the rows ``local_rows(batch_size)`` (on one process: the whole
        batch, and ``batch_size`` may be omitted).
        """
        leaves = jax.tree.leaves(local_batch)
        size = batch_size if batch_size is not None else leaves[0].shape[0]

        def global_array(x):
            return jax.make_array_from_process_local_data(
                self.batch_sharding, x, (size, *x.shape[1:])
            )

        return jax.tree.map(global_array, local_batch)

    def train_batch(self, step: int):
        """The global training batch of ``step``; each process generates only its own rows."""
        size = self.config.batch_size
        return self.shard_batch(self.experiment.train_batch(step, self.local_rows(size)), size)

    def evaluate(self, state_or_params, model_state=None) -> dict:
        """Means of the experiment's evaluation sums over its evaluation set, for a train state
        (or its parameters and model variables)."""
        if isinstance(state_or_params, dict) and "opt_state" in state_or_params:
            params, model_state = state_or_params["params"], state_or_params["model_state"]
        else:
            params = state_or_params
            if model_state is None:
                model_state = jax.device_put(self._init_model_state, self.replicated)
        totals = None
        size = self.experiment.eval_batch_size
        for batch in self.experiment.eval_batches(self.local_rows(size)):
            sums = self.eval_step(params, model_state, self.shard_batch(batch, size))
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        if totals is None:
            raise ValueError("The experiment's evaluation set is empty.")
        return self.experiment.summarize(per_count(jax.device_get(totals)))


def per_count(totals: dict) -> dict:
    """Evaluation sums divided by their counts: a metric ``<prefix>_<name>`` by ``<prefix>_count``
    when the sums have one (e.g. ``val_error`` by ``val_count``: several sets in one
    evaluation), every other metric by ``count``."""
    counts = {k[: -len("count")]: float(v) for k, v in totals.items() if k.endswith("count")}
    means = {}
    for name, value in totals.items():
        if name.endswith("count"):
            continue
        prefix = next((p for p in counts if p and name.startswith(p)), "")
        if prefix not in counts:
            raise ValueError(f"Evaluation sum {name!r} has no count: return `count` as well.")
        means[name] = np.asarray(value) / counts[prefix]
    return means


def best_evaluation(records: list[dict], metric: str) -> dict | None:
    """The periodic evaluation (``eval/`` records of ``metrics.jsonl``) with the lowest
    ``metric``: ``{"step": ..., <its eval metrics>}``, or ``None`` if there was none."""
    key = f"eval/{metric}"
    evals = [r for r in records if isinstance(r.get(key), (int, float))]
    if not evals:
        return None
    best = min(evals, key=lambda r: r[key])
    return {"step": best["step"], **{k[5:]: v for k, v in best.items() if k.startswith("eval/")}}


def train_and_evaluate(experiment: Experiment, workdir: str | os.PathLike) -> dict:
    """Trains ``experiment`` in ``workdir`` (resuming if it holds checkpoints), evaluates it,
    writes figures and ``results.json``, and returns the results dict."""
    config = experiment.config
    total = config.num_train_steps
    run = Run(workdir, config, total_steps=total)
    trainer = Trainer(experiment)
    run.learning_rate = trainer.learning_rate
    state = run.restore(trainer.init_state())
    try:
        for step in range(run.start, total):
            state, metrics = trainer.train_step(state, trainer.train_batch(step))
            done = step + 1
            last = done == total or run.out_of_time()
            state = run.after_step(done, state, metrics, replicated=trainer.replicated, last=last)
            if last:
                break
            if config.eval_every_steps and done % config.eval_every_steps == 0:
                eval_start = time.perf_counter()
                evaluation = trainer.evaluate(state)
                run.exclude_time(time.perf_counter() - eval_start)  # training time only
                run.log(done, dict(evaluation, train_time_s=run.elapsed()), prefix="eval/")
    finally:
        run.close_loop()

    train_time = float(state["train_time_s"])
    eval_start = time.perf_counter()
    test_metrics = trainer.evaluate(state)
    results = {
        "experiment": type(experiment).__name__,
        "steps": int(state["step"]),
        "num_params": trainer.num_params,
        "train_wall_time_s": train_time,
        "eval_wall_time_s": time.perf_counter() - eval_start,
        "steps_per_second": run.steps_per_second(),
        "stopped_by_time_budget": int(state["step"]) < total,
        "devices": [str(d) for d in trainer.mesh.devices.flat],
        "num_processes": jax.process_count(),
        "test": {k: jsonable(v) for k, v in test_metrics.items()},
        **experiment.describe(),
    }
    if config.get("select_best_by") and run.is_main:
        # Early stopping read off the periodic evaluations (all of them, across resumes) and the
        # final one.
        final = {"step": results["steps"], **{f"eval/{k}": v for k, v in results["test"].items()}}
        records = [*read_metrics(run.workdir), final]
        results["best"] = best_evaluation(records, config.select_best_by)

    def write_figures(figures_dir):
        # Process 0 alone runs the model, on its own first device.
        local = host_local_copy({"params": state["params"], "model_state": state["model_state"]})
        model = trainer.bind(local["params"], local["model_state"])
        model.eval()
        return experiment.write_figures(model, figures_dir)

    return run.finish(results, write_figures)
