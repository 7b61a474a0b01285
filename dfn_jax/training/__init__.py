"""The one shared trainer (functional train state, Optax, Orbax, metric logs, device mesh)."""

from dfn_jax.training.checkpoint import Checkpointer
from dfn_jax.training.experiment import Experiment
from dfn_jax.training.metric_writer import MetricWriter, read_metrics
from dfn_jax.training.optim import make_optimizer, step_halving_schedule
from dfn_jax.training.trainer import Preempted, Trainer, train_and_evaluate

__all__ = [
    "Checkpointer",
    "Experiment",
    "MetricWriter",
    "Preempted",
    "Trainer",
    "make_optimizer",
    "read_metrics",
    "step_halving_schedule",
    "train_and_evaluate",
]
