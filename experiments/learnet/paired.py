"""Two learnet-family models on the same one-shot tests, trial by trial and episode by episode::

    python -m experiments.learnet.paired --models=learnet_omniglot,learnet_omniglot_siamese \
        --config=experiments/configs/learnet_omniglot.py \
        --config.data.omniglot_dir=../shared/data/omniglot

Both models answer the same trials: Lake et al.'s 20 official runs (400 trials) and the
experiment's random test episodes (``--config``'s seed and ``num_test_episodes``; the sets of
its evaluation). Prints JSON per set: each model's error in percent, the difference (first minus
second, in points) with a 95% bootstrap interval that resamples trials (official runs) or
episodes (random sets) in pairs, and how many of them each model alone got wrong or did worse
on. The official runs also get ``ci95_runs``, an interval that resamples whole runs: a run's 20
trials share their exemplars and their two drawers, so they are not independent draws, and this
is the interval to quote. ``per_run_error``: each model's error per official run
(``--figure=F.png`` draws them side by side). ``--directories`` points at exported models
(``experiments.export_pretrained``), one folder per model, empty for the package's.

A side may be several training runs of one model, joined by ``+``
(``--models=learnet_s0+learnet_s1,siamese_s0+siamese_s1``, all from that side's folder): each
trial's (episode's) error is then the mean over the side's runs, and the interval still
resamples trials, so it covers the draw of test items around the runs' average, not the draw of
training seeds; ``error_per_run`` gives each run's own error.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from absl import app, flags
from flax import nnx

from dfn_jax import pretrained, viz
from dfn_jax.models import count_params
from experiments import main as experiments_main
from experiments.learnet.omniglot import (
    MODIFIED_HAUSDORFF_ERROR,
    LearnetOmniglot,
    episode_errors,
    official_trial_errors,
)
from experiments.paired_bootstrap import paired_bootstrap

BATCH_EPISODES = 50


_episode_errors = nnx.jit(episode_errors)


def set_errors(model, images, support, query) -> np.ndarray:
    """Each episode's error ``[E]`` in percent: ``support`` and ``query`` are ``[E, N]`` rows of
    ``images``, query ``i`` showing the character of exemplar ``i``; in batches of
    ``BATCH_EPISODES``."""
    parts = []
    for start in range(0, len(support), BATCH_EPISODES):
        rows = slice(start, start + BATCH_EPISODES)
        labels = np.broadcast_to(np.arange(support.shape[1]), query[rows].shape)
        errors = _episode_errors(model, images[query[rows]], images[support[rows]], labels)
        parts.append(np.asarray(errors))
    return np.concatenate(parts)


def difference(first: np.ndarray, second: np.ndarray) -> dict:
    """Two models' mean errors on the same items, the first's minus the second's and its 95%
    paired bootstrap interval."""
    diff, low, high = paired_bootstrap(first, second, lambda x, y: x - y)
    return {
        "error": [float(first.mean()), float(second.mean())],
        "difference": diff,
        "ci95": [low, high],
    }


def runs_interval(first: np.ndarray, second: np.ndarray) -> list[float]:
    """The 95% interval of the difference of two models' official-runs errors (``[runs,
    trials]`` each) that resamples whole runs: a run's trials share their exemplars and
    drawers, so they are not independent draws."""
    return list(paired_bootstrap(first.mean(-1), second.mean(-1), lambda x, y: x - y)[1:])


def test_errors(experiment: LearnetOmniglot, model) -> dict[str, np.ndarray]:
    """Per test set: ``official_runs`` each trial's error ``[runs, trials]`` (0 or 100, the
    config's ``num_official_runs``), and each random set's episode errors, in the order the
    experiment draws them."""
    trials = official_trial_errors(model, experiment.official_runs)
    errors = {"official_runs": trials[: experiment.config.num_official_runs]}
    for name, episodes in experiment.random_sets.items():
        if name != "val":
            errors[name] = set_errors(model, *episodes)
    return errors


def compare(config, names, directories=None) -> dict:
    """Two pretrained models ``names`` (from ``directories``, default the package's) on the
    test sets of the learnet experiment ``config``; a name may join several runs of one model
    with ``+`` (module docstring)."""
    if len(names) != 2:
        raise ValueError(f"`models` must name two models, got {list(names)}.")
    directories = directories or ["", ""]  # "": the package's
    if len(directories) != 2:
        raise ValueError(f"`directories` must give one folder per model, got {directories}.")
    experiment = experiments_main.make_experiment(config)
    if not isinstance(experiment, LearnetOmniglot):
        raise ValueError(f"`config` must be a learnet experiment's, got {config.experiment!r}.")
    sides, sizes, own = [], [], []
    for side, directory in zip(names, directories, strict=True):
        runs = [_load(name, directory, config) for name in side.split("+")]
        counts = {count_params(model) for model in runs}
        if len(counts) != 1:
            raise ValueError(f"The runs joined in {side!r} must be one model's (equal sizes).")
        sizes.append(counts.pop())
        errors = [test_errors(experiment, model) for model in runs]
        own.append(errors)
        sides.append({test: np.mean([e[test] for e in errors], 0) for test in errors[0]})
    report = {"models": list(names), "num_params": sizes}
    report["per_run_error"] = [e["official_runs"].mean(-1).tolist() for e in sides]
    for test, first in sides[0].items():
        first, second = first.reshape(-1), sides[1][test].reshape(-1)
        report[test] = {
            "count": int(first.size),
            **difference(first, second),
            # Trials (or episodes) on which only the first / only the second did worse.
            "worse_only": [int(np.sum(first > second)), int(np.sum(second > first))],
        }
        if test == "official_runs" and sides[0][test].shape[0] > 1:
            report[test]["ci95_runs"] = runs_interval(sides[0][test], sides[1][test])
        if any(len(errors) > 1 for errors in own):
            report[test]["error_per_run"] = [
                [float(e[test].mean()) for e in errors] for errors in own
            ]
    return report


def _load(name: str, directory, config):
    size = pretrained.info(name, directory)["config"]["image_size"]
    if size != config.data.image_size:
        raise ValueError(
            f"Model {name!r} reads {size}x{size} images; `config.data.image_size` is "
            f"{config.data.image_size}."
        )
    return pretrained.load(name, directory)


def define_flags() -> None:
    """The command line's own flags, defined only when run (``--figure`` is also
    evaluate_official's); ``--config`` (learnet_omniglot.py[:variant]: the data and the test
    sets) is experiments.main's."""
    flags.DEFINE_list(
        "models", None, "Two models of dfn_jax.pretrained (or exported); a+b joins runs of one."
    )
    flags.DEFINE_list(
        "directories", None, "Per model, the folder of its .json/.msgpack (empty: the package's)."
    )
    flags.DEFINE_string("figure", "", "Also draw both models' errors per official run to a PNG.")


def main(argv):
    del argv
    args = flags.FLAGS
    report = compare(args.config, args.models, args.directories)
    if args.figure:
        errors = dict(zip(report["models"], report["per_run_error"], strict=True))
        reference = {"Modified Hausdorff": MODIFIED_HAUSDORFF_ERROR}
        viz.plot_run_errors(errors, pathlib.Path(args.figure), reference=reference)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["config", "models"])
    app.run(main)
