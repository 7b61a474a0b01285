"""HyperNetworks (Ha, Dai, Le, arXiv 1609.09106 v4): main networks whose weights a smaller network
generates. The static hypernetwork itself is a layer (:class:`dfn_jax.layers.StaticHyperNetwork`);
this package holds the papers' main networks and their configs."""

from dfn_jax.models.hypernet.char_lm import CharLM, CharLMConfig
from dfn_jax.models.hypernet.mnist import MNISTConvNet, MNISTNetConfig, mnist_net
from dfn_jax.models.hypernet.wrn import WideResNet, WRNConfig, wide_resnet

__all__ = [
    "CharLM",
    "CharLMConfig",
    "MNISTConvNet",
    "MNISTNetConfig",
    "WRNConfig",
    "WideResNet",
    "mnist_net",
    "wide_resnet",
]
