"""Evaluates a shipped (or exported) pretrained model on its experiment's test set, in one line::

    python -m experiments.evaluate_pretrained --name=moving_mnist_paper \
        --config=experiments/configs/moving_mnist.py:paper \
        --config.data.mnist_dir=../shared/data/mnist --config.num_eval_sequences=200

``--config`` is the experiment the model was trained by (its JSON's ``experiment`` must match),
with any overrides of the evaluation (how many test examples, where the data is); the model's
architecture comes from the pretrained model itself. Prints JSON: the test metrics, the number
of test examples, and what the model's JSON recorded for the full test set.
"""

from __future__ import annotations

import json
import pathlib

import jax
from absl import app, flags
from flax import nnx

from dfn_jax import pretrained
from dfn_jax.training import Trainer
from dfn_jax.training.run import jsonable
from experiments.main import make_experiment  # also defines --config (the experiment's)


def evaluate_pretrained(name: str, config, directory: str | pathlib.Path | None = None) -> dict:
    """The test metrics of pretrained model ``name`` under the experiment ``config``."""
    meta = pretrained.info(name, directory)
    if meta.get("experiment") != config.experiment:
        raise ValueError(
            f"Pretrained model {name!r} was trained by experiment {meta.get('experiment')!r}; "
            f"`--config` is experiment {config.experiment!r}."
        )
    config.mesh.data = 1
    trainer = Trainer(make_experiment(config))
    model = pretrained.load(name, directory)
    _, params, model_state = nnx.split(model, nnx.Param, ...)
    params, model_state = nnx.to_pure_dict(params), nnx.to_pure_dict(model_state)
    if jax.tree.map(jax.numpy.shape, params) != trainer.param_shapes:
        raise ValueError(
            f"Pretrained model {name!r} does not fit the model `--config` builds (variant "
            f"{config.variant!r}); it was trained as variant {meta.get('variant')!r}."
        )
    params, model_state = jax.device_put((params, model_state), trainer.replicated)
    return {
        "name": name,
        "num_params": meta["num_params"],
        "test": jax.tree.map(jsonable, trainer.evaluate(params, model_state)),
        "recorded_test": meta["test"],
    }


def define_flags() -> None:
    """The command line's own flags (defined only when run, so that importing this module next
    to export_pretrained, which has a --name too, defines nothing)."""
    flags.DEFINE_string("name", None, "A model of dfn_jax.pretrained (pretrained.available()).")
    flags.DEFINE_string("directory", "", "Where its .json/.msgpack are (default: the package's).")


def main(argv):
    del argv
    args = flags.FLAGS
    report = evaluate_pretrained(args.name, args.config, args.directory)
    print(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    define_flags()
    flags.mark_flags_as_required(["name", "config"])
    app.run(main)
