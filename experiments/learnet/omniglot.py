"""One-shot Omniglot with learnets (Bertinetto et al. 2016) on the shared trainer.

A training batch is ``batch_size`` one-shot episodes of ``num_ways`` classes drawn within one
background alphabet (:mod:`dfn_jax.data.episodes`; deterministic per step, so a resumed run sees
the same episodes), one exemplar and one query per class. The model scores every query against
every exemplar of its episode (``score_matrix``); the loss is the softmax cross-entropy of those
scores (``loss="episodic"``) or the logistic loss of every pair, positives and negatives
weighted equally (``"pairwise"``).

Evaluation sets (one query per class; one compilation of the evaluation step per way count):

* ``val``: random 20-way episodes within the held-out background alphabets (model selection);
* ``official_runs``: Lake et al.'s 20 runs (20-way within an evaluation alphabet, 20 trials
  each); ``per_run_error`` holds each run's error;
* ``within20``, ``across20``, ``within5``, ``across5``: random one-shot episodes from the
  evaluation alphabets, classes within one alphabet or across alphabets, each image by a drawer
  of its own;
* ``within20_by_drawer``: random 20-way episodes within an evaluation alphabet built as the
  official runs are: all exemplars by one drawer, all queries by another
  (:mod:`dfn_jax.data.episodes`, ``by_drawer``).

``config.data.by_drawer`` builds the training episodes that way too.

Errors are in percent; each random set also reports ``<set>_ci95``, the half-width of the 95%
confidence interval of its mean episode error (normal approximation).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from dfn_jax import viz
from dfn_jax.data.episodes import omniglot_episodes
from dfn_jax.data.omniglot import load_official_runs, load_omniglot, split_background_alphabets
from dfn_jax.models.learnet import LearnetConfig, learnet_model
from dfn_jax.training import Experiment

EVAL_WAYS = 20  # of the validation episodes and the official runs
RANDOM_SETS = {  # name: (ways, classes within one alphabet, one drawer per shot and per query)
    "within20": (20, True, False),
    "across20": (20, False, False),
    "within5": (5, True, False),
    "across5": (5, False, False),
    "within20_by_drawer": (20, True, True),
}
LOSSES = ("episodic", "pairwise")


MODIFIED_HAUSDORFF_ERROR = 38.8  # Lake et al. 2015's baseline on these runs, percent


def official_trial_errors(model, runs) -> np.ndarray:
    """Each trial's error ``[runs, trials]`` in percent (0 or 100): every query takes the
    exemplar with the highest score."""
    errors = []
    for queries, exemplars, answers in zip(runs.test, runs.training, runs.answers, strict=True):
        scores = model.score_matrix(jnp.asarray(queries), jnp.asarray(exemplars))
        errors.append(100.0 * (np.asarray(jnp.argmax(scores, -1)) != answers))
    return np.asarray(errors)


def official_run_errors(model, runs) -> np.ndarray:
    """Each run's error in percent."""
    return official_trial_errors(model, runs).mean(-1)


def episode_scores(model, query: jax.Array, support: jax.Array) -> jax.Array:
    """Scores ``[E, Q, N]`` of every query ``[E, Q, S, S]`` against every exemplar ``[E, N, S,
    S]`` of its episode."""
    return nnx.vmap(lambda m, q, s: m.score_matrix(q, s), in_axes=(None, 0, 0))(
        model, query, support
    )


def episode_errors(model, query: jax.Array, support: jax.Array, labels: jax.Array) -> jax.Array:
    """Each episode's error ``[E]`` in percent: every query takes the exemplar with the highest
    score; ``labels [E, Q]`` are the right exemplars."""
    scores = episode_scores(model, query, support)  # [E, Q, N]
    return 100.0 * jnp.mean((jnp.argmax(scores, -1) != labels).astype(jnp.float32), -1)


class LearnetOmniglot(Experiment):
    config_keys = frozenset(
        {
            "loss",
            "num_ways",
            "num_train_queries",
            "num_official_runs",
            "num_val_episodes",
            "num_test_episodes",
            "num_figure_runs",
        }
    )
    data_keys = frozenset(
        {"omniglot_dir", "download", "image_size", "num_val_alphabets", "rotations",
         "within_alphabet", "by_drawer"}
    )  # fmt: skip

    # -- data --------------------------------------------------------------------------------
    def _load(self, split: str):
        data = self.config.data
        return load_omniglot(
            split,
            omniglot_dir=data.omniglot_dir or None,
            image_size=data.image_size,
            download=data.download,
        )

    @functools.cached_property
    def background(self):
        """``(train, val)``: the background alphabets, ``num_val_alphabets`` held out."""
        data = self._load("background")
        return split_background_alphabets(
            data, num_val_alphabets=self.config.data.num_val_alphabets, seed=self.config.seed
        )

    @functools.cached_property
    def evaluation(self):
        return self._load("evaluation")

    @functools.cached_property
    def official_runs(self):
        data = self.config.data
        return load_official_runs(
            omniglot_dir=data.omniglot_dir or None,
            image_size=data.image_size,
            download=data.download,
        )

    @functools.cached_property
    def train_episodes(self):
        data = self.config.data
        return omniglot_episodes(
            self.background[0],
            num_ways=self.config.num_ways,
            num_shots=1,
            num_queries=1,
            within_alphabet=data.within_alphabet,
            rotations=data.rotations,
            seed=self.config.seed,
            by_drawer=data.by_drawer,
        )

    def train_batch(self, step: int, rows=None) -> dict:
        """``batch_size`` episodes: ``num_ways`` exemplars and the queries of the first
        ``num_train_queries`` of their (randomly ordered) classes."""
        batch = self.train_episodes.sample(step, self.config.batch_size)
        rows = slice(None) if rows is None else rows
        queries = slice(0, self.config.num_train_queries)
        return {
            "support": batch.support[rows],
            "query": batch.query[rows, queries],
            "labels": batch.query_labels[rows, queries],
        }

    # -- model and loss ----------------------------------------------------------------------
    @functools.cached_property
    def model_config(self) -> LearnetConfig:
        fields = {k: v for k, v in self.config.model.items() if k != "variant"}
        return LearnetConfig(**fields)

    def build_model(self, rngs: nnx.Rngs):
        return learnet_model(self.config.model.variant, self.model_config, rngs=rngs)

    def loss(self, model, batch, key):
        del key
        scores = episode_scores(model, batch["query"], batch["support"])  # [E, Q, N]
        labels = batch["labels"]
        errors = 100.0 * jnp.mean(jnp.argmax(scores, -1) != labels)
        if self.config.loss == "episodic":
            loss = optax.softmax_cross_entropy_with_integer_labels(scores, labels).mean()
        else:
            same = jax.nn.one_hot(labels, scores.shape[-1])
            pair = optax.sigmoid_binary_cross_entropy(scores, same)
            positives = jnp.sum(pair * same) / jnp.sum(same)
            negatives = jnp.sum(pair * (1.0 - same)) / jnp.sum(1.0 - same)
            loss = 0.5 * (positives + negatives)
        return loss, {"train_error": errors}

    # -- evaluation --------------------------------------------------------------------------
    @functools.cached_property
    def random_sets(self) -> dict:
        """Per random set: ``(images, support_indices [E, n], query_indices [E, n])``, drawn once
        (step 0 of the set's own seed)."""
        config = self.config
        val = (self.background[1], EVAL_WAYS, True, False, config.num_val_episodes, 10_000)
        specs = {"val": val}
        for offset, (name, (ways, within, by_drawer)) in enumerate(RANDOM_SETS.items()):
            count = config.num_test_episodes
            specs[name] = (self.evaluation, ways, within, by_drawer, count, 20_000 + 100 * offset)
        sets = {}
        for name, (data, ways, within, by_drawer, count, seed) in specs.items():
            sampler = omniglot_episodes(
                data, num_ways=ways, num_shots=1, num_queries=1, within_alphabet=within,
                seed=seed + config.seed, by_drawer=by_drawer,
            )  # fmt: skip
            batch = sampler.sample(0, count)
            sets[name] = (data.images, batch.support_indices, batch.query_indices)
        return sets

    @property
    def set_names(self) -> tuple[str, ...]:
        return ("val", "official_runs", *RANDOM_SETS)

    def eval_batches(self, rows=None):
        """Each set in turn, in batches of ``eval_batch_size`` episodes of that set's way count
        (one compilation per way count); the last batch of a set is padded with episodes of
        weight 0. Images are gathered per batch."""
        size = self.eval_batch_size
        names = self.set_names
        runs, num_runs = self.official_runs, self.config.num_official_runs
        # Per set: its number of episodes and ``episode indices -> (support, query, labels)``.
        blocks = [
            ("official_runs", num_runs, lambda i: (runs.training[i], runs.test[i], runs.answers[i]))
        ]
        for name, (images, support, query) in self.random_sets.items():
            labels = np.broadcast_to(np.arange(support.shape[1], dtype=np.int32), query.shape)
            fetch = lambda i, im=images, s=support, q=query, y=labels: (im[s[i]], im[q[i]], y[i])  # noqa: E731
            blocks.append((name, len(support), fetch))
        for name, count, fetch in blocks:
            for start in range(0, count, size):
                index = np.arange(start, start + size)
                weight = (index < count).astype(np.float32)
                index = np.where(weight > 0, index, 0)
                set_weight = np.zeros((size, len(names)), np.float32)
                set_weight[:, names.index(name)] = weight
                run_weight = np.zeros((size, num_runs), np.float32)
                if name == "official_runs":
                    run_weight[np.arange(size), index] = weight
                support, query, labels = fetch(index)
                batch = {
                    "support": support,
                    "query": query,
                    "labels": np.asarray(labels, np.int32),
                    "set_weight": set_weight,
                    "run_weight": run_weight,
                }
                if rows is not None:
                    batch = {key: value[rows] for key, value in batch.items()}
                yield batch

    def eval_sums(self, model, batch):
        error = episode_errors(model, batch["query"], batch["support"], batch["labels"])
        sums = {}
        for index, name in enumerate(self.set_names):
            weight = batch["set_weight"][:, index]
            sums[f"{name}_error"] = jnp.sum(weight * error)
            sums[f"{name}_error_sq"] = jnp.sum(weight * error**2)
            sums[f"{name}_count"] = jnp.sum(weight)
        run_weight = batch["run_weight"]
        sums["per_run_error"] = jnp.sum(run_weight * error[:, None], 0)
        # Each run is one episode: dividing by the number of runs seen, over their number,
        # leaves each run's own error.
        sums["per_run_count"] = jnp.sum(run_weight) / run_weight.shape[1]
        return sums

    def summarize(self, metrics: dict) -> dict:
        counts = {"val": self.config.num_val_episodes}
        counts |= dict.fromkeys(RANDOM_SETS, self.config.num_test_episodes)
        out = dict(metrics)
        for name, n in counts.items():
            variance = max(
                float(metrics[f"{name}_error_sq"]) - float(metrics[f"{name}_error"]) ** 2, 0.0
            )
            out[f"{name}_ci95"] = 1.96 * np.sqrt(variance / n)
        for name in self.set_names:
            out.pop(f"{name}_error_sq", None)
        return out

    # -- figures ---------------------------------------------------------------------------------
    def write_figures(self, model, figures_dir):
        """The first ``num_figure_runs`` official runs with the model's choices."""
        runs, paths = self.official_runs, []
        for index in range(min(self.config.num_figure_runs, len(runs.runs))):
            queries, exemplars = runs.test[index], runs.training[index]
            scores = model.score_matrix(jnp.asarray(queries), jnp.asarray(exemplars))
            choices = np.asarray(jnp.argmax(scores, -1))
            paths.append(
                viz.plot_one_shot_run(
                    runs.training[index],
                    runs.test[index],
                    choices,
                    runs.answers[index],
                    figures_dir / f"official_{runs.runs[index]}.png",
                    title=f"{self.config.model.variant}, official {runs.runs[index]}",
                )  # fmt: skip
            )
        return paths

    # -- checks and description ----------------------------------------------------------------
    def config_problems(self) -> list[str]:
        config, problems = self.config, []
        if config.loss not in LOSSES:
            problems.append(f"`loss` must be one of {LOSSES}, got {config.loss!r}.")
        for key in ("eval_batch_size", "num_val_episodes", "num_test_episodes"):
            if not isinstance(config[key], int) or config[key] <= 0:
                problems.append(f"`{key}` must be a positive integer, got {config[key]!r}.")
        runs = config.num_official_runs
        if not isinstance(runs, int) or not 1 <= runs <= 20:
            problems.append(f"`num_official_runs` must be an integer in 1..20, got {runs!r}.")
        if not isinstance(config.num_ways, int) or not 2 <= config.num_ways <= 20:
            problems.append(f"`num_ways` must be an integer in 2..20, got {config.num_ways!r}.")
        elif not isinstance(config.num_train_queries, int) or not (
            1 <= config.num_train_queries <= config.num_ways
        ):
            problems.append(
                f"`num_train_queries` must be an integer in 1..num_ways ({config.num_ways}), got "
                f"{config.num_train_queries!r}."
            )
        return problems + self.model_problems()

    def describe(self) -> dict:
        train, val = self.background
        return {
            "variant": self.config.model.variant,
            "train_alphabets": list(train.alphabets),
            "val_alphabets": list(val.alphabets),
            "protocol": "one-shot, 20-way within an alphabet (Lake et al. 2015)",
        }


EXPERIMENT = LearnetOmniglot
