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

_MODEL = flags.DEFINE_string("model", "learnet_omniglot", "A model of dfn_jax.pretrained.")
_DIRECTORY = flags.DEFINE_string(
    "directory", "", "Where the model's .json/.msgpack are (default: the package's)."
)
_OMNIGLOT_DIR = flags.DEFINE_string(
    "omniglot_dir", "", "Folder with all_runs.zip (default: DFN_OMNIGLOT_DIR, then the cache)."
)
_DOWNLOAD = flags.DEFINE_bool("download", True, "Download all_runs.zip when it is not found.")
_FIGURE = flags.DEFINE_string("figure", "", "Also draw the error per run to this PNG.")


def main(argv):
    del argv
    directory = pathlib.Path(_DIRECTORY.value) if _DIRECTORY.value else pretrained.HERE
    model = pretrained.load(_MODEL.value, directory)
    image_size = pretrained.info(_MODEL.value, directory)["config"]["image_size"]
    runs = load_official_runs(
        omniglot_dir=_OMNIGLOT_DIR.value or None, image_size=image_size, download=_DOWNLOAD.value
    )
    errors = official_run_errors(model, runs)
    report = {
        "model": _MODEL.value,
        "num_params": count_params(model),
        "official_runs_error": float(errors.mean()),
        "per_run_error": errors.tolist(),
    }
    if _FIGURE.value:
        reference = {"Modified Hausdorff": MODIFIED_HAUSDORFF_ERROR}
        viz.plot_run_errors(errors, pathlib.Path(_FIGURE.value), reference=reference)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    app.run(main)
