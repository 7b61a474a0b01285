"""Building blocks shared by the DFN models (video, highway, stereo; steerable: the filter-size
check).

Nearest-neighbour upsampling, the encoder and decoder passes, the filter-generating
encoder-decoder with untied biases, and the argument checks those models share. Private to
:mod:`dfn_jax.models`; ``FilterGenerator`` and ``UntiedBiasConv`` are re-exported there.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from dfn_jax._src import checks as _checks
from dfn_jax._src.checks import FILTER_IMPLEMENTATIONS
from dfn_jax.layers import AdditiveConvRNNCell, DynamicLocalFilter
from dfn_jax.layers.conv import Conv

BASELINE_OUTPUTS = ("identity", "sigmoid")


def upsample_nearest_2x(x: jax.Array) -> jax.Array:
    """``[B, h, w, C] -> [B, 2h, 2w, C]`` by repeating every pixel into a 2x2 block."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _leaky(x: jax.Array, slope: float) -> jax.Array:
    return jax.nn.leaky_relu(x, negative_slope=slope)


def run_encoder(layers: Sequence[Any], x: jax.Array, slope: float) -> jax.Array:
    """The encoder convs ``layers`` in turn, each followed by a leaky ReLU."""
    for layer in layers:
        x = _leaky(layer(x), slope)
    return x


def run_decoder(layers: Sequence[Any], head: Any, h: jax.Array, slope: float) -> jax.Array:
    """The decoder convs ``layers`` (a nearest x2 upsampling before the ``len // 2``-th) and the 1x1
    ``head``, each followed by a leaky ReLU."""
    upsample_at = len(layers) // 2
    for i, layer in enumerate(layers):
        if i == upsample_at:
            h = upsample_nearest_2x(h)
        h = _leaky(layer(h), slope)
    return _leaky(head(h), slope)


class UntiedBiasConv(nnx.Module):
    """A convolution with one bias per output channel *and* output pixel (Lasagne's
    ``untie_biases=True``): ``y[b, i, j, f] = conv(x)[b, i, j, f] + bias[i, j, f]``.

    The output size is fixed at construction (``out_size``), so the layer only accepts inputs of
    the matching size. Parameters: ``kh*kw*Cin*F + out_h*out_w*F``.

    Args:
      in_features: ``Cin``.
      out_features: ``F``.
      kernel_size: ``(kh, kw)``.
      out_size: ``(out_h, out_w)``, the spatial size of the output.
      strides, padding: as for :class:`flax.nnx.Conv`.
      kernel_init, dtype, param_dtype, rngs: as for :class:`flax.nnx.Conv`; the biases start at 0.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: Sequence[int],
        *,
        out_size: tuple[int, int],
        strides: int = 1,
        padding: Any = "SAME",
        kernel_init: Any = None,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        extra = {} if kernel_init is None else {"kernel_init": kernel_init}
        self.conv = Conv(
            in_features,
            out_features,
            tuple(kernel_size),
            strides=strides,
            padding=padding,
            use_bias=False,
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
            **extra,
        )
        self.out_size = (int(out_size[0]), int(out_size[1]))
        self.bias = nnx.Param(jnp.zeros((*self.out_size, out_features), param_dtype))
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x [B, H, W, Cin] -> [B, out_h, out_w, F]``."""
        y = self.conv(x)
        if tuple(y.shape[1:3]) != self.out_size:
            raise ValueError(
                f"untied-bias convolution: the input {tuple(x.shape)} gives an output of spatial "
                f"size {tuple(y.shape[1:3])}, but its biases were made for {self.out_size} (set "
                f"the model's `image_size` to the frame size)."
            )
        bias = self.bias[...]
        if self.dtype is not None:
            bias = bias.astype(self.dtype)
        return y + bias[None]


class FilterGenerator(nnx.Module):
    """The DFN papers' convolutional filter-generating network (video and stereo variants).

    ``encoder`` (3x3 convs, the second with stride 2) > optional additive conv-RNN
    (``h_t = e_t + conv(conv(h_{t-1}))``) > ``decoder`` (3x3 convs; the first ``len // 2`` at half
    resolution, then a nearest x2 upsampling, then the rest) > 1x1 conv ``head_features`` > 1x1
    linear conv to ``out_features`` (the filter parameters). Every conv but the last is followed by
    a leaky ReLU. One encoder conv (``untied_bias_layer``) may have untied biases, which fixes the
    input size to ``image_size``.

    Args:
      in_features: input channels.
      out_features: channels of the linear output (e.g. ``k*k + 1`` filter parameters).
      encoder_features, decoder_features, head_features: widths.
      recurrent: whether an :class:`~dfn_jax.layers.AdditiveConvRNNCell` of
        ``encoder_features[-1]`` channels sits between encoder and decoder.
      untied_bias_layer: index of the encoder conv with untied biases, or ``None``.
      image_size: ``(H, W)`` of the input (needed only with untied biases).
      leaky_relu_slope, init_scale, dtype, param_dtype: as in :class:`HighwayDFNConfig`.
      rngs: ``nnx.Rngs``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        encoder_features: Sequence[int],
        decoder_features: Sequence[int],
        head_features: int,
        recurrent: bool,
        untied_bias_layer: int | None,
        image_size: tuple[int, int],
        leaky_relu_slope: float = 0.01,
        init_scale: float = 1.0,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.leaky_relu_slope = leaky_relu_slope
        self.dtype = dtype
        kernel_init = nnx.initializers.variance_scaling(init_scale, "fan_in", "uniform")
        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        pad = ((1, 1), (1, 1))  # Lasagne 'same': one pixel on every side, also at stride 2.

        def conv(cin, cout, size, stride=1, padding=pad):
            return Conv(
                cin,
                cout,
                size,
                strides=stride,
                padding=padding,
                kernel_init=kernel_init,
                bias_init=nnx.initializers.zeros_init(),
                **common,
            )

        h, w = image_size
        layers = []
        widths = (in_features, *encoder_features)
        for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            stride = 2 if i == 1 else 1
            if i == untied_bias_layer:
                out_size = (h, w) if i == 0 else (h // 2, w // 2)
                layers.append(
                    UntiedBiasConv(
                        cin,
                        cout,
                        (3, 3),
                        out_size=out_size,
                        strides=stride,
                        padding=pad,
                        kernel_init=kernel_init,
                        **common,
                    )
                )
            else:
                layers.append(conv(cin, cout, (3, 3), stride))
        self.encoder = nnx.List(layers)
        self.recurrence = (
            AdditiveConvRNNCell(
                encoder_features[-1],
                negative_slope=leaky_relu_slope,
                kernel_init=kernel_init,
                **common,
            )
            if recurrent
            else None
        )
        widths = (encoder_features[-1], *decoder_features)
        self.decoder = nnx.List(
            [conv(cin, cout, (3, 3)) for cin, cout in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.head = conv(widths[-1], head_features, (1, 1), padding="VALID")
        self.output = conv(head_features, out_features, (1, 1), padding="VALID")

    def encode(self, x: jax.Array) -> jax.Array:
        """``[B, H, W, in_features] -> e [B, H/2, W/2, encoder_features[-1]]``."""
        return run_encoder(self.encoder, x.astype(self.dtype), self.leaky_relu_slope)

    def decode(self, h: jax.Array) -> jax.Array:
        """``[B, H/2, W/2, F] -> [B, H, W, out_features]`` (linear output)."""
        return self.output(run_decoder(self.decoder, self.head, h, self.leaky_relu_slope))

    def __call__(self, x: jax.Array) -> jax.Array:
        """Feed-forward use (no recurrence): ``decode(encode(x))``."""
        if self.recurrence is not None:
            raise ValueError("a recurrent FilterGenerator is driven by encode/recurrence/decode.")
        return self.decode(self.encode(x))


def filter_generator(
    config: Any, in_features: int, out_features: int, *, recurrent: bool, rngs: nnx.Rngs
) -> FilterGenerator:
    """The :class:`FilterGenerator` a highway or stereo model config describes."""
    return FilterGenerator(
        in_features,
        out_features,
        encoder_features=config.encoder_features,
        decoder_features=config.decoder_features,
        head_features=config.head_features,
        recurrent=recurrent,
        untied_bias_layer=config.untied_bias_layer,
        image_size=(config.image_size, config.image_size),
        leaky_relu_slope=config.leaky_relu_slope,
        init_scale=config.init_scale,
        dtype=config.dtype,
        param_dtype=config.param_dtype,
        rngs=rngs,
    )


_is_int = _checks.is_int
# The models' wording of the shared check: "`x` must be a positive int, got 0."
_positive_int = functools.partial(_checks.positive_int, expected="a positive int")


def _check_filter_size(value: Any, *, why: str = "") -> None:
    """Checks that ``filter_size`` is a positive odd int; ``why`` goes into the message."""
    if not _is_int(value) or value <= 0 or value % 2 == 0:
        raise ValueError(f"`filter_size` must be a positive odd int{why}, got {value!r}.")


def _check_feature_widths(cfg: Any, *, min_encoder: int = 2) -> None:
    """Validates ``encoder_features``/``decoder_features`` and normalises them to int tuples."""
    for name in ("encoder_features", "decoder_features"):
        value = getattr(cfg, name)
        try:
            value = tuple(value)
        except TypeError:
            raise ValueError(
                f"`{name}` must be a sequence of positive ints, got {value!r}."
            ) from None
        for i, width in enumerate(value):
            _positive_int(width, name=f"{name}[{i}]")
        object.__setattr__(cfg, name, tuple(int(v) for v in value))
    if len(cfg.decoder_features) < 1:
        raise ValueError(f"`decoder_features` needs at least 1 conv, got {cfg.decoder_features!r}.")
    if len(cfg.encoder_features) < min_encoder:
        raise ValueError(
            f"`encoder_features` needs at least {min_encoder} convs (the second has stride 2), got "
            f"{cfg.encoder_features!r}."
        )


def _check_generator_fields(cfg: Any, *, min_encoder: int = 2) -> None:
    """Validates and normalises the generator fields that the highway and stereo configs share."""
    _check_feature_widths(cfg, min_encoder=min_encoder)
    for name in ("head_features", "channels", "image_size"):
        _positive_int(getattr(cfg, name), name=name)
    if cfg.image_size % 2:
        raise ValueError(
            f"`image_size` must be even (the encoder halves it, the decoder doubles it back), "
            f"got {cfg.image_size!r}."
        )
    layer = cfg.untied_bias_layer
    if layer is not None and (not _is_int(layer) or not 0 <= layer < len(cfg.encoder_features)):
        raise ValueError(
            f"`untied_bias_layer` must be None or an encoder conv index in "
            f"[0, {len(cfg.encoder_features)}), got {layer!r}."
        )
    check_output_fields(cfg)


def check_output_fields(cfg: Any) -> None:
    """Checks the fields every DFN model config shares (output head, init, dtypes); converts
    ``dtype`` and ``param_dtype`` to ``jnp.dtype`` in place on the frozen dataclass."""
    _checks.choice(cfg.baseline_output, BASELINE_OUTPUTS, name="baseline_output")
    _checks.choice(cfg.filter_implementation, FILTER_IMPLEMENTATIONS, name="filter_implementation")
    if not cfg.init_scale > 0:
        raise ValueError(f"`init_scale` must be positive, got {cfg.init_scale!r}.")
    for name in ("dtype", "param_dtype"):
        value = getattr(cfg, name)
        try:
            dtype = jnp.dtype(value)
        except TypeError:
            raise ValueError(f"`{name}` must be a floating dtype, got {value!r}.") from None
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"`{name}` must be a floating dtype, got {value!r}.")
        object.__setattr__(cfg, name, dtype)


def dynamic_filter_or_output_conv(
    module: nnx.Module, config: Any, kernel_size: Any, num_params: int, *, rngs: nnx.Rngs
) -> None:
    """Gives ``module`` its output stage: ``module.dynamic_filter`` (softmax filters, optional
    dynamic bias) for the DFN, or ``module.output_conv`` (a linear 1x1 conv from the
    ``num_params`` head channels to the frame's channels) for the baseline."""
    if config.dynamic_filter:
        module.dynamic_filter = DynamicLocalFilter(
            kernel_size,
            normalize="softmax",
            dynamic_bias=config.dynamic_bias,
            implementation=config.filter_implementation,
        )
    else:
        module.output_conv = Conv(
            num_params,
            config.channels,
            (1, 1),
            padding="VALID",
            kernel_init=nnx.initializers.variance_scaling(config.init_scale, "fan_in", "uniform"),
            bias_init=nnx.initializers.zeros_init(),
            dtype=config.dtype,
            param_dtype=config.param_dtype,
            rngs=rngs,
        )


def apply_output_stage(
    module: nnx.Module, image: jax.Array, params: jax.Array
) -> tuple[jax.Array, jax.Array | None]:
    """Runs the stage :func:`dynamic_filter_or_output_conv` built: ``(prediction, filters)``,
    with the prediction in ``image``'s dtype; ``filters`` is ``None`` for the baseline (whose
    output goes through a sigmoid if ``config.baseline_output == "sigmoid"``)."""
    if module.config.dynamic_filter:
        prediction, filters = module.dynamic_filter(image, params)
    else:
        prediction, filters = module.output_conv(params), None
        if module.config.baseline_output == "sigmoid":
            prediction = jax.nn.sigmoid(prediction)
    return prediction.astype(image.dtype), filters


def _check_images(
    x: Any,
    name: str,
    cfg: Any,
    *,
    ndim: int,
    layout: str,
    convert: str = "images with `x / 255`",
) -> jax.Array:
    """Shape, dtype and size checks on ``[..., H, W, C]`` image arrays of a model input (the size
    check for untied biases only where ``cfg`` has an ``untied_bias_layer``); ``convert`` ends the
    dtype message: "(convert uint8 {convert})"."""
    x = jnp.asarray(x)
    if x.ndim != ndim:
        raise ValueError(f"`{name}` must have shape {layout}, got {tuple(x.shape)}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"`{name}` must be floating point with values in [0, 1], got dtype {x.dtype} "
            f"(convert uint8 {convert})."
        )
    h, w, c = x.shape[-3:]
    if c != cfg.channels:
        raise ValueError(
            f"`{name}` must have config.channels = {cfg.channels} channels in its last axis, got "
            f"shape {tuple(x.shape)}."
        )
    untied = getattr(cfg, "untied_bias_layer", None) is not None
    if untied and (h, w) != (cfg.image_size, cfg.image_size):
        raise ValueError(
            f"`{name}` must be {cfg.image_size}x{cfg.image_size} (config.image_size; the untied "
            f"biases are made for that size), got shape {tuple(x.shape)}."
        )
    if h % 2 or w % 2:
        raise ValueError(
            f"`{name}` height and width must be even (the encoder halves them and the decoder "
            f"doubles them back), got shape {tuple(x.shape)}."
        )
    return x
