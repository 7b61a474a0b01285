"""The one shared trainer: functional train state, jitted steps, checkpoints, logs, evaluation.

``train_and_evaluate(experiment, workdir)`` runs an :class:`~dfn_jax.training.Experiment`:

* the model is split once (``nnx.split``) into a static graph and a plain dict of parameters;
  the train step is a pure ``jax.jit`` function of ``(state, batch)``, state donated;
* data parallel over a 1-D device mesh (axis ``"data"``): the batch is sharded, parameters and
  optimiser state are replicated; the same code runs on 1 or N devices;
* Orbax checkpoints every ``checkpoint_every_steps``; re-running the same command resumes from the
  latest one; a non-finite loss stops the run before anything is saved; SIGTERM saves and exits;
* ``metrics.jsonl`` + TensorBoard logs, a progress line with steps/s and ETA, periodic evaluation,
  ``figures/`` and ``results.json`` (test metrics, parameter count, steps, wall time).
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from dfn_jax import models
from dfn_jax.training import optim, validation
from dfn_jax.training.checkpoint import Checkpointer
from dfn_jax.training.experiment import Experiment
from dfn_jax.training.metric_writer import MetricWriter
from dfn_jax.training.progress import Progress

log = logging.getLogger(__name__)


class Preempted(Exception):
    """Raised after a SIGTERM once the current step's checkpoint is saved."""


def check_workdir(workdir: pathlib.Path) -> None:
    """Fails early, with a sentence, if the work directory cannot be written."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write_test_{os.getpid()}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as e:
        raise OSError(f"Work directory {str(workdir)!r} is not writable: {e}") from e


def make_mesh(num_devices: int) -> jax.sharding.Mesh:
    """A 1-D data-parallel mesh (axis ``"data"``) over ``num_devices`` of the global devices
    (0 or -1: all of them, on every process)."""
    devices = jax.devices()
    n = len(devices) if num_devices <= 0 else num_devices
    return jax.make_mesh((n,), ("data",), (AxisType.Auto,), devices=devices[:n])


def process_rows(sharding: NamedSharding, batch_size: int) -> np.ndarray | None:
    """Indices of the rows of a global ``[batch_size, ...]`` batch that live on this process's
    devices under ``sharding``, in the order ``jax.make_array_from_process_local_data`` expects
    them (ascending): a contiguous block per process on a multi-host mesh, or ``None`` when this
    process holds every row (one process), so that callers need not index at all."""
    index_map = sharding.addressable_devices_indices_map((batch_size,))
    starts = sorted({(s[0].start or 0, s[0].stop or batch_size) for s in index_map.values()})
    rows = np.concatenate([np.arange(a, b) for a, b in starts])
    return None if np.array_equal(rows, np.arange(batch_size)) else rows


def host_local_copy(tree: Any) -> Any:
    """A copy of a tree of replicated global arrays on this process's first device only, so
    that process 0 can run a model (figures) without the other processes taking part."""
    device = jax.local_devices()[0]
    return jax.tree.map(lambda a: jax.device_put(a.addressable_data(0), device), tree)


def _is_finite(metrics: dict) -> tuple[bool, str]:
    for name, value in metrics.items():
        if not np.all(np.isfinite(np.asarray(value))):
            return False, name
    return True, ""


class OnMesh:
    """A jitted function traced and run with ``mesh`` as the context mesh (``jax.set_mesh``), so
    that ops can split per-device work over it (the C++ filtering kernels do); ``lower`` and the
    jitted function's other attributes pass through."""

    def __init__(self, jitted, mesh: jax.sharding.Mesh):
        self._jitted, self._mesh = jitted, mesh

    def __call__(self, *args, **kwargs):
        with jax.set_mesh(self._mesh):
            return self._jitted(*args, **kwargs)

    def lower(self, *args, **kwargs):
        with jax.set_mesh(self._mesh):
            return self._jitted.lower(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._jitted, name)


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
        self._local_rows: dict[int, np.ndarray | None] = {}

        model = experiment.build_model(nnx.Rngs(config.seed))
        self.num_params = models.count_params(model)
        self.graphdef, params, self.rest = nnx.split(model, nnx.Param, ...)
        self.optimizer = optim.make_optimizer(config)
        self.learning_rate = optim.learning_rate_schedule(config)  # logged next to the loss
        self._init_params = nnx.to_pure_dict(params)
        self.train_step = OnMesh(jax.jit(self._train_step, donate_argnums=0), self.mesh)
        self.eval_step = OnMesh(jax.jit(self._eval_step), self.mesh)

    # -- pure functions -------------------------------------------------------------------
    def bind(self, params) -> nnx.Module:
        """The model with the given parameters (a pure dict)."""
        return nnx.merge(self.graphdef, params, self.rest)

    def init_state(self) -> dict:
        params = self._init_params
        state = {
            "step": jnp.zeros((), jnp.int32),
            "params": params,
            "opt_state": self.optimizer.init(params),
            "train_time_s": jnp.zeros((), jnp.float32),
        }
        return jax.device_put(state, self.replicated)

    def _train_step(self, state, batch):
        def loss_fn(params):
            return self.experiment.loss(self.bind(params), batch)

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = self.optimizer.update(grads, state["opt_state"], state["params"])
        params = jax.tree.map(jnp.add, state["params"], updates)
        metrics = dict(metrics, loss=loss, grad_norm=_global_norm(grads))
        new_state = dict(state, step=state["step"] + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    def _eval_step(self, params, batch):
        return self.experiment.eval_sums(self.bind(params), batch)

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

    def evaluate(self, params) -> dict:
        totals = None
        size = self.experiment.eval_batch_size
        for batch in self.experiment.eval_batches(self.local_rows(size)):
            sums = self.eval_step(params, self.shard_batch(batch, size))
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        if totals is None:
            raise ValueError("The experiment's evaluation set is empty.")
        totals = jax.device_get(totals)
        count = float(totals.pop("count"))
        return {name: np.asarray(value) / count for name, value in totals.items()}


class PreemptionWatch:
    """Says at which step to save and stop after a SIGTERM (preemption notice).

    One process: a SIGTERM handler sets a flag; the step that sees it saves. Several processes:
    every process must save at the same step, whichever of them got the signal, so JAX's
    preemption service decides (``multihost_utils.reached_preemption_sync_point``: the notice
    is propagated to all processes, which agree on the next step after all of them have seen it).
    """

    def __init__(self):
        self.multi_process = jax.process_count() > 1
        self._flag: list[bool] = []
        self._previous = None
        if not self.multi_process:  # the distributed runtime catches SIGTERM itself
            self._previous = signal.signal(signal.SIGTERM, lambda *_: self._flag.append(True))

    def reached(self, step: int) -> bool:
        if self.multi_process:
            return multihost_utils.reached_preemption_sync_point(step)
        return bool(self._flag)

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def _global_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def _jsonable(value):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


def _scalars(metrics: dict) -> dict:
    """Scalar metrics only (per-horizon arrays go to results.json, not the logs)."""
    return {k: v for k, v in metrics.items() if np.ndim(v) == 0}


def train_and_evaluate(experiment: Experiment, workdir: str | os.PathLike) -> dict:
    """Trains ``experiment`` in ``workdir`` (resuming if it holds checkpoints), evaluates it,
    writes figures and ``results.json``, and returns the results dict."""
    config = experiment.config
    workdir = pathlib.Path(workdir)
    check_workdir(workdir)
    is_main = jax.process_index() == 0
    if is_main:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))

    trainer = Trainer(experiment)
    checkpointer = Checkpointer(workdir, max_to_keep=config.get("checkpoints_to_keep", 3))
    writer = MetricWriter(workdir, enabled=is_main)
    latest, state = checkpointer.restore_latest(trainer.init_state())
    if latest is not None:
        print(f"Resuming from step {latest} ({checkpointer.directory})", flush=True)
    start = int(state["step"])
    total = config.num_train_steps
    progress = Progress(total, first_step=start, enabled=is_main)

    preemption = PreemptionWatch()
    last_metrics: dict = {}
    step_time_start = time.perf_counter()
    time_offset = float(state["train_time_s"])
    try:
        for step in range(start, total):
            state, metrics = trainer.train_step(state, trainer.train_batch(step))
            done = step + 1
            preempted = preemption.reached(done)
            is_log = done % config.log_every_steps == 0 or done == total
            is_ckpt = done % config.checkpoint_every_steps == 0 or done == total or preempted
            if is_log or is_ckpt:
                last_metrics = jax.device_get(metrics)
                finite, bad = _is_finite(last_metrics)
                if not finite:
                    raise FloatingPointError(
                        f"Non-finite {bad} ({last_metrics[bad]}) at step {done}; stopping without "
                        f"saving. The last good checkpoint (step {checkpointer.latest_step()}) "
                        f"is untouched in {checkpointer.directory}."
                    )
            if is_log:
                lr = trainer.learning_rate(step)
                writer.write(done, dict(_scalars(last_metrics), learning_rate=lr), prefix="train/")
                progress.update(done, {"loss": last_metrics["loss"]})
            if is_ckpt:
                elapsed = time_offset + time.perf_counter() - step_time_start
                # Replicated like the rest of the state (process 0's clock is the one saved).
                elapsed = jax.make_array_from_process_local_data(
                    trainer.replicated, np.asarray(elapsed, np.float32)
                )
                state = dict(state, train_time_s=elapsed)
                checkpointer.save(done, state, force=True)
            if config.eval_every_steps and done % config.eval_every_steps == 0 and done < total:
                writer.write(done, _scalars(trainer.evaluate(state["params"])), prefix="eval/")
            if preempted:
                checkpointer.wait()
                raise Preempted(f"SIGTERM received: saved the checkpoint at step {done}; exiting.")
    finally:
        preemption.close()
        checkpointer.wait()
        writer.flush()

    train_time = float(state["train_time_s"]) if start < total else time_offset
    eval_start = time.perf_counter()
    test_metrics = trainer.evaluate(state["params"])
    eval_time = time.perf_counter() - eval_start
    results = {
        "experiment": type(experiment).__name__,
        "steps": int(state["step"]),
        "num_params": trainer.num_params,
        "train_wall_time_s": train_time,
        "eval_wall_time_s": eval_time,
        "steps_per_second": (total - start) / max(time.perf_counter() - step_time_start, 1e-9)
        if start < total
        else None,
        "devices": [str(d) for d in trainer.mesh.devices.flat],
        "num_processes": jax.process_count(),
        "test": {k: _jsonable(v) for k, v in test_metrics.items()},
        **experiment.describe(),
    }
    if is_main:
        writer.write(int(state["step"]), _scalars(test_metrics), prefix="test/")
        figures_dir = workdir / "figures"
        figures_dir.mkdir(exist_ok=True)
        from dfn_jax import viz

        model = trainer.bind(host_local_copy(state["params"]))  # process 0 alone runs it
        paths = list(experiment.write_figures(model, figures_dir))
        paths.append(viz.plot_loss_curves(workdir, figures_dir / "loss_curves.png"))
        results["figures"] = [str(p.relative_to(workdir)) for p in paths if p is not None]
        (workdir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    writer.close()
    checkpointer.close()
    return results
