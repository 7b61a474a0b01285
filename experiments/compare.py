"""Compares runs: one evaluation metric of several work directories in one figure and a table.

    python -m experiments.compare --workdirs=DIR_A,DIR_B --labels=HyperLSTM,LSTM \
        --metric=val_bpc --x=train_time_s --out=docs/figures/compare.png

``--x`` is ``step`` or any logged ``eval/`` metric (``train_time_s``: training wall time, the
periodic evaluations left out). Prints JSON: per run the last and the best value of the metric.
"""

from __future__ import annotations

import json
import pathlib

from absl import app, flags

from dfn_jax import viz
from dfn_jax.training import read_metrics


def define_flags() -> None:
    """The command line's flags, defined only when run (importing this module defines none)."""
    flags.DEFINE_list("workdirs", None, "Work directories of the runs to compare.")
    flags.DEFINE_list("labels", None, "A label per run (default: the directory names).")
    flags.DEFINE_string("metric", "val_bpc", "The eval/ metric to compare.")
    flags.DEFINE_string("x", "step", "x axis: step or an eval/ metric such as train_time_s.")
    flags.DEFINE_string("out", None, "PNG to write.")
    flags.mark_flags_as_required(["workdirs"])


def eval_curve(workdir: str | pathlib.Path, metric: str, x: str = "step") -> list[tuple]:
    """``[(x, metric), ...]`` of a run's periodic evaluations (``eval/`` records)."""
    points = []
    for record in read_metrics(workdir):
        value = record.get(f"eval/{metric}")
        where = record.get("step") if x == "step" else record.get(f"eval/{x}")
        if isinstance(value, (int, float)) and isinstance(where, (int, float)):
            points.append((where, value))
    return points


def main(argv):
    del argv
    f = flags.FLAGS
    workdirs, metric, x = f.workdirs, f.metric, f.x
    labels = f.labels or [pathlib.Path(w).name for w in workdirs]
    if len(labels) != len(workdirs):
        raise app.UsageError("--labels needs one label per --workdirs entry.")
    runs = zip(labels, workdirs, strict=True)
    curves = {label: eval_curve(w, metric, x) for label, w in runs}
    empty = [label for label, points in curves.items() if not points]
    if empty:
        raise app.UsageError(f"No eval/{metric} records with {x} in: {empty}.")
    summary = {
        label: {"last": points[-1][1], "best": min(p[1] for p in points), "points": len(points)}
        for label, points in curves.items()
    }
    if f.out:
        xlabel = "training wall time (s)" if x == "train_time_s" else x
        viz.plot_metric_curves(curves, pathlib.Path(f.out), xlabel=xlabel, ylabel=metric)
        summary["figure"] = f.out
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
