"""Learnets (Bertinetto et al., "Learning feed-forward one-shot learners", NIPS 2016): networks
that predict a pupil network's parameters from one exemplar, and their siamese baselines, for
one-shot recognition on Omniglot. The factorised predicted layers themselves are in
:mod:`dfn_jax.layers.factorized`."""

from dfn_jax.models.learnet.omniglot import (
    VARIANTS,
    Learnet,
    LearnetConfig,
    Pupil,
    Siamese,
    SiameseLearnet,
    SiameseUnshared,
    SingleStreamLearnet,
    WeightedL1,
    learnet_model,
    learnet_param_count,
    matched_siamese_width,
    scaled_channels,
)

__all__ = [
    "VARIANTS",
    "Learnet",
    "LearnetConfig",
    "Pupil",
    "Siamese",
    "SiameseLearnet",
    "SiameseUnshared",
    "SingleStreamLearnet",
    "WeightedL1",
    "learnet_model",
    "learnet_param_count",
    "matched_siamese_width",
    "scaled_channels",
]
