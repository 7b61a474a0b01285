"""The embedding-size sweep of the MNIST hypernetwork: test error against parameter count.

One ``hyper_mnist`` run per embedding size ``N_z`` (the hypernetwork's ``d = N_z``), plus the
conventional network as the reference point, all with the same schedule, one after another::

    python -m experiments.hypernet.nz_sweep --workdir=workdirs/nz_sweep \
        --mnist_dir=../shared/data/mnist --epochs=20 \
        --figure=docs/figures/hyper_mnist_nz_sweep.png \
        --summary=docs/results/hyper_mnist_nz_sweep.json

Each run lives in ``WORKDIR/nz_<N>`` (``WORKDIR/conventional``) and resumes from its checkpoints;
a run whose ``results.json`` exists is not run again, so a killed sweep continues where it
stopped. ``--figure_only`` redraws the figure and summary from finished runs. The summary holds,
per run, the parameter count, the test error at the best validation epoch, the final test error,
the epochs and the training wall time.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

from absl import app, flags

from dfn_jax import viz
from experiments.configs.hyper_mnist import STEPS_PER_EPOCH

CONFIG = "experiments/configs/hyper_mnist.py"


def sweep_runs(z_dims, conventional: bool) -> dict[str, list[str]]:
    """``{run name: extra command-line arguments}`` of the sweep's runs."""
    runs = {
        f"nz_{int(n)}": [f"--config={CONFIG}:paper", f"--config.model.z_dim={int(n)}"]
        for n in z_dims
    }
    if conventional:
        runs["conventional"] = [f"--config={CONFIG}:conventional"]
    return runs


def run_command(args: list[str], workdir: pathlib.Path, epochs: int, mnist_dir: str) -> list[str]:
    steps = epochs * STEPS_PER_EPOCH
    command = [
        sys.executable,
        "-m",
        "experiments.main",
        *args,
        f"--config.num_train_steps={steps}",
        f"--workdir={workdir}",
    ]
    if mnist_dir:
        command.append(f"--config.data.mnist_dir={mnist_dir}")
    return command


def summarise(workdir: pathlib.Path) -> dict:
    """One finished run's numbers from its ``results.json``."""
    results = json.loads((workdir / "results.json").read_text())
    return {
        "z_dim": results["model"]["z_dim"] if results["model"]["hypernetwork"] else None,
        "hypernetwork": results["model"]["hypernetwork"],
        "num_params": results["num_params"],
        "best_test_error": results["best"]["test_error"],
        "best_step": results["best"]["step"],
        "final_test_error": results["test"]["test_error"],
        "epochs": results["epochs"],
        "train_wall_time_s": results["train_wall_time_s"],
    }


def plot(summary: dict, path: pathlib.Path) -> pathlib.Path:
    hyper = sorted(
        (s for s in summary.values() if s["hypernetwork"]), key=lambda s: s["num_params"]
    )
    series = {
        "hypernetwork (N_z = " + ", ".join(str(s["z_dim"]) for s in hyper) + ")": [
            (s["num_params"], s["best_test_error"]) for s in hyper
        ]
    }
    for s in summary.values():
        if not s["hypernetwork"]:
            series["conventional"] = [(s["num_params"], s["best_test_error"])]
    labels = {(s["num_params"], s["best_test_error"]): f"N_z={s['z_dim']}" for s in hyper}
    epochs = {round(s["epochs"]) for s in summary.values()}
    return viz.plot_metric_curves(
        series,
        path,
        xlabel="parameters",
        ylabel="test error (%) at best validation epoch",
        title=f"MNIST: embedding size sweep ({'/'.join(map(str, sorted(epochs)))} epochs)",
        point_labels=labels,
    )


def define_flags() -> None:
    """The command line's flags, defined only when run (so that importing this module next to
    another command's defines nothing)."""
    flags.DEFINE_string("workdir", None, "Directory holding one run directory per point.")
    flags.DEFINE_string("mnist_dir", "", "MNIST IDX directory (data.mnist_dir).")
    flags.DEFINE_list("z_dims", ["1", "2", "4", "8", "16"], "Embedding sizes N_z.")
    flags.DEFINE_bool("conventional", True, "Also run the conventional network.")
    flags.DEFINE_integer("epochs", 20, "Training epochs of every run.")
    flags.DEFINE_string("figure", None, "PNG to write: test error against parameters.")
    flags.DEFINE_string("summary", None, "JSON file to write the per-run summary to.")
    flags.DEFINE_bool("figure_only", False, "Only summarise finished runs.")


def main(argv):
    del argv
    root = pathlib.Path(flags.FLAGS.workdir)
    runs = sweep_runs(flags.FLAGS.z_dims, flags.FLAGS.conventional)
    if not flags.FLAGS.figure_only:
        for name, args in runs.items():
            if (root / name / "results.json").exists():
                continue
            command = run_command(args, root / name, flags.FLAGS.epochs, flags.FLAGS.mnist_dir)
            print(" ".join(command), flush=True)
            subprocess.run(command, check=True)
    finished = {
        name: summarise(root / name) for name in runs if (root / name / "results.json").exists()
    }
    if not finished:
        raise app.UsageError(f"No finished runs under {root}.")
    if flags.FLAGS.figure:
        plot(finished, pathlib.Path(flags.FLAGS.figure))
    text = json.dumps(finished, indent=2)
    if flags.FLAGS.summary:
        pathlib.Path(flags.FLAGS.summary).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
