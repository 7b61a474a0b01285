"""A saved learned optimizer against one tuned baseline, problem by problem, on an l2l
experiment's test problems (the same problems the experiment's evaluation uses: same seed and
count), with the baseline at the learning rate an earlier run tuned::

    python -m experiments.l2l.paired --config=experiments/configs/l2l_mnist.py:mixed \
        --learned=mnist_mixed --tuned_from=docs/results/l2l_mnist_cosine_linear.json \
        --config.data.mnist_dir=../shared/data/mnist

Prints JSON per test setting: both mean final losses, the relative difference ``mean(learned) /
mean(baseline) - 1`` and its 95% bootstrap interval over the test problems. Both optimizers run
on the same problems (the same initial weights and minibatches), so the resampling is paired:
the interval says how much of the difference the draw of test problems could explain.
``baseline_in_results`` repeats the baseline's mean from ``--tuned_from``: equal to
``baseline`` when the problems are the same; ``final_losses`` holds each problem's final loss
under both, so reports over disjoint problem sets can be pooled. ``--settings=two_layers`` runs
one test setting; ``--config.evaluation.num_test_problems=500`` draws more test problems.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from absl import app, flags

from dfn_jax.optim import load_learned_optimizer
from dfn_jax.training import meta
from experiments import main as experiments_main
from experiments.l2l.learned_optimizer import BASELINES, LearnedOptimizerExperiment

# ``--config`` (an l2l config file[:variant]) is the flag experiments.main defines.
_LEARNED = flags.DEFINE_string("learned", None, "A shipped learned optimizer or a saved path.")
_TUNED_FROM = flags.DEFINE_string(
    "tuned_from", None, "results.json of an l2l run that tuned the baseline (its rates)."
)
_BASELINE = flags.DEFINE_enum("baseline", "adam", sorted(BASELINES), "The baseline.")
_SETTINGS = flags.DEFINE_list(
    "settings", None, "Test settings to run (e.g. two_layers); all the experiment's if unset."
)


def paired_relative_difference(
    learned, baseline, *, num_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float, float]:
    """``mean(learned) / mean(baseline) - 1`` over problems (``[P]`` final losses each, problem
    ``i`` the same in both) and its 95% percentile bootstrap interval, the problems resampled
    with replacement together."""
    learned, baseline = np.asarray(learned, np.float64), np.asarray(baseline, np.float64)
    if learned.ndim != 1 or learned.shape != baseline.shape or learned.size < 2:
        raise ValueError(
            "`learned` and `baseline` must be final losses [P] of the same P >= 2 problems, got "
            f"shapes {learned.shape} and {baseline.shape}."
        )
    rng = np.random.default_rng(seed)
    index = rng.integers(0, learned.size, size=(num_resamples, learned.size))
    resampled = learned[index].mean(1) / baseline[index].mean(1) - 1.0
    low, high = np.percentile(resampled, [2.5, 97.5])
    return float(learned.mean() / baseline.mean() - 1.0), float(low), float(high)


def compare(config, learned: str, tuned_from: dict, baseline: str = "adam", settings=None) -> dict:
    """Per test setting of the experiment ``config`` (all, or those named in ``settings``): the
    learned optimizer ``learned`` and ``baseline`` at the rate ``tuned_from`` (a results.json)
    tuned, on the test problems; each problem's final losses under ``final_losses``."""
    experiment = experiments_main.make_experiment(config)
    if not isinstance(experiment, LearnedOptimizerExperiment):
        raise ValueError(f"`config` must be an l2l experiment's, got {config.experiment!r}.")
    variants = experiment.test_variants()
    unknown = sorted(set(settings or ()) - set(variants))
    if unknown:
        raise ValueError(f"`settings` must be among {sorted(variants)}, got unknown {unknown}.")
    keys = experiment.test_keys
    optimizer = load_learned_optimizer(learned)
    report = {}
    for variant, (kwargs, steps) in variants.items():
        if settings and variant not in settings:
            continue
        entry = tuned_from["evaluation"].get(variant, {})
        rate = entry.get("baselines", {}).get(baseline, {}).get("learning_rate")
        if rate is None:
            raise ValueError(f"`tuned_from` has no tuned {baseline!r} rate for {variant!r}.")
        task = experiment.make_task(**kwargs)
        data = experiment.task_data(task)
        ours = np.asarray(meta.optimize(optimizer, task, data, keys, steps))[:, -1]
        theirs = meta.optimize_at(BASELINES[baseline], rate, task, data, keys, steps)
        theirs = np.asarray(theirs)[:, -1]
        relative, low, high = paired_relative_difference(ours, theirs)
        report[variant] = {
            "steps": steps,
            "learned": float(ours.mean()),
            baseline: float(theirs.mean()),
            "learning_rate": rate,
            "relative_difference": relative,
            "ci95": [low, high],
            "baseline_in_results": entry["final_loss"].get(baseline),
            "final_losses": {"learned": ours.tolist(), baseline: theirs.tolist()},
        }
    return report


def main(argv):
    del argv
    tuned_from = json.loads(pathlib.Path(_TUNED_FROM.value).read_text())
    report = compare(
        flags.FLAGS.config, _LEARNED.value, tuned_from, _BASELINE.value, _SETTINGS.value
    )
    print(json.dumps({"learned": _LEARNED.value, "baseline": _BASELINE.value, **report}, indent=1))


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "learned", "tuned_from"])
    app.run(main)
