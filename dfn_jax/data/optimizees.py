"""Optimizee tasks for learned optimizers ("Learning to learn by gradient descent by gradient
descent", Sec. 3): families of problems a learned optimizer is trained and tested on.

A task is a frozen dataclass with two pure functions, usable under ``jit`` and ``vmap`` over
problems:

* ``sample(key) -> (params, problem)``: a fresh problem (its data or data key) and the optimizee's
  initial parameters;
* ``loss(params, problem, step, data) -> scalar``: the optimizee's loss at optimization step
  ``step`` (a minibatch task draws step ``step``'s batch from the problem's key). ``data`` is the
  task's arrays (:meth:`arrays`), passed explicitly so that ``jit`` does not bake a dataset into
  the compiled program as a constant.
* optionally ``meta_loss(params, problem, step, data) -> scalar``: the estimate of the
  optimizee's loss ``f(theta_t)`` that meta-training sums (without it, ``loss`` itself; a
  minibatch task may estimate it on a larger batch of its own, which lowers the
  meta-gradient's variance without changing what it estimates).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from dfn_jax._src.checks import choice, positive_int

DISTRIBUTIONS = ("gaussian", "uniform")
ACTIVATIONS = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh}


@dataclasses.dataclass(frozen=True)
class Quadratic:
    """``f(theta) = ||W theta - y||^2`` with ``W [dim, dim]`` and ``y [dim]`` drawn per problem:
    standard normal (the paper) or uniform in [0, 1) (the authors' code); ``theta`` starts at
    ``N(0, init_scale^2)`` (the authors' code: 0.01)."""

    dim: int = 10
    distribution: str = "gaussian"
    init_scale: float = 0.01

    def __post_init__(self):
        positive_int(self.dim, name="dim")
        choice(self.distribution, DISTRIBUTIONS, name="distribution")

    def arrays(self) -> dict:
        return {}

    def sample(self, key: jax.Array) -> tuple[jax.Array, dict]:
        kw, ky, kx = jax.random.split(key, 3)
        draw = jax.random.normal if self.distribution == "gaussian" else jax.random.uniform
        problem = {"w": draw(kw, (self.dim, self.dim)), "y": draw(ky, (self.dim,))}
        return self.init_scale * jax.random.normal(kx, (self.dim,)), problem

    def loss(self, params: jax.Array, problem: dict, step: Any, data: dict) -> jax.Array:
        del step, data
        return jnp.sum((problem["w"] @ params - problem["y"]) ** 2)


@dataclasses.dataclass(frozen=True)
class MLPClassifier:
    """A multilayer perceptron on flattened images: ``hidden`` units per hidden layer,
    ``activation`` (sigmoid in the paper; ReLU is its failure case), softmax cross-entropy on
    minibatches of ``batch_size`` drawn uniformly with replacement per step. Weights start at
    ``N(0, 1/fan_in)``, biases at 0. ``meta_batch_size`` > 0: :meth:`meta_loss` estimates the
    training loss on that many examples of its own per step (drawn independently of the
    minibatch), 0: on the step's minibatch, like :meth:`loss`.

    ``images`` ``float32 [N, D]`` and ``labels`` ``int32 [N]`` are the task's arrays (not part of
    the dataclass's identity: pass them to :meth:`arrays`' caller as ``data``).
    """

    input_size: int = 784
    num_classes: int = 10
    hidden: tuple[int, ...] = (20,)
    activation: str = "sigmoid"
    batch_size: int = 128
    meta_batch_size: int = 0
    images: Any = dataclasses.field(default=None, compare=False, repr=False)
    labels: Any = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self):
        for name in ("input_size", "num_classes", "batch_size"):
            positive_int(getattr(self, name), name=name)
        positive_int(self.meta_batch_size, name="meta_batch_size", minimum=0)
        for width in self.hidden:
            positive_int(width, name="hidden")
        choice(self.activation, tuple(ACTIVATIONS), name="activation")

    def arrays(self) -> dict:
        if self.images is None or self.labels is None:
            raise ValueError("MLPClassifier needs `images` [N, D] and `labels` [N] for its data.")
        images, labels = jnp.asarray(self.images, jnp.float32), jnp.asarray(self.labels, jnp.int32)
        if (
            images.ndim != 2
            or images.shape[1] != self.input_size
            or labels.shape != images.shape[:1]
        ):
            raise ValueError(
                f"`images` must be [N, {self.input_size}] and `labels` [N], got "
                f"{tuple(images.shape)} and {tuple(labels.shape)}."
            )
        return {"images": images, "labels": labels}

    def sample(self, key: jax.Array) -> tuple[list, dict]:
        sizes = (self.input_size, *self.hidden, self.num_classes)
        init_key, data_key = jax.random.split(key)
        keys = jax.random.split(init_key, len(sizes) - 1)
        params = [
            {"w": jax.random.normal(k, (a, b)) / jnp.sqrt(a), "b": jnp.zeros((b,))}
            for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
        ]
        return params, {"data_key": jax.random.key_data(data_key)}

    def logits(self, params: list, images: jax.Array) -> jax.Array:
        x = images
        for layer in params[:-1]:
            x = ACTIVATIONS[self.activation](x @ layer["w"] + layer["b"][None])
        return x @ params[-1]["w"] + params[-1]["b"][None]

    def loss(self, params: list, problem: dict, step: Any, data: dict) -> jax.Array:
        key = jax.random.fold_in(jax.random.wrap_key_data(problem["data_key"]), step)
        return self._cross_entropy(params, data, key, self.batch_size)

    def meta_loss(self, params: list, problem: dict, step: Any, data: dict) -> jax.Array:
        if not self.meta_batch_size:
            return self.loss(params, problem, step, data)
        key = jax.random.fold_in(jax.random.wrap_key_data(problem["data_key"]), step)
        return self._cross_entropy(params, data, jax.random.fold_in(key, 1), self.meta_batch_size)

    def _cross_entropy(self, params: list, data: dict, key: jax.Array, size: int) -> jax.Array:
        index = jax.random.randint(key, (size,), 0, data["images"].shape[0])
        logits = self.logits(params, data["images"][index])
        log_p = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(log_p, data["labels"][index][:, None], axis=1))
