"""Saving and loading meta-trained LSTM optimizers: one call returns the optax transform.

A learned optimizer is two files: ``<name>.msgpack`` (its meta-parameters, written with
``flax.serialization``: no pickle) and ``<name>.json`` (the settings the transform needs,
``output_scale``, ``preprocess``, ``preprocess_p``, and how it was trained: command, task,
results). The meta-trained optimizers of the experiments ship in ``dfn_jax/optim/learned/``::

    from dfn_jax.optim import load_learned_optimizer
    opt = load_learned_optimizer("quadratic")   # an optax.GradientTransformation
"""

from __future__ import annotations

import json
import os
import pathlib

import jax
import numpy as np
import optax
from flax import serialization

from dfn_jax.optim.lstm_optimizer import MetaParams, lstm_optimizer

SHIPPED = pathlib.Path(__file__).resolve().parent / "learned"
SETTINGS = ("output_scale", "preprocess", "preprocess_p")


def available_learned_optimizers() -> list[str]:
    """Names of the meta-trained optimizers that ship with the package."""
    return sorted(p.stem for p in SHIPPED.glob("*.json"))


def _stem(name_or_path: str | os.PathLike) -> pathlib.Path:
    text = os.fspath(name_or_path)
    if text in available_learned_optimizers():
        return SHIPPED / text
    path = pathlib.Path(text).expanduser()
    stem = path.with_suffix("") if path.suffix in (".json", ".msgpack") else path
    if not stem.with_suffix(".json").is_file() or not stem.with_suffix(".msgpack").is_file():
        raise ValueError(
            f"No learned optimizer {text!r}: not a shipped name {available_learned_optimizers()} "
            f"and no {stem.name}.json + {stem.name}.msgpack pair at {str(stem.parent)!r}."
        )
    return stem


def save_learned_optimizer(
    path: str | os.PathLike, meta_params: MetaParams, *, settings: dict, info: dict | None = None
) -> pathlib.Path:
    """Writes ``path.msgpack`` and ``path.json``; ``settings`` holds the keyword arguments of
    :func:`~dfn_jax.optim.lstm_optimizer` (``output_scale``, ``preprocess``, ``preprocess_p``).
    Returns the ``.json`` path."""
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        raise ValueError(f"`settings` has unknown keys {sorted(unknown)}; expected {SETTINGS}.")
    stem = pathlib.Path(path).expanduser()
    stem = stem.with_suffix("") if stem.suffix in (".json", ".msgpack") else stem
    stem.parent.mkdir(parents=True, exist_ok=True)
    arrays = jax.tree.map(np.asarray, meta_params)
    stem.with_suffix(".msgpack").write_bytes(serialization.msgpack_serialize(arrays))
    layers = arrays["lstm"]
    shapes = {
        "num_layers": len(layers),
        "hidden_size": layers[0]["w"].shape[1] // 4 if layers else 0,
    }
    record = {"settings": dict(settings), **shapes, **(info or {})}
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return stem.with_suffix(".json")


def learned_optimizer_info(name_or_path: str | os.PathLike) -> dict:
    """The optimizer's JSON: ``settings``, ``num_layers``, ``hidden_size`` and how it was
    trained."""
    return json.loads(_stem(name_or_path).with_suffix(".json").read_text())


def load_meta_params(name_or_path: str | os.PathLike) -> MetaParams:
    """The meta-parameters of a saved or shipped learned optimizer."""
    data = _stem(name_or_path).with_suffix(".msgpack").read_bytes()
    restored = serialization.msgpack_restore(data)
    layers = restored["lstm"]
    if isinstance(layers, dict):  # msgpack stores lists as {"0": ..., "1": ...}
        layers = [layers[str(i)] for i in range(len(layers))]
    return {"lstm": list(layers), "out_w": restored["out_w"], "out_b": restored["out_b"]}


def load_learned_optimizer(name_or_path: str | os.PathLike) -> optax.GradientTransformation:
    """The learned optimizer ``name_or_path`` (a shipped name such as ``"quadratic"``, or the
    path of a saved pair) as an optax transform, with its preprocessing and output scale."""
    settings = learned_optimizer_info(name_or_path)["settings"]
    return lstm_optimizer(load_meta_params(name_or_path), **settings)
