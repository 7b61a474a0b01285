"""One run in a work directory, whatever loop drives it (the trainer, the meta-learning loop).

:class:`Run` owns what every loop needs around its jitted step and nothing of the step itself:
``config.json``, Orbax checkpoints (resume from the latest; a non-finite metric never overwrites a
good one; SIGTERM saves and stops), ``metrics.jsonl`` + TensorBoard, the progress bar, the wall
clock carried across resumes, and at the end ``figures/`` and ``results.json``. Process 0 writes
files; every process takes part in checkpoints.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from dfn_jax._src.host_memory import host_allocator
from dfn_jax.training.checkpoint import Checkpointer
from dfn_jax.training.metric_writer import MetricWriter, read_metrics
from dfn_jax.training.progress import Progress


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


def jsonable(value):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


def host_description() -> dict:
    """The process settings a run's speed depends on: the host allocator setting made at
    ``import dfn_jax`` and the XLA flags."""
    return {"allocator": host_allocator(), "xla_flags": os.environ.get("XLA_FLAGS", "")}


def scalars(metrics: Mapping) -> dict:
    """Scalar metrics only (per-horizon arrays go to results.json, not the logs)."""
    return {k: v for k, v in metrics.items() if np.ndim(v) == 0}


class Run:
    """The work directory of one run of ``total_steps`` steps (see the module docstring).

    Typical use by a loop::

        run = Run(workdir, config, total_steps=n)
        state = run.restore(initial_state)            # resumes if there are checkpoints
        for step in range(run.start, n):
            state, metrics = step_fn(state, ...)
            state = run.after_step(step + 1, state, metrics)   # logs, saves, may stop
        run.finish(results, write_figures)            # results.json, figures
    """

    def __init__(self, workdir: str | os.PathLike, config, *, total_steps: int):
        self.workdir = pathlib.Path(workdir)
        check_workdir(self.workdir)
        self.config = config
        self.total = total_steps
        self.is_main = jax.process_index() == 0
        if self.is_main:
            (self.workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
        self.checkpointer = Checkpointer(
            self.workdir, max_to_keep=config.get("checkpoints_to_keep", 3)
        )
        self.writer = MetricWriter(self.workdir, enabled=self.is_main)
        self.preemption = PreemptionWatch()
        self.start = self.done = 0
        self.progress: Progress | None = None
        self.last_metrics: dict = {}
        self._clock_start = time.perf_counter()
        self._time_offset = 0.0
        self.learning_rate: Callable[[int], Any] | None = None  # logged next to the loss if set

    # -- resume -----------------------------------------------------------------------------
    def restore(self, initial_state: dict) -> dict:
        """The latest checkpoint's state (structure, dtypes and shardings of ``initial_state``),
        or ``initial_state`` when there is none. The state must hold ``step`` and
        ``train_time_s`` (the wall clock carried across resumes)."""
        latest, state = self.checkpointer.restore_latest(initial_state)
        if latest is not None:
            print(f"Resuming from step {latest} ({self.checkpointer.directory})", flush=True)
        self.start = self.done = int(state["step"])
        self._time_offset = float(state["train_time_s"])
        self._clock_start = time.perf_counter()
        self.progress = Progress(self.total, first_step=self.start, enabled=self.is_main)
        return state

    def elapsed(self) -> float:
        """Training wall time so far, across resumes."""
        return self._time_offset + time.perf_counter() - self._clock_start

    def exclude_time(self, seconds: float) -> None:
        """Leaves ``seconds`` (a periodic evaluation) out of the training wall time."""
        self._clock_start += seconds

    def out_of_time(self) -> bool:
        """Whether the config's ``max_train_time_s`` (> 0) of training wall time is used up."""
        budget = self.config.get("max_train_time_s", 0)
        return bool(budget) and self.elapsed() >= budget

    # -- per step ---------------------------------------------------------------------------
    def after_step(
        self, done: int, state: dict, metrics: Mapping, *, replicated=None, last: bool = False
    ) -> dict:
        """Logs, checks and checkpoints after step ``done`` (1-based) as the config asks;
        returns ``state`` (with the wall clock updated when saved). Raises
        :class:`FloatingPointError` on a non-finite metric (nothing saved) and :class:`Preempted`
        after saving when a SIGTERM arrived. ``replicated``: the sharding of the clock scalar;
        ``last``: the loop ends after this step (logged and saved like the final step)."""
        config = self.config
        self.done = done
        preempted = self.preemption.reached(done)
        last = last or done == self.total
        is_log = done % config.log_every_steps == 0 or last
        is_ckpt = done % config.checkpoint_every_steps == 0 or last or preempted
        if is_log or is_ckpt:
            self.last_metrics = jax.device_get(dict(metrics))
            self.check_finite(self.last_metrics, done)
        if is_log:
            logged = scalars(self.last_metrics)
            if self.learning_rate is not None:
                logged["learning_rate"] = self.learning_rate(done - 1)
            self.writer.write(done, logged, prefix="train/")
            self.progress.update(done, {"loss": self.last_metrics["loss"]})
        if is_ckpt:
            # Replicated like the rest of the state (process 0's clock is the one saved).
            elapsed = np.asarray(self.elapsed(), np.float32)
            if replicated is not None:
                elapsed = jax.make_array_from_process_local_data(replicated, elapsed)
            state = dict(state, train_time_s=elapsed)
            self.checkpointer.save(done, state, force=True)
        if preempted:
            self.checkpointer.wait()
            raise Preempted(f"SIGTERM received: saved the checkpoint at step {done}; exiting.")
        return state

    def check_finite(self, metrics: Mapping, step: int) -> None:
        for name, value in metrics.items():
            if not np.all(np.isfinite(np.asarray(value))):
                raise FloatingPointError(
                    f"Non-finite {name} ({value}) at step {step}; stopping without saving. The "
                    f"last good checkpoint (step {self.checkpointer.latest_step()}) is untouched "
                    f"in {self.checkpointer.directory}."
                )

    def log(self, step: int, metrics: Mapping, *, prefix: str) -> None:
        self.writer.write(step, scalars(metrics), prefix=prefix)

    # -- the end ----------------------------------------------------------------------------
    def close_loop(self) -> None:
        """Stops watching for SIGTERM, closes the progress bar and waits for saves and logs
        (call in a ``finally``)."""
        self.preemption.close()
        if self.progress is not None:
            self.progress.close()
        self.checkpointer.wait()
        self.writer.flush()

    def steps_per_second(self) -> float | None:
        if self.done <= self.start:
            return None
        return (self.done - self.start) / max(time.perf_counter() - self._clock_start, 1e-9)

    def finish(
        self,
        results: dict,
        write_figures: Callable[[pathlib.Path], Iterable[pathlib.Path | None]] | None = None,
    ) -> dict:
        """On process 0: logs ``results["test"]`` (JSON-ready values), writes the figures
        (``write_figures(dir)`` plus the loss curves) and ``results.json``; on every process
        closes the run."""
        results.setdefault("host", host_description())
        if self.is_main:
            from dfn_jax import viz  # figures only where they are drawn

            self.log(results["steps"], results.get("test", {}), prefix="test/")
            figures_dir = self.workdir / "figures"
            figures_dir.mkdir(exist_ok=True)
            paths = list(write_figures(figures_dir)) if write_figures is not None else []
            paths.append(
                viz.plot_loss_curves(read_metrics(self.workdir), figures_dir / "loss_curves.png")
            )
            results["figures"] = [str(p.relative_to(self.workdir)) for p in paths if p is not None]
            text = json.dumps(results, indent=2, default=str) + "\n"
            (self.workdir / "results.json").write_text(text)
        self.writer.close()
        self.checkpointer.close()
        return results
