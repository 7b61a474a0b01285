"""Are Lake et al.'s 20 official runs like random episodes built the same way? Two models on
random 20-way one-shot episodes built as the runs are, narrowed step by step to the runs' own
alphabets and drawers::

    python -m experiments.learnet.runs_like --models=learnet_omniglot,learnet_omniglot_siamese \
        --omniglot_dir=../shared/data/omniglot

Every episode is built as an official run is (:func:`dfn_jax.data.omniglot.official_run_indices`
finds each run's images in the evaluation split): 20 characters of one evaluation alphabet, all
exemplars by one drawer and all queries by another (``by_drawer`` episodes,
:mod:`dfn_jax.data.episodes`), one query per character. The sets narrow down:

* ``all_alphabets``: the 20 evaluation alphabets;
* ``run_alphabets``: the 10 alphabets the runs use (two runs each);
* ``run_alphabets_and_drawers``: those alphabets and only the drawers the runs use;
* ``other_alphabets``: the 10 evaluation alphabets no run uses;
* ``run_characters``: each run's own 20 characters, drawn by two random drawers;
* ``run_drawers``: 20 random characters of each run's alphabet, drawn by the run's own two
  drawers (exemplars by the one of its training images).

The last two keep one of the runs' two choices (their characters, their drawers) and redraw the
other; their episodes go round the runs (50 per run of 1,000).

Prints JSON: per set, each model's error in percent and the difference (first minus second, in
points) with a 95% bootstrap interval that resamples episodes in pairs, and ``range_of_20``, per
model the middle 95% of the mean error over 20 of the set's episodes (as many as there are
runs: where the official runs would fall if they were such episodes); ``official_runs``: both
models on the runs themselves (``ci95_runs`` resamples whole runs). ``--directories`` as in
:mod:`experiments.learnet.paired`; ``--figure=F.png`` draws the errors per set, each random
set's ``range_of_20`` as a whisker.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
from absl import app, flags

from dfn_jax import pretrained, viz
from dfn_jax.data.episodes import images_by_drawer, omniglot_episodes
from dfn_jax.data.omniglot import (
    OmniglotSplit,
    load_official_runs,
    load_omniglot,
    official_run_indices,
    select_alphabets,
)
from experiments.learnet.omniglot import official_trial_errors
from experiments.learnet.paired import difference, runs_interval, set_errors

WAYS = 20
SETS = (
    "all_alphabets",
    "run_alphabets",
    "run_alphabets_and_drawers",
    "other_alphabets",
    "run_characters",
    "run_drawers",
)


def _keep(data: OmniglotSplit, rows: np.ndarray) -> OmniglotSplit:
    """``data`` with only the drawings ``rows`` (characters and alphabets unchanged)."""
    return dataclasses.replace(
        data, images=data.images[rows], labels=data.labels[rows], drawers=data.drawers[rows]
    )


def runs_like_episodes(
    data: OmniglotSplit, runs, *, num_episodes: int = 1000, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per set (module docstring): ``(images, support [E, 20], query [E, 20])``, rows of
    ``images`` with query ``i`` of an episode showing the character of its exemplar ``i``;
    ``data`` is the evaluation split read at the runs' image size."""
    training, test = official_run_indices(runs, data)
    alphabets = [
        data.alphabets[a] for a in np.unique(data.character_alphabet[data.labels[training]])
    ]
    ours = select_alphabets(data, alphabets)
    drawers = np.unique(data.drawers[np.concatenate([training, test])])
    others = [name for name in data.alphabets if name not in alphabets]
    drawings = (data, ours, _keep(ours, np.isin(ours.drawers, drawers)))
    drawings += (select_alphabets(data, others),)
    sets = {}
    for name, subset in zip(SETS[:4], drawings, strict=True):
        sampler = omniglot_episodes(
            subset, num_ways=WAYS, num_shots=1, num_queries=1, within_alphabet=True, seed=seed,
            by_drawer=True,
        )  # fmt: skip
        batch = sampler.sample(0, num_episodes)
        sets[name] = (subset.images, batch.support_indices, batch.query_indices)
    sets.update(_one_choice_of_the_runs(data, training, test, num_episodes, seed))
    return sets


def _one_choice_of_the_runs(data, training, test, num_episodes: int, seed: int) -> dict:
    """``run_characters``: each run's 20 characters drawn by two random drawers;
    ``run_drawers``: 20 random characters of each run's alphabet drawn by the run's two
    drawers (exemplars by its training drawer). Episodes go round the runs."""
    table = images_by_drawer(data.labels, data.drawers, num_classes=len(data.characters))
    rng = np.random.default_rng([seed, 1])
    sets = {name: np.zeros((2, num_episodes, WAYS), np.int64) for name in SETS[4:]}
    for e in range(num_episodes):
        r = e % len(training)
        characters = data.labels[training[r]]
        common = np.flatnonzero(np.all(table[characters] >= 0, axis=0))
        hands = rng.choice(common, 2, replace=False)
        sets["run_characters"][:, e] = table[characters][:, hands].T
        hands = data.drawers[[training[r, 0], test[r, 0]]]  # the run's own: exemplars, queries
        alphabet = np.flatnonzero(data.character_alphabet == data.character_alphabet[characters[0]])
        pool = alphabet[np.all(table[alphabet][:, hands] >= 0, axis=1)]
        sets["run_drawers"][:, e] = table[rng.choice(pool, WAYS, replace=False)][:, hands].T
    return {name: (data.images, *both) for name, both in sets.items()}


def _range_of(errors: np.ndarray, size: int, num_resamples: int = 10_000) -> list[float]:
    """The middle 95% of the mean error over ``size`` episodes drawn from ``errors`` (with
    replacement): where a set as large as the official runs would fall."""
    rng = np.random.default_rng(0)
    means = errors[rng.integers(0, len(errors), (num_resamples, size))].mean(1)
    return [float(x) for x in np.percentile(means, [2.5, 97.5])]


def compare(models, data: OmniglotSplit, runs, *, num_episodes: int = 1000, seed: int = 0) -> dict:
    """Two models (``score_matrix`` learnet-family models) on every set and on the runs."""
    if len(models) != 2:
        raise ValueError(f"`models` must be two models, got {len(models)}.")
    report = {}
    sets = runs_like_episodes(data, runs, num_episodes=num_episodes, seed=seed)
    for name, episodes in sets.items():
        first, second = (set_errors(model, *episodes) for model in models)
        report[name] = {"num_episodes": num_episodes, **difference(first, second)}
        report[name]["range_of_20"] = [
            _range_of(errors, len(runs.runs)) for errors in (first, second)
        ]
    trials = [official_trial_errors(model, runs) for model in models]  # [runs, trials] each
    report["official_runs"] = difference(trials[0].reshape(-1), trials[1].reshape(-1))
    report["official_runs"]["ci95_runs"] = runs_interval(*trials)
    return report


def draw(report: dict, names, path: pathlib.Path) -> pathlib.Path:
    """Both models' errors per set (the official runs first), each random set's bar with its
    ``range_of_20`` as a whisker."""
    order = ["official_runs", *SETS]
    errors = {name: report[name]["error"] for name in order}
    spans = {name: report[name]["range_of_20"] for name in SETS}
    return viz.plot_set_errors(errors, path, labels=names, spans=spans)


def define_flags() -> None:
    """The command line's flags, defined only when run."""
    flags.DEFINE_list("models", None, "Two models of dfn_jax.pretrained (or exported).")
    flags.DEFINE_list(
        "directories", None, "Per model, the folder of its .json/.msgpack (empty: the package's)."
    )
    flags.DEFINE_string(
        "omniglot_dir", "", "Folder with the Omniglot zips (default: DFN_OMNIGLOT_DIR, the cache)."
    )
    flags.DEFINE_bool("download", True, "Download the zips when they are not found.")
    flags.DEFINE_integer("num_episodes", 1000, "Random episodes per set.")
    flags.DEFINE_integer("seed", 0, "Seed of the episodes.")
    flags.DEFINE_string("figure", "", "Also draw both models' errors per set to this PNG.")


def main(argv):
    del argv
    args = flags.FLAGS
    names = args.models
    directories = args.directories or ["", ""]
    if len(names) != 2 or len(directories) != 2:
        raise app.UsageError("--models needs two models and --directories one folder per model.")
    sizes = {
        pretrained.info(n, d)["config"]["image_size"]
        for n, d in zip(names, directories, strict=True)
    }
    if len(sizes) != 1:
        raise app.UsageError(f"The two models read different image sizes: {sorted(sizes)}.")
    image_size = sizes.pop()
    source = dict(omniglot_dir=args.omniglot_dir or None, image_size=image_size,
                  download=args.download)  # fmt: skip
    data = load_omniglot("evaluation", **source)
    runs = load_official_runs(**source)
    models = [pretrained.load(n, d) for n, d in zip(names, directories, strict=True)]
    report = compare(models, data, runs, num_episodes=args.num_episodes, seed=args.seed)
    if args.figure:
        draw(report, names, pathlib.Path(args.figure))
    print(json.dumps({"models": names, **report}, indent=1))


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["models"])
    app.run(main)
