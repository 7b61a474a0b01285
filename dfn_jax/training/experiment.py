"""What an experiment supplies to the one shared trainer.

An experiment binds a model, its data and its loss; the trainer owns everything else (optimiser,
jitted steps, sharding, checkpoints, logging, evaluation loop, ``results.json``). Subclass
:class:`Experiment` and implement the abstract methods (``build_model``, ``train_batch``,
``loss``, ``eval_batches``, ``eval_sums``); the other hooks have defaults:

* ``init_carry`` / ``carried_loss``: state carried from one step to the next (a language
  model's hidden state across consecutive segments, a learned optimiser's inner problem);
* ``make_optimizer`` / ``learning_rate_schedule``: the config's (``dfn_jax.training.optim``)
  unless the experiment brings its own ``optax.GradientTransformation``;
* ``write_figures``, ``describe``, ``config_problems``.

See ``experiments/dfn/moving_mnist.py`` for a paper experiment and ``tests/toy_experiment.py``
for the smallest complete one.
"""

from __future__ import annotations

import abc
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from dfn_jax.training import optim

PyTree = Any


class Experiment(abc.ABC):
    """Model + data + loss for one paper experiment, configured by an ``ml_collections`` config."""

    #: Top-level config keys the experiment reads besides the trainer's
    #: (``validation.TRAINER_KEYS``), and the keys of its ``data`` section. Any other key is
    #: reported as unknown before training starts; ``None`` leaves that level unchecked.
    config_keys: frozenset[str] | None = None
    data_keys: frozenset[str] | None = None
    #: How every leaf of the carry is laid out on the device mesh: ``P()`` replicated (a
    #: counter, an inner problem), ``P("data")`` sharded on its leading batch axis (hidden states).
    carry_spec: P = P()

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

    def loss(
        self, model: nnx.Module, batch: PyTree, key: jax.Array
    ) -> tuple[jax.Array, Mapping[str, jax.Array]]:
        """Scalar training loss and a dict of scalar metrics to log (traced under ``jit``).

        ``key``: this step's PRNG key, ``fold_in(train key, step)``, for dropout masks, crops or
        episodes drawn on device (a resumed run draws what an uninterrupted one would). Modules
        that keep their own ``nnx.Rngs`` (``nnx.Dropout(rate, rngs=...)``) also get fresh draws
        every step: the trainer carries every model variable, RNG counts included.

        Experiments that carry state implement :meth:`carried_loss` instead.
        """
        raise NotImplementedError(
            f"{type(self).__name__} implements neither `loss` nor `carried_loss`."
        )

    def init_carry(self) -> PyTree:
        """The carry before the first step (default: nothing, ``{}``); a pytree of arrays that
        the trainer keeps in its state, checkpoints and hands to :meth:`carried_loss`."""
        return {}

    def carried_loss(
        self, model: nnx.Module, batch: PyTree, key: jax.Array, carry: PyTree
    ) -> tuple[jax.Array, Mapping[str, jax.Array], PyTree]:
        """``(loss, metrics, new_carry)``: what the trainer differentiates. The default is
        :meth:`loss` with the carry passed through; experiments with a carry override this.
        The new carry is not differentiated through (truncated backpropagation)."""
        loss, metrics = self.loss(model, batch, key)
        return loss, metrics, carry

    def learning_rate_schedule(self) -> optax.Schedule:
        """The learning rate per step (logged); default: the config's (``lr_schedule``)."""
        return optim.learning_rate_schedule(self.config)

    def make_optimizer(self) -> optax.GradientTransformation:
        """The optimiser the trainer applies; default: the config's (``optimizer.name``) with
        :meth:`learning_rate_schedule`. Override to bring any ``optax.GradientTransformation``."""
        return optim.make_optimizer(self.config, self.learning_rate_schedule())

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
        """Per-batch sums of every evaluation metric plus ``"count"``.

        The trainer adds these over the evaluation set and divides each by the total count, so
        metrics come out as means per counted unit: per example when ``count`` is the number of
        examples in the batch, per episode when a batch holds episodes and ``count`` counts them
        (arrays, e.g. per prediction horizon, are fine). The model is in evaluation mode
        (``model.eval()``: dropout off, batch statistics frozen).
        """

    def summarize(self, metrics: dict) -> dict:
        """The evaluation's means (:meth:`eval_sums` divided by their counts) as logged and
        written to ``results.json``; override to derive statistics that are not means (e.g.
        confidence intervals from means of squares). Default: unchanged."""
        return metrics

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
