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
one test setting; ``--config.evaluation.num_test_problems=500`` draws more test problems;
``--log10_grid=-2,-1.75,-1.5,-1.25,-1`` (instead of ``--tuned_from``) tunes the baseline here, on
the experiment's tuning problems, over a grid of your choice; ``--figure=F.png`` draws each
problem's final loss under both (one panel per setting).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
from absl import app, flags

from dfn_jax import viz
from dfn_jax.optim import load_learned_optimizer
from dfn_jax.training import meta
from experiments import main as experiments_main
from experiments.l2l.learned_optimizer import BASELINES, LearnedOptimizerExperiment
from experiments.paired_bootstrap import paired_bootstrap


def paired_relative_difference(learned, baseline, **kwargs) -> tuple[float, float, float]:
    """``mean(learned) / mean(baseline) - 1`` over problems (``[P]`` final losses each, problem
    ``i`` the same in both) and its paired 95% bootstrap interval."""
    return paired_bootstrap(learned, baseline, lambda x, y: x / y - 1.0, **kwargs)


def compare(
    config, learned: str, tuned_from: dict | None, baseline: str = "adam", settings=None, grid=None
) -> dict:
    """Per test setting of the experiment ``config`` (all, or those named in ``settings``): the
    learned optimizer ``learned`` and ``baseline`` on the test problems, each problem's final
    losses under ``final_losses``. The baseline runs at the rate ``tuned_from`` (a results.json)
    tuned, or, with ``grid`` (learning rates) instead, at the best of ``grid`` on the
    experiment's tuning problems (every rate's mean final loss under ``tuning_final_loss``)."""
    if (tuned_from is None) == (grid is None):
        raise ValueError("Give exactly one of `tuned_from` and `grid` (the baseline's rate).")
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
        task = experiment.make_task(**kwargs)
        data = experiment.task_data(task)
        tuning = {}
        if grid is None:
            entry = tuned_from["evaluation"].get(variant, {})
            rate = entry.get("baselines", {}).get(baseline, {}).get("learning_rate")
            if rate is None:
                raise ValueError(f"`tuned_from` has no tuned {baseline!r} rate for {variant!r}.")
            tuning["baseline_in_results"] = entry["final_loss"].get(baseline)
        else:
            rate, scores = meta.tune_learning_rate(
                BASELINES[baseline], grid, task, data, experiment.tune_keys, steps
            )
            tuning["tuning_final_loss"] = scores
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
            **tuning,
            "final_losses": {"learned": ours.tolist(), baseline: theirs.tolist()},
        }
    return report


def define_flags() -> None:
    """The command line's own flags, defined only when run (so that importing this module
    next to another command's, e.g. one with a ``--figure`` too, defines nothing); ``--config``
    (an l2l config file[:variant]) is experiments.main's."""
    flags.DEFINE_string("learned", None, "A shipped learned optimizer or a saved path.")
    flags.DEFINE_string(
        "tuned_from", None, "results.json of an l2l run that tuned the baseline (its rates)."
    )
    flags.DEFINE_list(
        "log10_grid", None, "Instead of --tuned_from: tune the baseline here over 10**these rates."
    )
    flags.DEFINE_enum("baseline", "adam", sorted(BASELINES), "The baseline.")
    flags.DEFINE_list(
        "settings", None, "Test settings to run (e.g. two_layers); all the experiment's if unset."
    )
    flags.DEFINE_string(
        "figure", "", "Also draw each problem's final loss, learned against baseline, to a PNG."
    )


def main(argv):
    del argv
    args = flags.FLAGS
    tuned_from = json.loads(pathlib.Path(args.tuned_from).read_text()) if args.tuned_from else None
    grid = [10.0 ** float(v) for v in args.log10_grid] if args.log10_grid else None
    report = compare(args.config, args.learned, tuned_from, args.baseline, args.settings, grid)
    if args.figure:
        pairs = {
            f"{name} ({entry['steps']} steps)": tuple(entry["final_losses"].values())
            for name, entry in report.items()
        }
        viz.plot_paired(pairs, pathlib.Path(args.figure), labels=("learned", args.baseline))
    print(json.dumps({"learned": args.learned, "baseline": args.baseline, **report}, indent=1))


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["config", "learned"])
    app.run(main)
