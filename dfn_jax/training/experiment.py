"""What an experiment supplies to the one shared trainer.

An experiment binds a model, its data and its loss; the trainer owns everything else (optimiser,
jitted steps, sharding, checkpoints, logging, evaluation loop, ``results.json``). Subclass
:class:`Experiment` and implement the abstract methods; see ``experiments/moving_mnist.py``.
"""

from __future__ import annotations

import abc
import dataclasses
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import jax
from flax import nnx

PyTree = Any


def dataclass_from_config(cls, section, **overrides):
    """Builds the config dataclass ``cls`` (e.g. a model's) from a ``ConfigDict`` section.

    Unknown keys are an error (a typo in a forked config must not be silently ignored); lists
    become tuples; ``overrides`` replace values after conversion.
    """
    fields = {f.name for f in dataclasses.fields(cls)}
    values = section.to_dict() if hasattr(section, "to_dict") else dict(section)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"unknown keys {unknown} for {cls.__name__}; it has {sorted(fields)}.")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**{**values, **overrides})


class Experiment(abc.ABC):
    """Model + data + loss for one paper experiment, configured by an ``ml_collections`` config."""

    def __init__(self, config):
        self.config = config
        # Training batches derive from this key and the step only (never from process history),
        # so a resumed run sees the batches an uninterrupted one would.
        self.data_key = jax.random.fold_in(jax.random.key(config.seed), 1)

    @abc.abstractmethod
    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        """Returns a freshly initialised model."""

    @abc.abstractmethod
    def train_batch(self, step: int) -> PyTree:
        """The global training batch for ``step``: a pure function of the seed and the step, so a
        resumed run sees exactly the batches an uninterrupted one would."""

    @abc.abstractmethod
    def loss(self, model: nnx.Module, batch: PyTree) -> tuple[jax.Array, Mapping[str, jax.Array]]:
        """Scalar training loss and a dict of scalar metrics to log (traced under ``jit``)."""

    @abc.abstractmethod
    def eval_batches(self) -> Iterable[PyTree]:
        """The fixed evaluation set, in order."""

    @abc.abstractmethod
    def eval_sums(self, model: nnx.Module, batch: PyTree) -> Mapping[str, jax.Array]:
        """Per-batch sums of every evaluation metric plus ``"count"`` (examples in the batch).

        The trainer adds these over the evaluation set and divides each by the total count, so
        metrics come out as means per example (arrays, e.g. per prediction horizon, are fine).
        """

    def config_problems(self) -> list[str]:
        """Problems with the experiment's own config fields (data, model), each a sentence.

        Checked, together with the trainer's fields, before anything is built or compiled.
        """
        return []

    def write_figures(self, model: nnx.Module, figures_dir: pathlib.Path) -> list[pathlib.Path]:
        """Writes the experiment's PNG figures; returns their paths."""
        del model, figures_dir
        return []

    def describe(self) -> dict:
        """Extra facts for ``results.json`` (data source, variant, ...)."""
        return {}
