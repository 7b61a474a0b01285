"""The learned optimizer on an MNIST multilayer perceptron (Andrychowicz et al. 2016, Sec. 3.2):
one hidden layer of 20 sigmoid units, minibatches of 128, 100 steps; gradients preprocessed
(p = 10) and updates scaled by 0.1. Evaluated also on the paper's generalisation tests: 200
steps, 40 hidden units, two hidden layers, and ReLU (where the paper's optimizer fails).
Configs and commands: ``experiments/configs/l2l_mnist.py``."""

from __future__ import annotations

import functools

import numpy as np

from dfn_jax.data.mnist import load_mnist
from dfn_jax.data.optimizees import MLPClassifier
from experiments.l2l.learned_optimizer import LearnedOptimizerExperiment


class L2LMNIST(LearnedOptimizerExperiment):
    @functools.cached_property
    def images_and_labels(self) -> tuple[np.ndarray, np.ndarray]:
        data = self.config.data
        images, labels = load_mnist(
            "train", mnist_dir=data.mnist_dir or None, download=data.download
        )
        return images.reshape(len(images), -1).astype(np.float32) / 255.0, labels.astype(np.int32)

    def make_task(self, **kwargs) -> MLPClassifier:
        task = self.config.task
        images, labels = self.images_and_labels
        settings = {
            "hidden": tuple(task.hidden),
            "activation": task.activation,
            "batch_size": task.batch_size,
            "meta_batch_size": task.meta_batch_size,
        }
        return MLPClassifier(images=images, labels=labels, **(settings | kwargs))

    def test_variants(self) -> dict[str, tuple[dict, int]]:
        """The trained setting and the paper's generalisation tests (Figure 5)."""
        steps = self.test_steps
        return {
            "default": ({}, steps),
            "steps_200": ({}, 2 * steps),
            "hidden_40": ({"hidden": (40,)}, steps),
            "two_layers": ({"hidden": (20, 20)}, steps),
            "relu": ({"activation": "relu"}, steps),
        }


EXPERIMENT = L2LMNIST
