"""The one shared trainer and the pieces every training loop reuses.

* :func:`train_and_evaluate` / :class:`Trainer`: the functional train state and jitted steps;
* :class:`Experiment`: what an experiment supplies (model, data, loss; optional carry, optimiser);
* :mod:`~dfn_jax.training.config`: the default config block and ``name.py:arg`` parsing;
* :mod:`~dfn_jax.training.optim`: optimisers and schedules by config (optax);
* :class:`Run`: a work directory's checkpoints (:class:`Checkpointer`, Orbax), metric logs
  (:class:`MetricWriter`), progress, preemption and ``results.json``, shared with the
  meta-learning loop; :mod:`~dfn_jax.training.mesh`: the device mesh;
* :mod:`~dfn_jax.training.meta`: the meta-learning loop (learned optimizers) and
  :class:`MetaExperiment`, what an experiment driven by it supplies.
"""

from dfn_jax.training.checkpoint import Checkpointer
from dfn_jax.training.config import base_config, dataclass_from_config, parse_config_arg
from dfn_jax.training.experiment import Experiment
from dfn_jax.training.meta import MetaExperiment
from dfn_jax.training.metric_writer import MetricWriter, read_metrics
from dfn_jax.training.optim import learning_rate_schedule, make_optimizer, step_halving_schedule
from dfn_jax.training.run import Preempted, Run
from dfn_jax.training.trainer import Trainer, train_and_evaluate

__all__ = [
    "Checkpointer",
    "Experiment",
    "MetaExperiment",
    "MetricWriter",
    "Preempted",
    "Run",
    "Trainer",
    "base_config",
    "dataclass_from_config",
    "learning_rate_schedule",
    "make_optimizer",
    "parse_config_arg",
    "read_metrics",
    "step_halving_schedule",
    "train_and_evaluate",
]
