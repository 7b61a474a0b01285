"""Wide residual networks (Zagoruyko & Komodakis, 2016) and the HyperNetworks paper's Hyper
Residual Networks (Ha, Dai, Le, arXiv 1609.09106 v4, Sec. 4.2, Table 2).

``WRN-depth-k``: a 3x3 convolution with 16 outputs (``conv1``), then three groups
(``conv2``-``conv4``) of ``n = (depth - 4) / 6`` pre-activation basic blocks of widths
``16k, 32k, 64k`` (strides 1, 2, 2), then BatchNorm, ReLU, global average pooling and a dense
layer. A block is ``BN-ReLU-conv3x3-BN-ReLU-conv3x3`` plus the shortcut: the input itself, or a
1x1 convolution of the pre-activated input when the width or the stride changes. Convolutions
have no bias. ``WRN-40-1`` has 563,930 parameters and ``WRN-40-2`` 2,243,546 (the paper's
Table 2 lists 0.563M and 2.236M).

The Hyper-WRN generates the 3x3 kernels of all ``6n`` convolutions of ``conv2``-``conv4`` (36 for
depth 40) with one :class:`~dfn_jax.layers.StaticHyperNetwork`: 16x16 basic kernels, one
embedding of ``N_z = 64`` per tile (a 32 -> 64 kernel is 2 x 4 tiles), so the network stores
75,920 hypernetwork weights plus 64 numbers per tile instead of the kernels. The paper applies
"batch normalization to the generated weights" without saying over which axes; here each
generated kernel's output channel is standardised over its fan-in (``kernel_norm="standardize"``,
no learned parameters; see :class:`~dfn_jax.layers.StaticHyperNetwork`). Hyper-WRN-40-1 has
97,770 parameters (Table 2: 0.097M), Hyper-WRN-40-2 155,626 (Table 2: 0.148M; the 40-2 plain
network differs from Table 2 by a similar 7,500, which we could not attribute).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from dfn_jax._src.checks import choice, positive_int
from dfn_jax.layers.conv import Conv
from dfn_jax.layers.hyper import KERNEL_NORMS, StaticHyperNetwork


@dataclasses.dataclass(frozen=True)
class WRNConfig:
    """Args:
    depth: ``6n + 4`` (40: six blocks per group).
    width: the widening factor ``k``.
    num_classes: outputs of the dense layer (10 for CIFAR-10).
    hypernetwork: generate the 3x3 kernels of ``conv2``-``conv4`` with a static hypernetwork.
    z_dim: the hypernetwork's embedding size ``N_z`` (64 in the paper).
    tile: in and out channels of the basic generated kernel (16).
    kernel_norm: what is applied to each generated kernel: ``"standardize"`` or ``"none"``.
    batch_norm_momentum: of every BatchNorm's running statistics (0.9, as TensorFlow).
    """

    depth: int = 40
    width: int = 1
    num_classes: int = 10
    hypernetwork: bool = False
    z_dim: int = 64
    tile: int = 16
    kernel_norm: str = "standardize"
    batch_norm_momentum: float = 0.9

    def __post_init__(self):
        for name in ("depth", "width", "num_classes", "z_dim", "tile"):
            positive_int(getattr(self, name), name=name)
        if (self.depth - 4) % 6 or self.depth < 10:
            raise ValueError(
                f"`depth` must be 6n + 4 with n >= 1 (10, 16, ..., 40), got {self.depth}."
            )
        if not isinstance(self.hypernetwork, bool):
            raise ValueError(f"`hypernetwork` must be True or False, got {self.hypernetwork!r}.")
        choice(self.kernel_norm, KERNEL_NORMS, name="kernel_norm")
        if not 0.0 <= self.batch_norm_momentum < 1.0:
            raise ValueError(
                f"`batch_norm_momentum` must be in [0, 1), got {self.batch_norm_momentum!r}."
            )

    @property
    def blocks_per_group(self) -> int:
        return (self.depth - 4) // 6

    @property
    def widths(self) -> tuple[int, int, int]:
        return (16 * self.width, 32 * self.width, 64 * self.width)


class BasicBlock(nnx.Module):
    """Pre-activation basic block: ``BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3`` plus the
    shortcut (a 1x1 convolution of the pre-activated input when the shape changes)."""

    def __init__(self, n_in: int, n_out: int, stride: int, momentum: float, *, rngs: nnx.Rngs):
        self.stride = stride
        self.bn1 = nnx.BatchNorm(n_in, momentum=momentum, rngs=rngs)
        self.conv1 = Conv(n_in, n_out, (3, 3), strides=stride, use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(n_out, momentum=momentum, rngs=rngs)
        self.conv2 = Conv(n_out, n_out, (3, 3), use_bias=False, rngs=rngs)
        self.shortcut = (
            Conv(n_in, n_out, (1, 1), strides=stride, use_bias=False, rngs=rngs)
            if n_in != n_out or stride != 1
            else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(h)
        h = self.conv1(h)
        h = self.conv2(jax.nn.relu(self.bn2(h)))
        return h + skip


class WideResNet(nnx.Module):
    """``WRN-depth-k`` for ``[B, H, W, 3]`` images -> logits ``[B, num_classes]``."""

    def __init__(self, config: WRNConfig = WRNConfig(), *, rngs: nnx.Rngs):
        self.config = config
        momentum = config.batch_norm_momentum
        self.conv1 = Conv(3, 16, (3, 3), use_bias=False, rngs=rngs)
        groups, n_in = [], 16
        for index, n_out in enumerate(config.widths):
            blocks = []
            for b in range(config.blocks_per_group):
                stride = 2 if index > 0 and b == 0 else 1
                blocks.append(BasicBlock(n_in, n_out, stride, momentum, rngs=rngs))
                n_in = n_out
            groups.append(nnx.List(blocks))
        self.groups = nnx.List(groups)
        self.bn = nnx.BatchNorm(n_in, momentum=momentum, rngs=rngs)
        self.dense = nnx.Linear(n_in, config.num_classes, rngs=rngs)

    @property
    def generated_layers(self) -> list[str]:
        """Dotted names of the ``6n`` 3x3 convolutions of ``conv2``-``conv4``."""
        n = self.config.blocks_per_group
        return [
            f"groups.{g}.{b}.{conv}"
            for g in range(3)
            for b in range(n)
            for conv in ("conv1", "conv2")
        ]

    def __call__(self, images: jax.Array) -> jax.Array:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"`images` must have shape [B, H, W, 3], got {tuple(images.shape)}.")
        x = self.conv1(images)
        for group in self.groups:
            for block in group:
                x = block(x)
        x = jax.nn.relu(self.bn(x))
        return self.dense(jnp.mean(x, axis=(1, 2)))


def wide_resnet(config: WRNConfig, *, rngs: nnx.Rngs) -> nnx.Module:
    """The plain WRN, or (``config.hypernetwork``) a :class:`StaticHyperNetwork` generating the
    3x3 kernels of its ``conv2``-``conv4`` groups; both map ``[B, H, W, 3]`` to logits."""
    net = WideResNet(config, rngs=rngs)
    if not config.hypernetwork:
        return net
    return StaticHyperNetwork(
        net,
        net.generated_layers,
        z_dim=config.z_dim,
        tile=config.tile,
        kernel_norm=config.kernel_norm,
        rngs=rngs,
    )
