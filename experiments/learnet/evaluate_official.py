"""Lake et al.'s 20 official one-shot runs for a shipped (or exported) learnet-family model, in
one line::

    python -m experiments.learnet.evaluate_official --model=learnet_omniglot \
        --omniglot_dir=../shared/data/omniglot

Prints JSON: the error over the 400 trials (percent), each run's error, and the model's
parameter count; ``--figure=F.png`` also draws the errors per run against Lake et al.'s Modified
Hausdorff Distance baseline (38.8%).
"""

from __future__ import annotations

import json
import pathlib

from absl import app, flags

from dfn_jax import pretrained, viz
from dfn_jax.data.omniglot import load_official_runs
from dfn_jax.models import count_params
from experiments.learnet.omniglot import MODIFIED_HAUSDORFF_ERROR, official_run_errors


def define_flags() -> None:
    """The command line's flags, defined only when run (so that importing this module next to
    another command's defines nothing)."""
    flags.DEFINE_string("model", "learnet_omniglot", "A model of dfn_jax.pretrained.")
    flags.DEFINE_string(
        "directory", "", "Where the model's .json/.msgpack are (default: the package's)."
    )
    flags.DEFINE_string(
        "omniglot_dir", "", "Folder with all_runs.zip (default: DFN_OMNIGLOT_DIR, then the cache)."
    )
    flags.DEFINE_bool("download", True, "Download all_runs.zip when it is not found.")
    flags.DEFINE_string("figure", "", "Also draw the error per run to this PNG.")


def main(argv):
    del argv
    directory = flags.FLAGS.directory  # "": the package's
    model = pretrained.load(flags.FLAGS.model, directory)
    image_size = pretrained.info(flags.FLAGS.model, directory)["config"]["image_size"]
    runs = load_official_runs(
        omniglot_dir=flags.FLAGS.omniglot_dir or None,
        image_size=image_size,
        download=flags.FLAGS.download,
    )
    errors = official_run_errors(model, runs)
    report = {
        "model": flags.FLAGS.model,
        "num_params": count_params(model),
        "official_runs_error": float(errors.mean()),
        "per_run_error": errors.tolist(),
    }
    if flags.FLAGS.figure:
        reference = {"Modified Hausdorff": MODIFIED_HAUSDORFF_ERROR}
        viz.plot_run_errors(errors, pathlib.Path(flags.FLAGS.figure), reference=reference)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
