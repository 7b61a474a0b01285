"""The recurrent Dynamic Filter Network for video prediction (De Brabandere et al. 2016).

At every time step the model reads one frame ``x_t [B, H, W, C]``, updates a recurrent state at
half resolution and predicts the next frame by filtering ``x_t`` with one generated ``k x k``
softmax filter per pixel::

    encoder   e_t = conv3x3 32 > conv3x3 32 /2 > conv3x3 64 > conv3x3 64 > conv3x3 128   (H/2 x W/2)
    recurrence h_t = e_t + conv3x3 128(conv3x3 128(h_{t-1})),  h_0 = 0
    decoder   conv3x3 64 > conv3x3 64 > upsample x2 (nearest) > conv3x3 64 > conv3x3 64
              > conv1x1 128 > conv1x1 k*k  (linear "filter head")
    output    softmax over the k*k taps, then dynamic local filtering of x_t  ->  x_{t+1}

Nonlinearities follow the authors' Lasagne code (github dbbert/dfn): **every** convolution except
the k*k filter head (and the baseline's output conv) is followed by a leaky ReLU of slope 0.01;
that includes the encoder's last conv (so ``e_t`` is leaky-ReLU'd), both recurrent convs and the
1x1 128-channel conv. The additive sum ``h_t`` itself has no nonlinearity. 3x3 convs pad one pixel
on every side (Lasagne's ``pad='same'``; for the stride-2 conv this centres output ``i`` on input
``2i``, unlike XLA's ``"SAME"`` which pads only the far side).

**Baseline** (``dynamic_filter=False``): the same network, but the k*k head feeds a linear 1x1
conv to ``C`` channels instead of the dynamic filtering layer. The authors' code used that linear
output directly (clipping it only inside the BCE); here it goes through a sigmoid by default
(``baseline_output="sigmoid"``) so that predictions are valid probabilities and the fed-back frames
stay in [0, 1]; ``baseline_output="identity"`` reproduces the original.

Unrolling (``num_input_frames = 10``, ``num_output_frames = 10``: 19 steps): steps 0-8 read the
true frames 0-8 and only advance the state (their predictions are discarded, so the decoder is not
even run for them); step 9 reads frame 9 and predicts frame 10; steps 10-18 read the model's own
previous prediction (closed loop), or the true frames 10-18 with ``teacher_forcing=True``. Both
phases are ``jax.lax.scan`` loops over a step that ``nnx.merge``\\ s the split model, so the traced
program does not grow with the number of frames; ``unroll`` is handed to ``lax.scan`` (on CPU,
``unroll=True`` makes the backward pass of convolutions much faster, at the cost of compile time
that grows with the number of steps).

Parameter counts at the paper's widths (64x64x1 frames, k = 9): 637,361 (DFN) and 637,443
(baseline), as in the paper.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from dfn_jax.layers import AdditiveConvRNNCell, ConvLSTMCell
from dfn_jax.layers.conv import Conv
from dfn_jax.layers.rollout import check_time_loop_fields, scan_steps
from dfn_jax.models.dfn._common import (
    _check_feature_widths,
    _check_filter_size,
    _check_images,
    _positive_int,
    apply_output_stage,
    check_output_fields,
    dynamic_filter_or_output_conv,
    run_decoder,
    run_encoder,
)

RECURRENCES = ("additive", "convlstm")


@dataclasses.dataclass(frozen=True)
class VideoDFNConfig:
    """Configuration of :class:`VideoDFN`; the defaults are the paper's Moving MNIST model.

    Attributes:
      filter_size: odd side ``k`` of the generated per-pixel filters (9 in the paper).
      dynamic_filter: ``True`` for the DFN; ``False`` for the paper's baseline (the k*k head feeds
        a 1x1 conv to ``channels`` outputs instead of the dynamic filtering layer).
      dynamic_bias: generate one more head channel, a per-pixel bias added to the frame before
        filtering (the highway-driving variant; not used for Moving MNIST).
      recurrence: ``"additive"`` (the paper) or ``"convlstm"`` (a 3x3 ConvLSTM over ``e_t``).
      encoder_features: widths of the encoder's 3x3 convs; the second one has stride 2, and the
        last one's output is ``e_t``. At least two.
      decoder_features: widths of the decoder's 3x3 convs; the first ``len // 2`` run at half
        resolution, then the features are upsampled x2 (nearest), then the rest run.
      hidden_features: channels of the recurrent state; must equal ``encoder_features[-1]`` for
        the additive recurrence.
      head_features: width of the 1x1 conv before the k*k filter head.
      num_input_frames: frames read before the first prediction (10).
      num_output_frames: frames predicted (10).
      teacher_forcing: if ``True``, steps after the first prediction read the true frames instead
        of the model's own previous predictions.
      unroll: ``jax.lax.scan``'s unroll (``1`` = rolled loop, ``True`` = fully unrolled, ``"auto"``
        = fully unrolled on CPU only; see :func:`dfn_jax.layers.rollout.resolve_unroll`).
      remat: rematerialise each recurrent step in the backward pass (``jax.checkpoint``): less
        activation memory, about one more forward pass of compute.
      channels: frame channels ``C``.
      dtype: computation dtype of the convolutions (e.g. ``"bfloat16"``); the softmax, the
        dynamic filtering and the predicted frames stay in float32.
      param_dtype: dtype of the parameters.
      leaky_relu_slope: negative slope of every leaky ReLU (0.01, Lasagne's ``leaky_rectify``).
      init_scale: He-uniform scale, kernels ~ ``variance_scaling(init_scale, "fan_in",
        "uniform")``; 2.0 is He et al. (2015); 1.0 is what Lasagne's ``HeUniform()`` (default
        gain 1) used in the authors' code.
      baseline_output: ``"sigmoid"`` or ``"identity"`` (orig. code) on the baseline's output.
      filter_implementation: ``"fast"``, ``"xla"`` or ``"reference"`` for
        :func:`dfn_jax.ops.dynamic_local_filter`.
      centre_tap_logit: initial bias of the filter head's centre tap. ``0`` (the paper's
        initialisation): the softmax filters start near uniform, a blur; ``c > 0`` starts them
        peaked at the centre (weight ``e^c / (e^c + k*k - 1)``), i.e. predicting a copy of the
        frame read, from which training only has to learn the displacement. Ignored by the
        baseline.
    """

    filter_size: int = 9
    dynamic_filter: bool = True
    dynamic_bias: bool = False
    recurrence: str = "additive"
    encoder_features: tuple[int, ...] = (32, 32, 64, 64, 128)
    decoder_features: tuple[int, ...] = (64, 64, 64, 64)
    hidden_features: int = 128
    head_features: int = 128
    num_input_frames: int = 10
    num_output_frames: int = 10
    teacher_forcing: bool = False
    unroll: int | bool | str = 1
    remat: bool = False
    channels: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    leaky_relu_slope: float = 0.01
    init_scale: float = 2.0
    baseline_output: str = "sigmoid"
    filter_implementation: str = "fast"
    centre_tap_logit: float = 0.0

    def __post_init__(self):
        _check_filter_size(self.filter_size, why=" (the filter is centred on the pixel)")
        _check_feature_widths(self)
        for name in ("hidden_features", "head_features", "num_input_frames", "channels"):
            _positive_int(getattr(self, name), name=name)
        _positive_int(self.num_output_frames, name="num_output_frames")
        if self.recurrence not in RECURRENCES:
            raise ValueError(f"`recurrence` must be one of {RECURRENCES}, got {self.recurrence!r}.")
        if self.recurrence == "additive" and self.encoder_features[-1] != self.hidden_features:
            raise ValueError(
                f"the additive recurrence h_t = e_t + conv(conv(h_{{t-1}})) needs "
                f"`encoder_features[-1]` == `hidden_features`, got {self.encoder_features[-1]} "
                f"and {self.hidden_features}."
            )
        check_time_loop_fields(self)
        check_output_fields(self)

    @property
    def num_taps(self) -> int:
        """``filter_size ** 2``."""
        return self.filter_size**2

    @property
    def num_steps(self) -> int:
        """Recurrent steps of one forward pass: ``num_input_frames + num_output_frames - 1``."""
        return self.num_input_frames + self.num_output_frames - 1

    @property
    def num_frames_needed(self) -> int:
        """Frames ``__call__`` reads: the inputs, plus the targets' inputs with teacher forcing."""
        extra = self.num_output_frames if self.teacher_forcing else 0
        return self.num_input_frames + extra


class VideoPrediction(NamedTuple):
    """Output of :class:`VideoDFN`.

    Attributes:
      frames: ``[B, num_output_frames, H, W, C]`` predicted frames. For the DFN each pixel is a
        convex combination of input pixels, so frames in [0, 1] give predictions in [0, 1]; for the
        baseline they are a sigmoid (or the raw linear output with ``baseline_output="identity"``).
      filters: ``[B, num_output_frames, H, W, k*k]`` softmax filters that produced each predicted
        frame (tap ``t = i*k + j`` reads offset ``(i - k//2, j - k//2)``); ``None`` for the
        baseline.
    """

    frames: jax.Array
    filters: jax.Array | None


def _batch_major(predictions: jax.Array, filters: jax.Array | None) -> VideoPrediction:
    """A :class:`VideoPrediction` from a rollout's time-major ``[T, B, ...]`` outputs."""
    predictions = jnp.moveaxis(predictions, 0, 1)
    if filters is not None:
        filters = jnp.moveaxis(filters, 0, 1)
    return VideoPrediction(frames=predictions, filters=filters)


class VideoDFN(nnx.Module):
    """The paper's recurrent Dynamic Filter Network for next-frame prediction.

    Args:
      config: :class:`VideoDFNConfig`.
      rngs: ``nnx.Rngs`` for the parameter initialisation (``params`` stream or default).

    Call it on a clip ``frames [B, T, H, W, C]`` (values in [0, 1], ``H`` and ``W`` even,
    ``T >= config.num_frames_needed``) to get a :class:`VideoPrediction` of the
    ``num_output_frames`` frames that follow the first ``num_input_frames``; use
    :meth:`predict` for a closed-loop rollout of any length from any number of context frames.
    """

    def __init__(self, config: VideoDFNConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, VideoDFNConfig):
            raise ValueError(f"`config` must be a VideoDFNConfig, got {type(config).__name__}.")
        self.config = config
        kernel_init = nnx.initializers.variance_scaling(config.init_scale, "fan_in", "uniform")
        common = dict(
            kernel_init=kernel_init,
            bias_init=nnx.initializers.zeros_init(),
            dtype=config.dtype,
            param_dtype=config.param_dtype,
            rngs=rngs,
        )

        def conv3x3(cin, cout, stride=1):
            return Conv(cin, cout, (3, 3), strides=stride, padding=((1, 1), (1, 1)), **common)

        def conv1x1(cin, cout):
            return Conv(cin, cout, (1, 1), padding="VALID", **common)

        widths = (config.channels, *config.encoder_features)
        self.encoder = nnx.List(
            [
                conv3x3(cin, cout, 2 if i == 1 else 1)
                for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:], strict=True))
            ]
        )
        if config.recurrence == "additive":
            self.recurrence = AdditiveConvRNNCell(
                config.hidden_features,
                negative_slope=config.leaky_relu_slope,
                dtype=config.dtype,
                param_dtype=config.param_dtype,
                kernel_init=kernel_init,
                rngs=rngs,
            )
        else:
            self.recurrence = ConvLSTMCell(
                config.encoder_features[-1],
                config.hidden_features,
                dtype=config.dtype,
                param_dtype=config.param_dtype,
                kernel_init=kernel_init,
                rngs=rngs,
            )
        widths = (config.hidden_features, *config.decoder_features)
        self.decoder = nnx.List(
            [conv3x3(cin, cout) for cin, cout in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.head = conv1x1(config.decoder_features[-1], config.head_features)
        num_params = config.num_taps + int(config.dynamic_bias)
        self.filter_head = conv1x1(config.head_features, num_params)
        if config.dynamic_filter and config.centre_tap_logit:
            bias = self.filter_head.bias
            bias[...] = bias[...].at[config.num_taps // 2].set(config.centre_tap_logit)
        dynamic_filter_or_output_conv(self, config, config.filter_size, num_params, rngs=rngs)

    # ---------------------------------------------------------------------------------------
    # One step, in pieces: the warm-up steps only need the encoder and the recurrence.

    def encode(self, frame: jax.Array) -> jax.Array:
        """``x_t [B, H, W, C] -> e_t [B, H/2, W/2, encoder_features[-1]]``."""
        return run_encoder(
            self.encoder, frame.astype(self.config.dtype), self.config.leaky_relu_slope
        )

    def decode(self, hidden: jax.Array, frame: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """``h_t [B, H/2, W/2, F]`` and ``x_t [B, H, W, C]`` -> prediction of ``x_{t+1}``.

        Returns:
          ``(prediction [B, H, W, C], filters [B, H, W, k*k] or None for the baseline)``; the
          prediction has the dtype of ``frame``.
        """
        x = run_decoder(self.decoder, self.head, hidden, self.config.leaky_relu_slope)
        return apply_output_stage(self, frame, self.filter_head(x))

    # ---------------------------------------------------------------------------------------

    def __call__(self, frames: jax.Array) -> VideoPrediction:
        """Predicts frames ``num_input_frames ..`` from the first ``num_input_frames`` frames.

        Args:
          frames: ``[B, T, H, W, C]`` clip with values in [0, 1]; ``T >= num_input_frames``
            (``>= num_input_frames + num_output_frames`` with teacher forcing). Frames after
            those are ignored, so a full 20-frame training clip can be passed as is.

        Returns:
          :class:`VideoPrediction` with ``frames [B, num_output_frames, H, W, C]`` and ``filters
          [B, num_output_frames, H, W, k*k]`` (``None`` for the baseline).
        """
        cfg = self.config
        frames = self._check_frames(frames, "frames", min_length=cfg.num_frames_needed)
        context = frames[:, : cfg.num_input_frames]
        teacher = None
        if cfg.teacher_forcing:
            teacher = frames[:, cfg.num_input_frames : cfg.num_frames_needed]
        return self._rollout(context, cfg.num_output_frames, teacher)

    def predict(self, context: jax.Array, num_future: int) -> jax.Array:
        """Closed-loop rollout: reads ``context`` then feeds its own predictions back.

        Works for any number of context frames and any horizon (also beyond the training one),
        whatever ``config.teacher_forcing`` says. Jit it with ``num_future`` static, e.g.
        ``nnx.jit(VideoDFN.predict, static_argnums=2)(model, context, 20)``.

        Args:
          context: ``[B, Tin, H, W, C]`` frames in [0, 1], ``Tin >= 1``.
          num_future: number of frames to predict, ``>= 1``.

        Returns:
          ``[B, num_future, H, W, C]`` predicted frames ``Tin, ..., Tin + num_future - 1``.
        """
        return self.rollout(context, num_future).frames

    def rollout(self, context: jax.Array, num_future: int) -> VideoPrediction:
        """:meth:`predict` with the filters: the closed-loop :class:`VideoPrediction` (frames and,
        for a DFN, the filters that made them), whatever ``config.teacher_forcing`` says. What
        evaluation measures: a model trained with teacher forcing is tested on its own
        predictions."""
        num_future = _positive_int(num_future, name="num_future")
        context = self._check_frames(context, "context", min_length=1)
        return self._rollout(context, num_future, None)

    def _check_frames(self, frames: jax.Array, name: str, *, min_length: int) -> jax.Array:
        cfg = self.config
        frames = _check_images(
            frames,
            name,
            cfg,
            ndim=5,
            layout="[B, T, H, W, C]",
            convert="frames with `frames / 255`",
        )
        t = frames.shape[1]
        if t < min_length:
            why = (
                f"num_input_frames = {cfg.num_input_frames} + num_output_frames = "
                f"{cfg.num_output_frames} with teacher forcing"
                if cfg.teacher_forcing and name == "frames"
                else f"{min_length}"
            )
            raise ValueError(
                f"`{name}` must have at least {min_length} frames ({why}), got T = {t} in shape "
                f"{tuple(frames.shape)}."
            )
        return frames

    def _rollout(
        self, context: jax.Array, num_future: int, teacher: jax.Array | None
    ) -> VideoPrediction:
        """Warm-up scan over ``context[:, :-1]``, then a prediction scan of ``num_future`` steps.

        ``teacher [B, num_future, ...]``, if given, holds the frames the prediction steps read
        after the first one (its last frame is never read).
        """
        cfg = self.config
        batch, num_context, height, width, _ = context.shape
        graphdef, state = nnx.split(self)
        hidden = self.recurrence.initial_state(batch, height // 2, width // 2)
        time_major = jnp.moveaxis(context, 1, 0)  # [Tin, B, H, W, C]

        def warm_up_step(carry, frame):
            model = nnx.merge(graphdef, state)
            carry, _ = model.recurrence(carry, model.encode(frame))
            return carry, None

        if num_context > 1:
            hidden, _ = scan_steps(
                warm_up_step, hidden, time_major[:-1], num_context - 1, cfg.unroll, cfg.remat
            )

        def prediction_step(carry, teacher_frame):
            model = nnx.merge(graphdef, state)
            hidden, frame = carry
            hidden, features = model.recurrence(hidden, model.encode(frame))
            prediction, filters = model.decode(features, frame)
            next_frame = prediction if teacher_frame is None else teacher_frame
            return (hidden, next_frame), (prediction, filters)

        xs = None if teacher is None else jnp.moveaxis(teacher, 1, 0)
        _, (predictions, filters) = scan_steps(
            prediction_step, (hidden, time_major[-1]), xs, num_future, cfg.unroll, cfg.remat
        )
        return _batch_major(predictions, filters)
