"""MNIST with a static hypernetwork generating the second convolution (HyperNetworks v4 Sec. 4.1).

Binds :func:`dfn_jax.models.hypernet.mnist_net` (conventional or hypernetwork), MNIST split
55,000 / 5,000 / 10,000 (:mod:`dfn_jax.data.digits`) and pad-to-30 random crops drawn on device
from the step's key to the shared classification loop
(:class:`~experiments.hypernet._classification.ImageClassification`): every
``eval_every_steps`` (one epoch by default) the validation and test sets are both evaluated and
``results.json``'s ``best`` holds the test error at the lowest validation error.
Configs and commands: ``experiments/configs/hyper_mnist.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dfn_jax import viz
from dfn_jax.data import augment, digits
from dfn_jax.models.hypernet import MNISTNetConfig, mnist_net
from dfn_jax.training import dataclass_from_config
from experiments.hypernet._classification import ImageClassification


class HyperMNIST(ImageClassification):
    config_keys = frozenset({"crop_padding"})
    data_keys = frozenset({"mnist_dir", "tfds_data_dir", "download", "validation_size"})

    @functools.cached_property
    def model_config(self) -> MNISTNetConfig:
        return dataclass_from_config(MNISTNetConfig, self.config.model)

    def config_problems(self) -> list[str]:
        data, problems = self.config.data, []
        if data.mnist_dir and not pathlib.Path(data.mnist_dir).is_dir():
            problems.append(f"`data.mnist_dir` {data.mnist_dir!r} is not a directory.")
        pad = self.config.crop_padding
        if not isinstance(pad, int) or pad < 0:
            problems.append(f"`crop_padding` must be an int >= 0, got {pad!r}.")
        return problems + self.model_problems()

    @functools.cached_property
    def splits(self) -> dict:
        data = self.config.data
        return digits.mnist_classification_splits(
            mnist_dir=data.mnist_dir or None,
            tfds_data_dir=data.tfds_data_dir or None,
            download=data.download,
            validation_size=data.validation_size,
        )

    # -- model and data ---------------------------------------------------------------------
    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        return mnist_net(self.model_config, rngs=rngs)

    def inputs(self, images: jax.Array) -> jax.Array:
        return (images.astype(jnp.float32) / 255.0)[..., None]

    def augment_images(self, images: jax.Array, key: jax.Array) -> jax.Array:
        if not self.config.crop_padding:
            return images
        keys = jax.random.split(key, images.shape[0])
        return augment.random_crops(keys, images, pad=self.config.crop_padding)

    # -- figures and facts ------------------------------------------------------------------
    def write_figures(self, model, figures_dir: pathlib.Path) -> list[pathlib.Path]:
        """The second convolution's 16 x 16 kernels (7 x 7 each), generated or learned."""
        if hasattr(model, "generate"):
            kernel, title = model.generate()["conv2"], "generated conv2 kernels"
        else:
            kernel, title = model.conv2.kernel[...], "learned conv2 kernels"
        kernel = np.asarray(kernel)  # [kh, kw, in, out]
        return [viz.plot_kernel_grid(kernel, figures_dir / "conv2_kernels.png", title=title)]

    def describe(self) -> dict:
        return {"model": dataclasses.asdict(self.model_config), **super().describe()}


EXPERIMENT = HyperMNIST
