"""Exports a trained run's model as package data (``dfn_jax/pretrained/<name>.*``).

    python -m experiments.export_pretrained --run=DIR --name=hyper_mnist --command="..."

Reads the run's ``config.json`` and ``results.json`` and its latest checkpoint, and writes the
model's variables (msgpack) with its config, the command and the test metrics (JSON).
``--directory=D`` writes them into ``D`` instead of the package (a scratch export, loaded with
``pretrained.load(name, directory=D)``).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import ml_collections
from absl import app, flags

from dfn_jax import pretrained
from dfn_jax.training import Checkpointer, Trainer
from experiments.main import make_experiment

BUILDER_OF = {
    "dfn.moving_mnist": "dfn.VideoDFN",
    "hypernet.mnist": "hypernet.mnist_net",
    "hypernet.ptb": "hypernet.CharLM",
    "learnet.omniglot": "learnet.model",
}


def export(
    workdir: str | pathlib.Path,
    name: str,
    command: str = "",
    directory: str | pathlib.Path | None = None,
) -> dict:
    workdir = pathlib.Path(workdir)
    config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
    results = json.loads((workdir / "results.json").read_text())
    if config.experiment not in BUILDER_OF:
        raise ValueError(f"No pretrained builder for experiment {config.experiment!r}.")
    config.mesh.data = 1
    experiment = make_experiment(config)
    trainer = Trainer(experiment)
    checkpointer = Checkpointer(workdir, async_save=False)
    state = checkpointer.restore(checkpointer.latest_step(), trainer.init_state())
    checkpointer.close()
    model = trainer.bind(state["params"], state["model_state"])
    meta = {
        "builder": BUILDER_OF[config.experiment],
        # A family whose config does not say which model it builds adds the variant's name.
        "config": dataclasses.asdict(experiment.model_config)
        | ({"variant": config.model.variant} if "variant" in config.model else {}),
        "experiment": config.experiment,
        "variant": config.variant,
        "command": command,
        "steps": results["steps"],
        "num_params": results["num_params"],
        "test": results["test"],
        "best": results.get("best"),
    }
    pretrained.save(name, model, meta, directory)
    return meta


def define_flags() -> None:
    """The command line's flags, defined only when run (importing this module defines none)."""
    flags.DEFINE_string("run", None, "The trained run's work directory.")
    flags.DEFINE_string("name", None, "The pretrained model's name.")
    flags.DEFINE_string("command", "", "The command that trained it (for the record).")
    flags.DEFINE_string("directory", "", "Write here instead of the package (dfn_jax/pretrained).")
    flags.mark_flags_as_required(["run", "name"])


def main(argv):
    del argv
    f = flags.FLAGS
    meta = export(f.run, f.name, f.command, f.directory)
    print(json.dumps({k: meta[k] for k in ("builder", "num_params", "test")}, indent=2))


if __name__ == "__main__":
    define_flags()
    app.run(main)
