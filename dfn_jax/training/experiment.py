"""What an experiment supplies to the one shared trainer.

An experiment binds a model, its data and its loss; the trainer owns everything else (optimiser,
jitted steps, sharding, checkpoints, logging, evaluation loop, ``results.json``). Subclass
:class:`Experiment` and implement the abstract methods; see ``experiments/dfn/moving_mnist.py``.
"""

from __future__ import annotations

import abc
import dataclasses
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np
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

    #: Top-level config keys the experiment reads besides the trainer's
    #: (``validation.TRAINER_KEYS``), and the keys of its ``data`` section. Any other key is
    #: reported as unknown before training starts; ``None`` leaves that level unchecked.
    config_keys: frozenset[str] | None = None
    data_keys: frozenset[str] | None = None

    def __init__(self, config):
        self.config = config
        # Training batches derive from this key and the step only (never from process history),
        # so a resumed run sees the batches an uninterrupted one would.
        self.data_key = jax.random.fold_in(jax.random.key(config.seed), 1)

    @abc.abstractmethod
    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        """Returns a freshly initialised model."""

    @abc.abstractmethod
    def train_batch(self, step: int, rows: np.ndarray | None = None) -> PyTree:
        """Rows ``rows`` (all if ``None``) of the global training batch for ``step``.

        A pure function of the seed and the step, so a resumed run sees exactly the batches an
        uninterrupted one would; on several processes each generates or loads only its rows
        (:meth:`example_keys` gives every example its own key, which makes that easy).
        """

    @abc.abstractmethod
    def loss(self, model: nnx.Module, batch: PyTree) -> tuple[jax.Array, Mapping[str, jax.Array]]:
        """Scalar training loss and a dict of scalar metrics to log (traced under ``jit``)."""

    @abc.abstractmethod
    def eval_batches(self, rows: np.ndarray | None = None) -> Iterable[PyTree]:
        """The fixed evaluation set, in order, in batches of :attr:`eval_batch_size`; of each
        batch only the rows ``rows`` (all if ``None``), as for :meth:`train_batch`."""

    @property
    def eval_batch_size(self) -> int:
        """The size of every evaluation batch (``config.eval_batch_size`` unless overridden)."""
        return self.config.eval_batch_size

    def eval_indices(self, num_examples: int, rows: np.ndarray | None = None):
        """Yields, per evaluation batch of :attr:`eval_batch_size`, the indices into an evaluation
        set of ``num_examples`` of its rows (only ``rows`` of each batch if given)."""
        size = self.eval_batch_size
        for start in range(0, num_examples - size + 1, size):
            index = np.arange(start, start + size)
            yield index if rows is None else index[rows]

    def example_keys(self, step: int, rows: np.ndarray | None = None) -> jax.Array:
        """One PRNG key per example of the training batch of ``step`` (only ``rows`` if given):
        ``split(fold_in(data_key, step), batch_size)``, whichever process asks."""
        keys = jax.random.split(jax.random.fold_in(self.data_key, step), self.config.batch_size)
        return keys if rows is None else keys[rows]

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

    def evaluation_problems(
        self, num_key: str = "num_eval_sequences", figures_key: str = "num_figure_sequences"
    ) -> list[str]:
        """Checks the evaluation-set size ``config[num_key]``, ``eval_batch_size`` and the
        figure count ``config[figures_key]``: positive, and a whole number of evaluation batches
        (every batch has one shape, so the evaluation step compiles once)."""
        config, problems = self.config, []
        for name in (num_key, "eval_batch_size", figures_key):
            if not isinstance(config[name], int) or config[name] <= 0:
                problems.append(f"`{name}` must be a positive integer, got {config[name]!r}.")
        if not problems and config[num_key] % config.eval_batch_size:
            problems.append(
                f"`{num_key}` ({config[num_key]}) must be a multiple of `eval_batch_size` "
                f"({config.eval_batch_size}), so every evaluation batch has one shape and the "
                "evaluation step compiles once."
            )
        return problems

    def model_problems(self) -> list[str]:
        """The model config's own error, if building it from ``config.model`` fails (reads the
        subclass's ``model_config`` property)."""
        try:
            self.model_config  # noqa: B018
        except (ValueError, TypeError) as e:
            return [f"model: {e}"]
        return []

    def write_figures(self, model: nnx.Module, figures_dir: pathlib.Path) -> list[pathlib.Path]:
        """Writes the experiment's PNG figures; returns their paths."""
        del model, figures_dir
        return []

    def describe(self) -> dict:
        """Extra facts for ``results.json`` (data source, variant, ...)."""
        return {}
