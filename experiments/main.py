"""Runs an experiment: ``python -m experiments.main --config=CONFIG[:VARIANT] --workdir=DIR``.

``CONFIG`` is a file in ``experiments/configs/`` whose ``get_config(arg)`` returns an
``ml_collections.ConfigDict``; ``--config.key=value`` overrides any field. ``config.experiment``
names the module that binds model, data and loss: ``experiments/<family>/<name>.py`` as
``"<family>.<name>"`` (e.g. ``"dfn.moving_mnist"``), or any importable module path (a fork in
your own package). The module's ``EXPERIMENT`` is the :class:`dfn_jax.training.Experiment`
subclass (or a :class:`dfn_jax.training.MetaExperiment`, run by the meta-learning loop).
Re-running the same command resumes from the latest checkpoint in ``DIR``.

Multi-host: start the same command once per process, adding ``--coordinator_address=HOST:PORT
--num_processes=N --process_id=I`` (or the environment variables ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``); on Cloud TPU pods, SLURM and Open MPI nothing needs to
be given. See :mod:`dfn_jax.training.distributed` and the README's "Scaling out" section.
"""

from __future__ import annotations

import importlib
import logging
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from dfn_jax import training
from dfn_jax.training import distributed

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed",
    "auto",
    list(distributed.MODES),
    "Join a multi-process JAX job: auto (when a coordinator or a cluster is found), on, off.",
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (else $JAX_COORDINATOR_ADDRESS)."
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "Processes in the job (else $JAX_NUM_PROCESSES)."
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "This process's index, 0-based (else $JAX_PROCESS_ID)."
)


def experiment_module(name: str):
    """The binding module ``experiments.<name>``, else the module ``name`` itself."""
    try:
        return importlib.import_module(f"experiments.{name}")
    except ModuleNotFoundError as e:
        if not f"experiments.{name}".startswith(e.name or "\0"):
            raise  # the module exists but one of its own imports is missing
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise ValueError(
            f"`experiment` {name!r} names no module: neither experiments.{name} nor {name} "
            "can be imported."
        ) from e


def make_experiment(config) -> training.Experiment:
    """Instantiates the experiment named by ``config.experiment`` (see the module docstring)."""
    return experiment_module(config.experiment).EXPERIMENT(config)


def train_and_evaluate(config, workdir: str) -> dict:
    """The seam tests and notebooks call: train, evaluate and write results into ``workdir``."""
    experiment = make_experiment(config)
    if isinstance(experiment, training.MetaExperiment):
        return experiment.run(workdir)
    return training.train_and_evaluate(experiment, workdir)


def main(argv):
    del argv
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    for noisy in ("absl", "orbax", "jax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    distributed.initialize(
        _DISTRIBUTED.value,
        coordinator_address=_COORDINATOR.value,
        num_processes=_NUM_PROCESSES.value,
        process_id=_PROCESS_ID.value,
    )
    try:
        results = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except training.Preempted as e:
        print(f"{e} Re-run the same command to resume.", flush=True)
        return
    if jax.process_index() != 0:  # process 0 reports for the job
        return
    test = results["test"]
    shown = {k: v for k, v in test.items() if not isinstance(v, list)}
    print(f"Done: {results['steps']} steps, {results['num_params']:,} parameters.")
    print("Test metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
    print(f"Results, figures and checkpoints in {_WORKDIR.value}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
