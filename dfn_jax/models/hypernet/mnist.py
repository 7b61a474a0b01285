"""The HyperNetworks paper's MNIST network (v4 Sec. 4.1, appendix A.3.1) and its hypernetwork
version.

Main network: ``28x28x1 -> conv 7x7, 16 (SAME, bias), ReLU, max-pool 2 -> conv 7x7, 16 (SAME,
bias), ReLU, max-pool 2 -> flatten 784 -> dense 10`` (logits). Conventional: 21,210 parameters
(the second kernel 12,544 of them). Hypernetwork version: the second convolution's kernel is
generated from one 4-number embedding by a static hypernetwork (``N_z = d = 4``): 4,240
hypernetwork parameters plus the embedding, 12,910 in all.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from dfn_jax._src.checks import positive_int
from dfn_jax.layers.conv import Conv
from dfn_jax.layers.hyper import StaticHyperNetwork


@dataclasses.dataclass(frozen=True)
class MNISTNetConfig:
    """Args:
    features: channels of both convolutions (16).
    kernel_size: of both convolutions (7).
    num_classes: outputs of the dense layer (10).
    image_size: input height and width (28).
    hypernetwork: generate the second convolution's kernel with a static hypernetwork.
    z_dim: the hypernetwork's embedding size ``N_z`` (= ``d``).
    """

    features: int = 16
    kernel_size: int = 7
    num_classes: int = 10
    image_size: int = 28
    hypernetwork: bool = True
    z_dim: int = 4

    def __post_init__(self):
        for name in ("features", "kernel_size", "num_classes", "image_size", "z_dim"):
            positive_int(getattr(self, name), name=name)
        if self.image_size % 4:
            raise ValueError(
                f"`image_size` must be a multiple of 4 (two 2x2 max-pools), got {self.image_size}."
            )
        if not isinstance(self.hypernetwork, bool):
            raise ValueError(f"`hypernetwork` must be True or False, got {self.hypernetwork!r}.")


class MNISTConvNet(nnx.Module):
    """The paper's two-convolution MNIST classifier: ``[B, 28, 28, 1] -> logits [B, 10]``."""

    def __init__(self, config: MNISTNetConfig = MNISTNetConfig(), *, rngs: nnx.Rngs):
        self.config = config
        f, k = config.features, config.kernel_size
        self.conv1 = Conv(1, f, (k, k), padding="SAME", rngs=rngs)
        self.conv2 = Conv(f, f, (k, k), padding="SAME", rngs=rngs)
        flat = (config.image_size // 4) ** 2 * f
        self.dense = nnx.Linear(flat, config.num_classes, rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        if images.ndim != 4 or images.shape[1:] != (self.config.image_size,) * 2 + (1,):
            size = self.config.image_size
            raise ValueError(
                f"`images` must have shape [B, {size}, {size}, 1], got {tuple(images.shape)}."
            )
        x = nnx.max_pool(jax.nn.relu(self.conv1(images)), (2, 2), strides=(2, 2))
        x = nnx.max_pool(jax.nn.relu(self.conv2(x)), (2, 2), strides=(2, 2))
        return self.dense(jnp.reshape(x, (x.shape[0], -1)))


def mnist_net(config: MNISTNetConfig, *, rngs: nnx.Rngs) -> nnx.Module:
    """The conventional network, or (``config.hypernetwork``) a :class:`StaticHyperNetwork`
    generating its ``conv2`` kernel; both map ``[B, 28, 28, 1]`` to logits."""
    net = MNISTConvNet(config, rngs=rngs)
    if not config.hypernetwork:
        return net
    return StaticHyperNetwork(net, ["conv2"], z_dim=config.z_dim, rngs=rngs)
