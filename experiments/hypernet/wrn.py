"""CIFAR-10 with wide residual networks and Hyper Residual Networks (HyperNetworks v4 Sec. 4.2,
Table 2).

Binds :func:`dfn_jax.models.hypernet.wide_resnet` (plain or hypernetwork-generated 3x3 kernels),
CIFAR-10 split 45,000 / 5,000 / 10,000 (:mod:`dfn_jax.data.cifar10`), inputs standardised per
channel with the training split's mean and standard deviation, and the paper's augmentation
drawn on device from the step's key (zero-pad to 40x40, random 32x32 crop, random horizontal
flip) to the shared classification loop
(:class:`~experiments.hypernet._classification.ImageClassification`). Configs and commands:
``experiments/configs/hyper_wrn.py``.
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
from dfn_jax.data import augment, cifar10
from dfn_jax.models.hypernet import WRNConfig, wide_resnet
from dfn_jax.training import dataclass_from_config
from experiments.hypernet._classification import ImageClassification


class HyperWRN(ImageClassification):
    config_keys = frozenset({"crop_padding", "flip"})
    data_keys = frozenset({"cifar_dir", "tfds_data_dir", "validation_size"})

    @functools.cached_property
    def model_config(self) -> WRNConfig:
        return dataclass_from_config(WRNConfig, self.config.model)

    def config_problems(self) -> list[str]:
        data, problems = self.config.data, []
        if data.cifar_dir and not pathlib.Path(data.cifar_dir).is_dir():
            problems.append(f"`data.cifar_dir` {data.cifar_dir!r} is not a directory.")
        pad = self.config.crop_padding
        if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
            problems.append(f"`crop_padding` must be an int >= 0, got {pad!r}.")
        if not isinstance(self.config.flip, bool):
            problems.append(f"`flip` must be True or False, got {self.config.flip!r}.")
        return problems + self.model_problems()

    @functools.cached_property
    def splits(self) -> dict:
        data = self.config.data
        return cifar10.cifar10_classification_splits(
            cifar_dir=data.cifar_dir or None,
            tfds_data_dir=data.tfds_data_dir or None,
            validation_size=data.validation_size,
        )

    @functools.cached_property
    def channel_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and standard deviation of the training images, in [0, 1] units, each
        ``[1, 1, 1, 3]``."""
        pixels = self.splits["train"][0].reshape(-1, 3).astype(np.float64) / 255.0
        mean, std = pixels.mean(0), pixels.std(0)
        return mean.astype(np.float32).reshape(1, 1, 1, 3), std.astype(np.float32).reshape(
            1, 1, 1, 3
        )

    def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
        return wide_resnet(self.model_config, rngs=rngs)

    def inputs(self, images: jax.Array) -> jax.Array:
        mean, std = self.channel_stats
        return (images.astype(jnp.float32) / 255.0 - mean) / std

    def augment_images(self, images: jax.Array, key: jax.Array) -> jax.Array:
        crop_key, flip_key = jax.random.split(key)
        if self.config.crop_padding:
            keys = jax.random.split(crop_key, images.shape[0])
            # Zero padding of the standardised images is padding with the mean colour.
            images = augment.random_crops(keys, images, pad=self.config.crop_padding)
        if self.config.flip:
            images = augment.random_flips(jax.random.split(flip_key, images.shape[0]), images)
        return images

    def write_figures(self, model, figures_dir: pathlib.Path) -> list[pathlib.Path]:
        """The first block's first 3x3 convolution (16 x 16k kernels), generated or learned."""
        name = "groups.0.0.conv1"
        if hasattr(model, "generate"):
            kernel, title = model.generate()[name], f"generated {name} kernels"
        else:
            kernel, title = model.groups[0][0].conv1.kernel[...], f"learned {name} kernels"
        kernel = np.asarray(kernel)[:, :, :16, :16]
        return [viz.plot_kernel_grid(kernel, figures_dir / "first_block_kernels.png", title=title)]

    def describe(self) -> dict:
        return {"model": dataclasses.asdict(self.model_config), **super().describe()}


EXPERIMENT = HyperWRN
