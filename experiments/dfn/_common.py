"""Pieces the DFN experiment bindings share: config checks, MNIST digits, test-set sizes and the
per-frame metric sums. Private to :mod:`experiments.dfn`."""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Callable

import jax
import jax.numpy as jnp

from dfn_jax import ops
from dfn_jax.data import mnist

STANDIN = "procedural stand-in"
"""``data_source`` in the facts of a run on a procedural stand-in (no files)."""


# -- config checks ----------------------------------------------------------------------------
def recording_problems(data, *, what: str) -> list[str]:
    """Problems with a recording's ``data.path``, ``data.test_path`` and ``data.test_fraction``;
    ``what`` names what ``data.path`` holds in the messages ("the training video")."""
    problems = []
    for name in ("path", "test_path"):
        value = data[name]
        if value and not pathlib.Path(value).expanduser().exists():
            problems.append(f"`data.{name}` {value!r} does not exist.")
    if data.test_path and not data.path:
        problems.append(f"`data.test_path` is set but `data.path` ({what}) is not.")
    if not 0.0 < data.test_fraction < 1.0:
        problems.append(f"`data.test_fraction` must lie in (0, 1), got {data.test_fraction!r}.")
    return problems


def source_problems(data, sources: tuple[str, ...]) -> list[str]:
    """Problems with ``data.source`` (one of ``sources``) and, for MNIST, ``data.mnist_dir``."""
    problems = []
    if data.source not in sources:
        problems.append(f"`data.source` must be one of {sources}, got {data.source!r}.")
    if data.source == "mnist" and data.mnist_dir and not pathlib.Path(data.mnist_dir).is_dir():
        problems.append(f"`data.mnist_dir` {data.mnist_dir!r} is not a directory.")
    return problems


# -- data ---------------------------------------------------------------------------------------
def mnist_generators(data, generate: Callable) -> tuple[Callable, Callable]:
    """``(keys -> generate(keys, train_digits), keys -> generate(keys, test_digits))`` with the
    MNIST digits that ``data.mnist_dir``, ``data.tfds_data_dir`` and ``data.download`` name.

    The digits stay uint8 (4x less device memory than float) and are passed to ``generate`` as
    arguments: closing over them would bake them (47 MB) into the compiled program as constants.
    """
    load = functools.partial(
        mnist.load_mnist_digits,
        mnist_dir=data.mnist_dir or None,
        tfds_data_dir=data.tfds_data_dir or None,
        download=data.download,
    )
    train_digits, test_digits = jnp.asarray(load("train")), jnp.asarray(load("test"))
    return (
        lambda keys, **kwargs: generate(keys, train_digits, **kwargs),
        lambda keys, **kwargs: generate(keys, test_digits, **kwargs),
    )


def standin_test_keys(config, num: int) -> jax.Array:
    """The keys of the procedural stand-in's fixed test set (``data.test_seed``)."""
    return jax.random.split(jax.random.key(config.data.test_seed), num)


def num_test_examples(available: int, config) -> int:
    """How many of ``available`` test examples are evaluated: at most ``num_eval_sequences``,
    rounded down to whole evaluation batches (all of them if fewer than one batch)."""
    size = config.eval_batch_size
    n = min(available, config.num_eval_sequences)
    return (n // size) * size if n >= size else n


def recording_facts(experiment) -> dict:
    """The facts every recording experiment (highway, stereo) reports first: the data source
    (:data:`STANDIN` or ``data.path``), the model config and ``data.test_seed``, then, for files,
    ``data_test_path`` (``None`` when the test set is held out of ``data.path``)."""
    data = experiment.config.data
    facts = {
        "data_source": STANDIN if experiment.uses_standin else str(data.path),
        "model": dataclasses.asdict(experiment.model_config),
        "test_seed": data.test_seed,
    }
    if not experiment.uses_standin:
        facts["data_test_path"] = str(data.test_path) or None
    return facts


# -- metrics ------------------------------------------------------------------------------------
def image_quality(predicted: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    """``mae``, ``ssim``, ``ssim_openstl`` and ``psnr`` per image (or frame)."""
    return {
        "mae": ops.absolute_error_per_frame(predicted, target),
        "ssim": ops.ssim(predicted, target),
        "ssim_openstl": ops.ssim_openstl(predicted, target),
        "psnr": ops.psnr(predicted, target),
    }


def per_frame_sums(per_frame: dict[str, jax.Array], count: int) -> dict[str, jax.Array]:
    """Evaluation sums from per-frame metrics ``[B, T_out]``: each metric averaged over the
    predicted frames and summed over the batch, plus ``<name>_per_horizon`` summed over the batch
    per frame; ``count`` is the batch size."""
    sums = {"count": jnp.asarray(count, jnp.float32)}
    for name, values in per_frame.items():
        sums[name] = jnp.sum(jnp.mean(values, axis=1))
        sums[f"{name}_per_horizon"] = jnp.sum(values, axis=0)
    return sums
