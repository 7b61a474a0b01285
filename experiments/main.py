"""Runs an experiment: ``python -m experiments.main --config=CONFIG[:VARIANT] --workdir=DIR``.

``CONFIG`` is a file in ``experiments/configs/`` whose ``get_config(arg)`` returns an
``ml_collections.ConfigDict``; ``--config.key=value`` overrides any field. ``config.experiment``
names the module in ``experiments/`` that binds model, data and loss. Re-running the same command
resumes from the latest checkpoint in ``DIR``.
"""

from __future__ import annotations

import importlib
import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from dfn_jax import training

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")


def make_experiment(config) -> training.Experiment:
    """Instantiates the experiment named by ``config.experiment`` (a module in experiments/)."""
    module = importlib.import_module(f"experiments.{config.experiment}")
    return module.EXPERIMENT(config)


def train_and_evaluate(config, workdir: str) -> dict:
    """The seam tests and notebooks call: train, evaluate and write results into ``workdir``."""
    return training.train_and_evaluate(make_experiment(config), workdir)


def main(argv):
    del argv
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    for noisy in ("absl", "orbax", "jax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        results = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except training.Preempted as e:
        print(f"{e} Re-run the same command to resume.", flush=True)
        return
    test = results["test"]
    shown = {k: v for k, v in test.items() if not isinstance(v, list)}
    print(f"Done: {results['steps']} steps, {results['num_params']:,} parameters.")
    print("Test metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
    print(f"Results, figures and checkpoints in {_WORKDIR.value}")


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
