"""Learnets for one-shot character recognition on Omniglot (Bertinetto, Henriques, Valmadre, Torr,
Vedaldi, "Learning feed-forward one-shot learners", NIPS 2016, arXiv 1606.05233), and the siamese
baselines they are compared with.

Only the paper's abstract and figure captions were checked; the rest of what follows about the
paper is from secondary summaries and is UNVERIFIED. A learnet reads one exemplar ``z`` and
predicts parameters of a *pupil* network that processes another image ``x`` (Fig. 2, verified
caption): the **single-stream learnet** predicts parameters of a function applied to ``x`` alone,
the **siamese learnet** predicts the parameters of an embedding applied to both ``x`` and ``z``.
Predicted layers are factorised (:mod:`dfn_jax.layers.factorized`) to keep the learnet small.

The layers below are ours, sized for a CPU, not the paper's (which we could not check):

* **Pupil / embedding** (:class:`Pupil`): for each width ``c`` in ``channels``, a ``k x k``
  convolution (SAME, bias, He-normal init), ReLU and a 2x2 max-pool (28 -> 14 -> 7 -> 3 -> 1 for
  four blocks), then flatten and a linear embedding of size ``embedding_dim``. No normalisation
  layer: every variant is a pure function of its parameters (no batch statistics to carry or to
  mix between the exemplar and query streams), and He initialisation keeps activations at scale
  for networks this shallow. The layers named in ``predicted_layers`` (and the embedding with
  ``predict_linear``) take per-example parameters from a learnet instead of owning a kernel.
* **Learnet** (:class:`Learnet`): a pupil-like convnet (``learnet_channels``, embedding
  ``learnet_features``, ReLU) on the exemplar, then one linear head per predicted layer:
  ``kh*kw*R`` filter taps for a factorised convolution, ``R`` diagonal entries for a factorised
  linear layer, or the whole kernel / matrix when ``factorized=False`` (the ablation).
* **Exemplar template** (``exemplar_template=True``, with ``learnet_input="pupil"``; ours): the
  exemplar's own features at the first predicted layer, through that layer's 1x1 input
  projection and scaled per channel, are added to the predicted depthwise filters, so the layer
  cross-correlates query and exemplar features and the learnet predicts a correction (the best
  single-stream learnet on Omniglot, docs/RESULTS.md).
* **Scores**: the siamese variants use a learned weighted L1 distance,
  ``s(x, z) = b - sum_i a_i |phi(x)_i - phi(z)_i|`` (Koch, Zemel, Salakhutdinov 2015, the usual
  Omniglot siamese score; ``a`` starts at ``1/D``, ``b`` at 0, both free to change sign); the
  single-stream learnet has a linear head on ``ReLU(phi_z(x))``. Higher means "same class"; the
  scores are logits for a pairwise binary cross-entropy or, across an episode's exemplars, for a
  softmax.

Variants (:func:`learnet_model`): ``siamese`` (:class:`Siamese`, shared weights),
``siamese_unshared`` (:class:`SiameseUnshared`), ``learnet`` (:class:`SingleStreamLearnet`, the
paper's best), ``siamese_learnet`` (:class:`SiameseLearnet`) and ``learnet_unfactorised`` (the
single-stream learnet predicting whole kernels). All map ``(query [B, S, S(, 1)], exemplar [B, S,
S(, 1)])`` to ``score [B]`` and have ``score_matrix(queries [Q, ...], exemplars [N, ...]) -> [Q,
N]`` for N-way episodes (each exemplar's parameters predicted once, applied to every query in one
batched call). The siamese baselines are widened to the single-stream learnet's parameter count
(:func:`matched_siamese_width`) unless their width is given.

Default sizes (``LearnetConfig()``): learnet 99,249 parameters (learnet 37,200 of them),
siamese_learnet 99,249, siamese 101,529 (width 39), siamese_unshared 99,769 (width 27),
learnet_unfactorised 677,521.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from dfn_jax import ops
from dfn_jax._src.checks import choice, floating_array, is_int, positive_int
from dfn_jax._src.params import count_params
from dfn_jax.layers.conv import Conv
from dfn_jax.layers.factorized import IMPLEMENTATIONS as FACTORIZED_IMPLEMENTATIONS
from dfn_jax.layers.factorized import FactorizedConv, FactorizedLinear

VARIANTS = ("siamese", "siamese_unshared", "learnet", "siamese_learnet", "learnet_unfactorised")
"""The names :func:`learnet_model` accepts."""

LEARNET_INPUTS = ("image", "pupil")
"""What a learnet reads (``LearnetConfig.learnet_input``)."""

SCORES = ("linear", "l1")
"""The single-stream learnet's scores (``LearnetConfig.score``)."""

DYNAMIC_CONVOLUTION_IMPLEMENTATIONS = ("fast", "reference")
"""Implementations of :func:`dfn_jax.ops.dynamic_convolution` for whole predicted kernels."""

_HE_NORMAL = jax.nn.initializers.he_normal()


@dataclasses.dataclass(frozen=True)
class LearnetConfig:
    """Sizes and options of the learnet family (module docstring).

    Args:
      image_size: ``S``, input height and width (28); at least ``2**len(channels)``.
      channels: widths of the pupil's convolution blocks (each halves the resolution).
      kernel_size: of every convolution (pupil and learnet).
      embedding_dim: ``D``, size of the pupil's linear embedding.
      learnet_channels: widths of the learnet's convolution blocks (with ``learnet_input=
        "image"``).
      learnet_features: size of the learnet's feature vector that the heads read.
      learnet_input: what the learnet reads: ``"image"``, the exemplar through a convnet of its
        own (``learnet_channels``), or ``"pupil"``, the exemplar's features from the pupil's
        blocks before the first predicted layer (the same blocks the query goes through), read
        by one linear layer: the predicted filters can then be templates of the exemplar's own
        features, matched against the query's (ours; the paper's learnet has its own network).
      score: of the single-stream learnet: ``"linear"``, ``v . ReLU(phi_z(x)) + c``, or
        ``"l1"``, where the learnet also predicts a centre ``t(z)`` of the pupil's embedding
        and ``s = b - sum_i a_i |phi_z(x)_i - t(z)_i|`` (a predicted bias of the embedding
        scored by :class:`WeightedL1`'s norm; ours, the paper's score could not be read).
      exemplar_template: with ``learnet_input="pupil"``, add to the predicted filters of the
        first predicted (factorised) convolution the exemplar's own features at that layer,
        after its input projection (the centre ``k x k`` crop), scaled per channel by a learned
        ``[R]`` vector: the layer then cross-correlates the query's features with the
        exemplar's, channel by channel, and the learnet's heads predict a correction (ours,
        after the exemplar-as-filter of Bertinetto et al.'s SiamFC, 2016; not in the learnet
        paper).
      predicted_layers: indices into ``channels`` of the pupil convolutions whose parameters the
        learnet predicts (``(1,)``: the second).
      rank: ``R`` of each factorised predicted convolution; ``None``: its output width.
      factorized: predict factorised layers (True) or whole kernels (False, the ablation).
      predict_linear: the learnet also predicts the pupil's linear embedding (its diagonal
        ``w(z)`` when factorised, the whole matrix otherwise).
      linear_rank: ``R`` of the factorised embedding; ``None``: ``embedding_dim``.
      siamese_width: first-block width of the ``siamese`` baseline (the other widths keep the
        ratios of ``channels``); ``None``: matched to the ``learnet`` variant's parameter count.
      unshared_width: the same for ``siamese_unshared``.
      factorized_implementation: of the factorised convolutions' depthwise step (``"fast"``,
        ``"grouped"``, ``"dense"`` or ``"reference"``; see :mod:`dfn_jax.layers.factorized`).
      dynamic_convolution_implementation: of :func:`dfn_jax.ops.dynamic_convolution` for whole
        predicted kernels. ``"reference"`` (tap-wise batched matrix products) by default: on
        this repository's CPU its backward pass was about 70x faster than the grouped
        convolution's (``"fast"``) at batch 32, 14x14, 32 -> 32 channels.
    """

    image_size: int = 28
    channels: tuple[int, ...] = (32, 32, 64, 64)
    kernel_size: int = 3
    embedding_dim: int = 64
    learnet_channels: tuple[int, ...] = (16, 16, 32, 32)
    learnet_features: int = 64
    learnet_input: str = "image"
    score: str = "linear"
    exemplar_template: bool = False
    predicted_layers: tuple[int, ...] = (1,)
    rank: int | None = None
    factorized: bool = True
    predict_linear: bool = False
    linear_rank: int | None = None
    siamese_width: int | None = None
    unshared_width: int | None = None
    factorized_implementation: str = "fast"
    dynamic_convolution_implementation: str = "reference"

    def __post_init__(self):
        for name in ("image_size", "kernel_size", "embedding_dim", "learnet_features"):
            positive_int(getattr(self, name), name=name, expected="a positive int")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"`kernel_size` must be odd, got {self.kernel_size}.")
        for name in ("channels", "learnet_channels"):
            value = _int_tuple(getattr(self, name), name)
            if not value or min(value) <= 0:
                raise ValueError(
                    f"`{name}` must be a non-empty sequence of positive ints, got "
                    f"{getattr(self, name)!r}."
                )
            if self.image_size < 2 ** len(value):
                raise ValueError(
                    f"`image_size` {self.image_size} is too small for {len(value)} 2x2 max-pools "
                    f"(`{name}` = {value}): it must be at least {2 ** len(value)}."
                )
            object.__setattr__(self, name, value)
        layers = _int_tuple(self.predicted_layers, "predicted_layers")
        if len(set(layers)) != len(layers) or any(not 0 <= i < len(self.channels) for i in layers):
            raise ValueError(
                f"`predicted_layers` must be distinct indices in 0..{len(self.channels) - 1} "
                f"(one per entry of `channels`), got {self.predicted_layers!r}."
            )
        object.__setattr__(self, "predicted_layers", tuple(sorted(layers)))
        for name in ("rank", "linear_rank", "siamese_width", "unshared_width"):
            if getattr(self, name) is not None:
                positive_int(getattr(self, name), name=name, expected="a positive int or None")
        for name in ("factorized", "predict_linear", "exemplar_template"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be True or False, got {getattr(self, name)!r}.")
        choice(self.learnet_input, LEARNET_INPUTS, name="learnet_input")
        choice(self.score, SCORES, name="score")
        if self.learnet_input == "pupil" and layers and min(layers) == 0:
            raise ValueError(
                '`learnet_input="pupil"` reads the pupil\'s blocks before the first predicted '
                f"one, and `predicted_layers` {self.predicted_layers!r} predicts the first: "
                "predict a later layer or read the image."
            )
        if self.exemplar_template and not (
            self.learnet_input == "pupil" and self.factorized and layers
        ):
            raise ValueError(
                "`exemplar_template=True` adds the exemplar's features to the predicted filters "
                'of the first predicted convolution: it needs `learnet_input="pupil"`, '
                f"`factorized=True` and a predicted convolution, got learnet_input="
                f"{self.learnet_input!r}, factorized={self.factorized}, predicted_layers="
                f"{self.predicted_layers!r}."
            )
        if self.exemplar_template:
            size = self.image_size // 2 ** min(layers)
            if size < self.kernel_size:
                raise ValueError(
                    f"`exemplar_template=True` needs the exemplar's features at the first "
                    f"predicted layer ({size}x{size} for image_size {self.image_size} and "
                    f"predicted_layers {self.predicted_layers!r}) to be at least kernel_size "
                    f"{self.kernel_size} wide."
                )
        choice(
            self.factorized_implementation,
            FACTORIZED_IMPLEMENTATIONS,
            name="factorized_implementation",
        )
        choice(
            self.dynamic_convolution_implementation,
            DYNAMIC_CONVOLUTION_IMPLEMENTATIONS,
            name="dynamic_convolution_implementation",
        )


def _int_tuple(value, name: str) -> tuple[int, ...]:
    try:
        items = tuple(value)
    except TypeError:
        items = None
    if items is None or isinstance(value, str) or not all(is_int(v) for v in items):
        raise ValueError(f"`{name}` must be a sequence of ints, got {value!r}.")
    return tuple(int(v) for v in items)


def scaled_channels(channels: Sequence[int], width: int) -> tuple[int, ...]:
    """``channels`` rescaled so that the first is ``width``, the others keeping their ratios
    (rounded, at least 1): ``scaled_channels((32, 32, 64, 64), 39) == (39, 39, 78, 78)``."""
    width = positive_int(width, name="width", expected="a positive int")
    return tuple(max(1, round(c * width / channels[0])) for c in channels)


def _images(x, name: str, size: int) -> jax.Array:
    """``[B, S, S]`` or ``[B, S, S, 1]`` floating images as ``[B, S, S, 1]``."""
    x = floating_array(x, name=name)
    images = x[..., None] if x.ndim == 3 else x
    if images.ndim != 4 or images.shape[1:] != (size, size, 1):
        raise ValueError(
            f"`{name}` must have shape [B, {size}, {size}] or [B, {size}, {size}, 1], got "
            f"{tuple(x.shape)}."
        )
    return images


def _block(h: jax.Array) -> jax.Array:
    return nnx.max_pool(jax.nn.relu(h), (2, 2), strides=(2, 2))


class PredictedConv(nnx.Module):
    """A convolution whose whole kernel ``[B, kh, kw, Cin, Cout]`` is predicted per example
    (:func:`dfn_jax.ops.dynamic_convolution`, SAME padding), plus a learned bias ``[Cout]``."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int, implementation: str):
        self.predicted_shape = (kernel_size, kernel_size, in_features, out_features)
        self.implementation = implementation
        self.bias = nnx.Param(jnp.zeros((out_features,)))

    def __call__(self, x: jax.Array, kernels: jax.Array) -> jax.Array:
        y = ops.dynamic_convolution(x, kernels, implementation=self.implementation)
        return y + self.bias[...].reshape(1, 1, 1, -1)


class PredictedLinear(nnx.Module):
    """A linear layer whose whole matrix ``[B, Din, Dout]`` is predicted per example, plus a
    learned bias ``[Dout]``."""

    def __init__(self, in_features: int, out_features: int):
        self.predicted_shape = (in_features, out_features)
        self.bias = nnx.Param(jnp.zeros((out_features,)))

    def __call__(self, x: jax.Array, matrices: jax.Array) -> jax.Array:
        return jnp.einsum("bi,bio->bo", x, matrices, precision="highest") + self.bias[...][None]


class Pupil(nnx.Module):
    """Convolution blocks and a linear embedding, ``[B, S, S, 1] -> [B, D]``, some of whose layers
    take per-example parameters (module docstring).

    Args:
      config: the family's config (image size, kernel size, factorisation, ranks,
        implementations).
      channels: widths of the convolution blocks.
      embedding_dim: ``D``.
      predicted_layers: indices into ``channels`` of the predicted convolutions.
      predict_linear: whether the embedding is predicted too.
      rngs: for the initialisation.
    """

    def __init__(
        self,
        config: LearnetConfig,
        *,
        channels: Sequence[int],
        embedding_dim: int,
        predicted_layers: Sequence[int] = (),
        predict_linear: bool = False,
        rngs: nnx.Rngs,
    ):
        self.image_size = config.image_size
        self.predicted_layers = tuple(sorted(predicted_layers))
        self.predict_linear = bool(predict_linear)
        k = config.kernel_size
        convs, n_in = [], 1
        for index, n_out in enumerate(channels):
            if index not in self.predicted_layers:
                layer = Conv(n_in, n_out, (k, k), kernel_init=_HE_NORMAL, rngs=rngs)
            elif config.factorized:
                layer = FactorizedConv(
                    n_in,
                    n_out,
                    config.rank or n_out,
                    k,
                    implementation=config.factorized_implementation,
                    rngs=rngs,
                )
            else:
                layer = PredictedConv(n_in, n_out, k, config.dynamic_convolution_implementation)
            convs.append(layer)
            n_in = n_out
        self.convs = nnx.List(convs)
        flat = (config.image_size // 2 ** len(channels)) ** 2 * n_in
        if not predict_linear:
            self.embed = nnx.Linear(flat, embedding_dim, rngs=rngs)
        elif config.factorized:
            rank = config.linear_rank or embedding_dim
            self.embed = FactorizedLinear(flat, embedding_dim, rank, rngs=rngs)
        else:
            self.embed = PredictedLinear(flat, embedding_dim)
        self._first = self.predicted_layers[0] if self.predicted_layers else len(channels)

    @property
    def predicted_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Per-example shapes of the predicted parameters, in the order :meth:`__call__` takes
        them: the predicted convolutions by index, then the embedding."""
        shapes = [self.convs[i].predicted_shape for i in self.predicted_layers]
        if self.predict_linear:
            shapes.append(self.embed.predicted_shape)
        return tuple(shapes)

    def prefix(self, images: jax.Array) -> jax.Array:
        """The blocks before the first predicted one (they do not depend on the exemplar)."""
        h = images
        for index in range(self._first):
            h = _block(self.convs[index](h))
        return h

    def from_prefix(self, h: jax.Array, predicted: Sequence[jax.Array] = ()) -> jax.Array:
        """The remaining blocks and the embedding on :meth:`prefix`'s output -> ``[B, D]``."""
        shapes = self.predicted_shapes
        if len(predicted) != len(shapes):
            raise ValueError(
                f"`predicted` must hold {len(shapes)} arrays of per-example shapes {shapes}, got "
                f"{len(predicted)}."
            )
        predicted = iter(predicted)
        for index in range(self._first, len(self.convs)):
            layer = self.convs[index]
            h = layer(h, next(predicted)) if index in self.predicted_layers else layer(h)
            h = _block(h)
        h = h.reshape(h.shape[0], -1)
        return self.embed(h, next(predicted)) if self.predict_linear else self.embed(h)

    def __call__(self, images: jax.Array, predicted: Sequence[jax.Array] = ()) -> jax.Array:
        """``images [B, S, S, 1]`` and the predicted parameters (``[B, *shape]`` for each of
        :attr:`predicted_shapes`) -> ``[B, D]``."""
        return self.from_prefix(self.prefix(images), predicted)


class _Target(NamedTuple):
    """A predicted parameter: its per-example shape and the mean and standard deviation its
    values should have at initialisation."""

    shape: tuple[int, ...]
    mean: float
    std: float


def _targets(pupil: Pupil, config: LearnetConfig) -> tuple[_Target, ...]:
    """He's scale ``sqrt(2 / fan_in)`` for predicted kernels (the fan-in of a factorised
    convolution's depthwise filter is ``kh*kw``), ``1 +- 0.5`` for a factorised diagonal."""
    targets = []
    for shape in pupil.predicted_shapes:
        if len(shape) == 1:  # the diagonal w(z) of a factorised linear layer
            targets.append(_Target(shape, 1.0, 0.5))
        elif len(shape) == 2:  # a whole linear matrix [Din, Dout]
            targets.append(_Target(shape, 0.0, math.sqrt(1.0 / shape[0])))
        else:  # [kh, kw, R] depthwise filters or a whole [kh, kw, Cin, Cout] kernel
            fan_in = math.prod(shape[:-1]) if len(shape) == 4 else math.prod(shape[:2])
            targets.append(_Target(shape, 0.0, math.sqrt(2.0 / fan_in)))
    return tuple(targets)


class Learnet(nnx.Module):
    """The parameter predictor: exemplar ``[B, S, S, 1]`` -> one ``[B, *shape]`` array per
    target.

    A :class:`Pupil`-style convnet (``config.learnet_channels``, embedding
    ``config.learnet_features``, ReLU), then one linear head per target. Each head starts with
    half the target variance in its bias (a shared, exemplar-independent part) and half from the
    features (weights ``N(0, std^2 / (2 F))``), so the pupil starts near He's scale. With
    ``input_features`` (``learnet_input="pupil"``) it reads flattened features ``[B, ...]`` of
    that size instead of images, through one linear layer in place of the convnet.
    """

    def __init__(
        self,
        config: LearnetConfig,
        targets: Sequence[_Target],
        *,
        input_features: int | None = None,
        rngs: nnx.Rngs,
    ):
        features = config.learnet_features
        if input_features is None:
            self.trunk = Pupil(
                config, channels=config.learnet_channels, embedding_dim=features, rngs=rngs
            )
        else:
            self.trunk = nnx.Linear(input_features, features, rngs=rngs)
        self.reads_features = input_features is not None
        heads = []
        for target in targets:
            size = math.prod(target.shape)
            std, mean = target.std / math.sqrt(2.0), target.mean
            heads.append(
                nnx.Linear(
                    features,
                    size,
                    kernel_init=jax.nn.initializers.normal(std / math.sqrt(features)),
                    bias_init=lambda key, shape, dtype, s=std, m=mean: (
                        m + s * jax.random.normal(key, shape, dtype)
                    ),
                    rngs=rngs,
                )
            )
        self.heads = nnx.List(heads)
        self.shapes = tuple(tuple(t.shape) for t in targets)

    def __call__(self, exemplars: jax.Array) -> tuple[jax.Array, ...]:
        """Images ``[B, S, S, 1]`` (or, reading features, ``[B, ...]``) -> the targets."""
        if self.reads_features:
            exemplars = exemplars.reshape(exemplars.shape[0], -1)
        e = jax.nn.relu(self.trunk(exemplars))
        return tuple(
            head(e).reshape(e.shape[0], *shape)
            for head, shape in zip(self.heads, self.shapes, strict=True)
        )


class WeightedL1(nnx.Module):
    """``s(u, v) = b - sum_i a_i |u_i - v_i|`` over the last axis; ``a [D]`` starts at ``1/D``,
    ``b`` at 0."""

    def __init__(self, dim: int):
        self.weights = nnx.Param(jnp.full((dim,), 1.0 / dim))
        self.bias = nnx.Param(jnp.zeros(()))

    def __call__(self, u: jax.Array, v: jax.Array) -> jax.Array:
        return self.bias[...] - jnp.einsum("...d,d->...", jnp.abs(u - v), self.weights[...])


class _PairScorer(nnx.Module):
    """Input checks shared by the variants; subclasses define ``_score`` and ``_score_matrix``
    on ``[B, S, S, 1]`` images."""

    config: LearnetConfig

    def __call__(self, query: jax.Array, exemplar: jax.Array) -> jax.Array:
        """Scores each query against its exemplar.

        Args:
          query: ``[B, S, S]`` or ``[B, S, S, 1]`` floating images (ink 1).
          exemplar: the same shape, the one-shot exemplars.

        Returns:
          ``[B]`` scores (logits), higher for the same class.
        """
        size = self.config.image_size
        q, z = _images(query, "query", size), _images(exemplar, "exemplar", size)
        if q.shape[0] != z.shape[0]:
            raise ValueError(
                f"`query` and `exemplar` must have the same batch size B, got {q.shape[0]} and "
                f"{z.shape[0]}."
            )
        return self._score(q, z)

    def score_matrix(self, queries: jax.Array, exemplars: jax.Array) -> jax.Array:
        """Scores every query against every exemplar of an episode.

        Args:
          queries: ``[Q, S, S]`` or ``[Q, S, S, 1]``.
          exemplars: ``[N, S, S]`` or ``[N, S, S, 1]`` (e.g. one per class of an N-way task).

        Returns:
          ``[Q, N]``: entry ``(q, n)`` equals ``model(queries[q:q+1], exemplars[n:n+1])``;
          ``argmax`` over ``N`` classifies the queries.
        """
        size = self.config.image_size
        q, z = _images(queries, "queries", size), _images(exemplars, "exemplars", size)
        return self._score_matrix(q, z)


def _repeat_rows(x: jax.Array, n: int) -> jax.Array:
    """``[Q, ...] -> [Q*n, ...]``, row ``q*n + k`` is ``x[q]``."""
    return jnp.repeat(x, n, axis=0)


def _tile_rows(x: jax.Array, q: int) -> jax.Array:
    """``[N, ...] -> [q*N, ...]``, row ``i*N + n`` is ``x[n]``."""
    return jnp.tile(x, (q,) + (1,) * (x.ndim - 1))


class Siamese(_PairScorer):
    """Shared-weights siamese network: ``s(x, z) = WeightedL1(phi(x), phi(z))``, ``phi`` a
    :class:`Pupil` of width ``config.siamese_width`` (``None``: matched to the learnet's
    parameter count, :func:`matched_siamese_width`)."""

    def __init__(self, config: LearnetConfig = LearnetConfig(), *, rngs: nnx.Rngs):
        self.config = config
        self.width = config.siamese_width or matched_siamese_width(config, "siamese")
        self.embedding = Pupil(
            config,
            channels=scaled_channels(config.channels, self.width),
            embedding_dim=config.embedding_dim,
            rngs=rngs,
        )
        self.distance = WeightedL1(config.embedding_dim)

    def _score(self, q, z):
        e = self.embedding(jnp.concatenate([q, z]))
        return self.distance(e[: q.shape[0]], e[q.shape[0] :])

    def _score_matrix(self, q, z):
        eq, ez = self.embedding(q), self.embedding(z)
        return self.distance(eq[:, None], ez[None])


class SiameseUnshared(_PairScorer):
    """Siamese network with separate weights for the query and the exemplar stream (each a
    :class:`Pupil` of width ``config.unshared_width``, ``None``: matched to the learnet's
    parameter count), the same weighted L1 score."""

    def __init__(self, config: LearnetConfig = LearnetConfig(), *, rngs: nnx.Rngs):
        self.config = config
        self.width = config.unshared_width or matched_siamese_width(config, "siamese_unshared")
        channels = scaled_channels(config.channels, self.width)
        d = config.embedding_dim
        self.query_embedding = Pupil(config, channels=channels, embedding_dim=d, rngs=rngs)
        self.exemplar_embedding = Pupil(config, channels=channels, embedding_dim=d, rngs=rngs)
        self.distance = WeightedL1(d)

    def _score(self, q, z):
        return self.distance(self.query_embedding(q), self.exemplar_embedding(z))

    def _score_matrix(self, q, z):
        eq, ez = self.query_embedding(q), self.exemplar_embedding(z)
        return self.distance(eq[:, None], ez[None])


class _LearnetBase(_PairScorer):
    def __init__(
        self, config: LearnetConfig, *, extra_targets: Sequence[_Target] = (), rngs: nnx.Rngs
    ):
        if not config.predicted_layers and not config.predict_linear:
            raise ValueError(
                "A learnet must predict something: set `predicted_layers` (indices into "
                "`channels`) or `predict_linear=True`."
            )
        self.config = config
        self.pupil = Pupil(
            config,
            channels=config.channels,
            embedding_dim=config.embedding_dim,
            predicted_layers=config.predicted_layers,
            predict_linear=config.predict_linear,
            rngs=rngs,
        )
        reads = None
        if config.learnet_input == "pupil":
            prefix = jax.eval_shape(
                self.pupil.prefix, jax.ShapeDtypeStruct((1, *(config.image_size,) * 2, 1), "f4")
            )
            reads = math.prod(prefix.shape[1:])
        targets = _targets(self.pupil, config) + tuple(extra_targets)
        self.learnet = Learnet(config, targets, input_features=reads, rngs=rngs)
        if config.exemplar_template:  # on the scale of the heads' share, std / sqrt(2)
            layer = self.pupil.convs[config.predicted_layers[0]]
            self.template_scale = nnx.Param(
                jnp.full((layer.rank,), 1.0 / config.kernel_size, jnp.float32)
            )

    def predict_parameters(self, exemplar: jax.Array) -> tuple[jax.Array, ...]:
        """The learnet's output for ``exemplar [B, S, S(, 1)]``: one ``[B, *shape]`` array per
        entry of ``self.pupil.predicted_shapes`` (then, with ``score="l1"``, the centre
        ``t(z) [B, D]``)."""
        return self._predict(_images(exemplar, "exemplar", self.config.image_size))

    def _predict(self, z: jax.Array, prefix: jax.Array | None = None) -> tuple[jax.Array, ...]:
        """The learnet on ``z``; reading the pupil, on ``prefix`` (``self.pupil.prefix(z)``,
        computed here unless the caller has it)."""
        if self.config.learnet_input != "pupil":
            return self.learnet(z)
        prefix = self.pupil.prefix(z) if prefix is None else prefix
        predicted = self.learnet(prefix)
        if self.config.exemplar_template:
            predicted = (predicted[0] + self._template(prefix), *predicted[1:])
        return predicted

    def _template(self, prefix: jax.Array) -> jax.Array:
        """The exemplar's features ``prefix [B, H, W, Cin]`` through the first predicted
        layer's input projection, centre ``k x k`` crop, scaled per channel: ``[B, k, k, R]``."""
        layer = self.pupil.convs[self.config.predicted_layers[0]]
        k, (h, w) = self.config.kernel_size, prefix.shape[1:3]
        top, left = (h - k) // 2, (w - k) // 2
        crop = prefix[:, top : top + k, left : left + k]
        projected = jnp.einsum("bhwc,cr->bhwr", crop, layer.proj_in[...], precision="highest")
        return projected * self.template_scale[...].reshape(1, 1, 1, -1)


class SingleStreamLearnet(_LearnetBase):
    """The single-stream learnet: the learnet reads the exemplar ``z`` and predicts the pupil's
    ``config.predicted_layers`` (and, with ``predict_linear``, its embedding); the pupil
    processes the query ``x`` alone, ``s(x, z) = v . ReLU(phi_{L(z)}(x)) + c``, or with
    ``config.score="l1"`` ``s(x, z) = b - sum_i a_i |phi_{L(z)}(x)_i - t(z)_i|``, the centre
    ``t(z)`` predicted by the learnet too."""

    def __init__(self, config: LearnetConfig = LearnetConfig(), *, rngs: nnx.Rngs):
        d = config.embedding_dim
        if config.score == "l1":  # the centre t(z): on the embedding's scale at initialisation
            super().__init__(config, extra_targets=(_Target((d,), 0.0, 1.0),), rngs=rngs)
            self.distance = WeightedL1(d)
        else:
            super().__init__(config, rngs=rngs)
            self.head = nnx.Linear(d, 1, rngs=rngs)

    def _split(self, predicted):
        """The pupil's predicted parameters and the centre (``None`` with the linear score)."""
        if self.config.score == "l1":
            return predicted[:-1], predicted[-1]
        return predicted, None

    def _scores(self, embeddings, centres):
        if centres is None:
            return self.head(jax.nn.relu(embeddings))[..., 0]
        return self.distance(embeddings, centres)

    def _score(self, q, z):
        predicted, centres = self._split(self._predict(z))
        return self._scores(self.pupil(q, predicted), centres)

    def _score_matrix(self, q, z):
        n, num_q = z.shape[0], q.shape[0]
        predicted, centres = self._split(self._predict(z))
        predicted = tuple(_tile_rows(p, num_q) for p in predicted)
        h = _repeat_rows(self.pupil.prefix(q), n)
        e = self.pupil.from_prefix(h, predicted).reshape(num_q, n, -1)
        return self._scores(e, None if centres is None else centres[None])


class SiameseLearnet(_LearnetBase):
    """The siamese learnet: the learnet reads the exemplar ``z`` and predicts parameters of the
    embedding applied to both images, ``s(x, z) = WeightedL1(phi_{L(z)}(x), phi_{L(z)}(z))``."""

    def __init__(self, config: LearnetConfig = LearnetConfig(), *, rngs: nnx.Rngs):
        super().__init__(config, rngs=rngs)
        self.distance = WeightedL1(config.embedding_dim)

    def _score(self, q, z):
        b = q.shape[0]
        h = self.pupil.prefix(jnp.concatenate([q, z]))  # the exemplars' prefix computed once
        predicted = tuple(jnp.concatenate([p, p]) for p in self._predict(z, h[b:]))
        e = self.pupil.from_prefix(h, predicted)
        return self.distance(e[:b], e[b:])

    def _score_matrix(self, q, z):
        n, num_q = z.shape[0], q.shape[0]
        hz = self.pupil.prefix(z)
        predicted = self._predict(z, hz)
        ez = self.pupil.from_prefix(hz, predicted)  # [N, D]
        h = _repeat_rows(self.pupil.prefix(q), n)
        eq = self.pupil.from_prefix(h, tuple(_tile_rows(p, num_q) for p in predicted))
        return self.distance(eq.reshape(num_q, n, -1), ez[None])


def learnet_model(
    variant: str, config: LearnetConfig = LearnetConfig(), *, rngs: nnx.Rngs
) -> _PairScorer:
    """One model of the family: ``"siamese"``, ``"siamese_unshared"``, ``"learnet"``,
    ``"siamese_learnet"`` or ``"learnet_unfactorised"`` (the single-stream learnet with
    ``factorized=False``). Each maps ``(query, exemplar)`` to scores ``[B]``."""
    choice(variant, VARIANTS, name="variant")
    if not isinstance(config, LearnetConfig):
        raise ValueError(f"`config` must be a LearnetConfig, got {type(config).__name__}.")
    if variant == "siamese":
        return Siamese(config, rngs=rngs)
    if variant == "siamese_unshared":
        return SiameseUnshared(config, rngs=rngs)
    if variant == "siamese_learnet":
        return SiameseLearnet(config, rngs=rngs)
    if variant == "learnet_unfactorised":
        config = dataclasses.replace(config, factorized=False)
    return SingleStreamLearnet(config, rngs=rngs)


@functools.lru_cache(maxsize=128)
def learnet_param_count(variant: str, config: LearnetConfig = LearnetConfig()) -> int:
    """Trainable parameters of ``learnet_model(variant, config)``, from shapes only (nothing is
    initialised); :func:`dfn_jax.models.count_params` counts those of a built model."""
    return count_params(nnx.eval_shape(lambda: learnet_model(variant, config, rngs=nnx.Rngs(0))))


def matched_siamese_width(
    config: LearnetConfig = LearnetConfig(),
    variant: str = "siamese",
    *,
    target: int | None = None,
) -> int:
    """The first-block width of a siamese baseline whose parameter count is closest to
    ``target``.

    The baseline's widths are ``scaled_channels(config.channels, width)`` (its embedding size and
    everything else as in ``config``); the count grows with the width, so a bisection finds the
    width. Consecutive widths differ by about ``2 / width`` of the count, so the match is within
    a few percent for widths above about 20.

    Args:
      config: the family's config.
      variant: ``"siamese"`` or ``"siamese_unshared"``.
      target: the parameter count to match; ``None``: that of ``learnet_model("learnet",
        config)``.
    """
    choice(variant, ("siamese", "siamese_unshared"), name="variant")
    if target is None:
        target = learnet_param_count("learnet", config)
    target = positive_int(target, name="target", expected="a positive int")
    field = "siamese_width" if variant == "siamese" else "unshared_width"

    def count(width):
        return learnet_param_count(variant, dataclasses.replace(config, **{field: width}))

    low, high = 1, 2
    while count(high) < target:
        low, high = high, high * 2
    while high - low > 1:  # count(low) < target <= count(high), or low == 1
        middle = (low + high) // 2
        if count(middle) < target:
            low = middle
        else:
            high = middle
    return min((low, high), key=lambda w: (abs(count(w) - target), w))
