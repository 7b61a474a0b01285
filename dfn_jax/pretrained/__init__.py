"""Small trained models that ship with the package: one call, no network.

    from dfn_jax import pretrained
    model = pretrained.load("hyper_mnist")          # an nnx.Module, ready to run
    pretrained.info("hyper_mnist")["test"]           # what it reached, and the command

Each model is two files here: ``<name>.msgpack`` (its parameters and other variables, written
with ``flax.serialization``: no pickle) and ``<name>.json`` (the model family and config, the
command that trained it, its test metrics). ``experiments/export_pretrained.py`` writes them from
a run's work directory.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable

from flax import nnx, serialization

from dfn_jax.models.dfn import VideoDFN, VideoDFNConfig
from dfn_jax.models.hypernet import CharLM, CharLMConfig, MNISTNetConfig, mnist_net
from dfn_jax.models.learnet import LearnetConfig, learnet_model

HERE = pathlib.Path(__file__).resolve().parent

#: Model builders by the ``"builder"`` field of a model's JSON: ``config dict -> nnx.Module``.
BUILDERS: dict[str, Callable[[dict], nnx.Module]] = {
    "dfn.VideoDFN": lambda c: VideoDFN(VideoDFNConfig(**c), rngs=nnx.Rngs(0)),
    "hypernet.mnist_net": lambda c: mnist_net(MNISTNetConfig(**c), rngs=nnx.Rngs(0)),
    "hypernet.CharLM": lambda c: CharLM(CharLMConfig(**c), rngs=nnx.Rngs(0)),
    "learnet.model": lambda c: learnet_model(
        c["variant"],
        LearnetConfig(**{k: v for k, v in c.items() if k != "variant"}),
        rngs=nnx.Rngs(0),
    ),
}


def folder(directory: str | pathlib.Path | None = None) -> pathlib.Path:
    """``directory`` as a path; ``None`` or ``""`` (a command line's empty default): the
    package's own folder, where the shipped models are."""
    return pathlib.Path(directory) if directory else HERE


def available(directory: str | pathlib.Path | None = None) -> list[str]:
    """Names of the models shipped here (or in ``directory``)."""
    return sorted(p.stem for p in folder(directory).glob("*.json"))


def info(name: str, directory: str | pathlib.Path | None = None) -> dict:
    """The model's JSON: ``builder``, ``config``, ``command``, ``test`` metrics, ``num_params``."""
    path = folder(directory) / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"No pretrained model {name!r}; available: {available(directory)}.")
    return json.loads(path.read_text())


def load(name: str, directory: str | pathlib.Path | None = None) -> nnx.Module:
    """The pretrained model ``name`` (see :func:`available`), its variables restored."""
    meta = info(name, directory)
    model = BUILDERS[meta["builder"]](meta["config"])
    state = nnx.to_pure_dict(nnx.state(model))
    data = (folder(directory) / f"{name}.msgpack").read_bytes()
    restored = serialization.from_bytes(state, data)
    graphdef, variables = nnx.split(model)
    nnx.replace_by_pure_dict(variables, restored)
    return nnx.merge(graphdef, variables)


def save(
    name: str, model: nnx.Module, meta: dict, directory: str | pathlib.Path | None = None
) -> None:
    """Writes ``<name>.msgpack`` and ``<name>.json`` (``meta`` must name a ``builder`` and the
    ``config`` it takes)."""
    if meta.get("builder") not in BUILDERS:
        raise ValueError(f"`meta['builder']` must be one of {sorted(BUILDERS)}.")
    state = nnx.to_pure_dict(nnx.state(model))
    directory = folder(directory)
    (directory / f"{name}.msgpack").write_bytes(serialization.to_bytes(state))
    (directory / f"{name}.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
