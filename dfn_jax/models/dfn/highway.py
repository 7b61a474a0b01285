r"""The Dynamic Filter Network for highway-driving video prediction (De Brabandere et al. 2016).

The generator reads the ``generator_frames = 2`` most recent frames (stacked as channels), updates
a recurrent state at half resolution and predicts the next frame by filtering the most recent
frame with one generated ``11 x 11`` softmax filter per pixel, after adding a generated per-pixel
*dynamic bias* to it (for photometric changes such as entering a tunnel)::

    encoder    conv3x3 32 (untied biases: one per channel *and pixel*, 64*64*32 of them)
               > conv3x3 32 /2 > conv3x3 64 > conv3x3 64 = e_t                      (32 x 32)
    recurrence h_t = e_t + conv3x3 64(conv3x3 64(h_{t-1})),  h_0 = 0
    decoder    conv3x3 64 > upsample x2 (nearest) > conv3x3 32 > conv3x3 64
               > conv1x1 128 > conv1x1 11*11 + 1  (linear filter head: 121 taps + 1 bias)
    output     x_{t+1} = softmax-filter(x_t + bias)   (DynamicLocalFilter, dynamic_bias=True)

Every convolution except the filter head (and the baseline's output conv) is followed by a leaky
ReLU of slope 0.01; 3x3 convs pad one pixel on every side (Lasagne ``pad='same'``, also for the
stride-2 conv); biases start at zero; kernels are He-uniform with the authors' gain
(``variance_scaling(1.0, "fan_in", "uniform")``, Lasagne's ``HeUniform()``; see ``init_scale``).

Unrolling (``num_input_frames = 3``, ``num_output_frames = 3``, ``generator_frames = 2``: 4 steps):
step 0 reads frames (0, 1) and only advances the state; step 1 reads (1, 2) and predicts frame 3;
steps 2 and 3 read windows that end in the model's own predictions (closed loop): (2, p3) -> p4,
(p3, p4) -> p5. The loss is on p3, p4, p5.

**Baseline** (``dynamic_filter=False``): the same network, the 122-channel head feeds a linear 1x1
conv to ``channels`` outputs instead of the dynamic filtering layer (``baseline_output="identity"``
by default, as in the authors' code; the loss is MSE, so no sigmoid is needed).

Parameter counts (64x64x1 frames)::

    conv 2->32 untied      2*9*32 + 32*64*64  = 131,648
    conv 32->32 /2         9*32*32 + 32       =   9,248
    conv 32->64                                   18,496
    conv 64->64 (e_t)                             36,928
    recurrence 2 x (64->64)                       73,856
    decoder 64->64, 64->32, 32->64      36,928 + 18,464 + 18,496
    conv1x1 64->128                                8,320
    conv1x1 128->122 (filter head)                15,738
    DFN total                                    368,122   (paper / orig. code README)
    baseline: + conv1x1 122->1 (122 + 1)         368,245

Where these facts come from: the 2 input frames, 3 in / 3 out, 11x11 softmax filters, the dynamic
bias, the untied biases of the first conv and the MSE loss are stated in the paper and REFERENCE.md.
The widths (32, 32, 64, 64 / recurrence 64 / 64, 32, 64 / 128), the *recurrent* state (with these
widths a feed-forward generator has 294,266 parameters; the recurrence's 73,856 make up the
published count), the bias being added to the frame before filtering, and the unrolling were read
off the authors' public Lasagne code (github dbbert/dfn, ``models/model_highwayDriving.py``); they
reproduce both published parameter counts exactly. The counts alone do not pin the architecture
down: a search over encoder/decoder widths in {16, 32, 64, 128}, with or without recurrence and
with untied biases at full or half resolution, finds thousands of networks with 368,122
parameters.

:class:`FilterGenerator` and :class:`UntiedBiasConv` are shared with the stereo model
(:mod:`dfn_jax.models.dfn.stereo`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from dfn_jax.layers.rollout import check_time_loop_fields, scan_steps
from dfn_jax.models.dfn._common import (
    _check_filter_size,
    _check_generator_fields,
    _check_images,
    _positive_int,
    apply_output_stage,
    dynamic_filter_or_output_conv,
    filter_generator,
)
from dfn_jax.models.dfn.video import VideoPrediction, _batch_major

# ------------------------------------------------------------------------------------------------
# The highway-driving model


@dataclasses.dataclass(frozen=True)
class HighwayDFNConfig:
    """Configuration of :class:`HighwayDFN`; the defaults are the paper's highway-driving model.

    Attributes:
      filter_size: odd side ``k`` of the per-pixel filters (11).
      dynamic_filter: ``True`` for the DFN, ``False`` for the baseline (a 1x1 conv to
        ``channels`` outputs replaces the dynamic filtering layer).
      dynamic_bias: generate one more head channel, a per-pixel bias added to the frame before
        filtering (``True`` in the paper's highway model).
      num_input_frames: observed frames (3).
      num_output_frames: predicted frames (3).
      generator_frames: most recent frames the generator reads, stacked as channels (2).
      encoder_features: widths of the encoder's 3x3 convs (the second has stride 2); the last is
        the width of ``e_t`` and of the recurrent state.
      decoder_features: widths of the decoder's 3x3 convs; ``len // 2`` at half resolution.
      head_features: width of the 1x1 conv before the filter head (128).
      recurrent: additive conv-RNN between encoder and decoder (``True`` in the paper).
      untied_bias_layer: encoder conv with one bias per channel and pixel (0: the first), or
        ``None``.
      image_size: frame side (64); the untied biases are made for it.
      channels: frame channels (1, grayscale).
      unroll: ``jax.lax.scan``'s unroll (``1`` rolled, ``True`` fully unrolled, ``"auto"`` fully
        unrolled on CPU only; see :func:`dfn_jax.layers.rollout.resolve_unroll`).
      remat: rematerialise each recurrent step in the backward pass (``jax.checkpoint``): less
        activation memory, about one more forward pass of compute.
      dtype, param_dtype: computation and parameter dtypes; the softmax, the filtering and the
        predicted frames stay float32.
      leaky_relu_slope: 0.01 (Lasagne's ``leaky_rectify``).
      init_scale: kernels ~ ``variance_scaling(init_scale, "fan_in", "uniform")``. 1.0 is what
        the authors' Lasagne ``HeUniform()`` (default gain 1) drew; He et al.'s 2.0 starts this
        model with a large dynamic bias and filter logits that grow over the recurrent steps
        (an initial MSE of ~0.36 per pixel on the stand-in against ~0.02, and Adam at 1e-3 then
        overshoots), so 1.0 is the default here, unlike :class:`~dfn_jax.models.VideoDFNConfig`.
      baseline_output: ``"identity"`` (orig. code) or ``"sigmoid"`` on the baseline's output.
      filter_implementation: ``"fast"``, ``"xla"`` or ``"reference"``.
    """

    filter_size: int = 11
    dynamic_filter: bool = True
    dynamic_bias: bool = True
    num_input_frames: int = 3
    num_output_frames: int = 3
    generator_frames: int = 2
    encoder_features: tuple[int, ...] = (32, 32, 64, 64)
    decoder_features: tuple[int, ...] = (64, 32, 64)
    head_features: int = 128
    recurrent: bool = True
    untied_bias_layer: int | None = 0
    image_size: int = 64
    channels: int = 1
    unroll: int | bool | str = 1
    remat: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    leaky_relu_slope: float = 0.01
    init_scale: float = 1.0
    baseline_output: str = "identity"
    filter_implementation: str = "fast"

    def __post_init__(self):
        _check_filter_size(self.filter_size, why=" (the filter is centred on the pixel)")
        _check_generator_fields(self)
        for name in ("num_input_frames", "num_output_frames", "generator_frames"):
            _positive_int(getattr(self, name), name=name)
        if self.generator_frames > self.num_input_frames:
            raise ValueError(
                f"`generator_frames` ({self.generator_frames}) cannot exceed `num_input_frames` "
                f"({self.num_input_frames}): the first window is made of observed frames."
            )
        check_time_loop_fields(self)

    @property
    def num_taps(self) -> int:
        """``filter_size ** 2``."""
        return self.filter_size**2

    @property
    def num_steps(self) -> int:
        """Generator steps of one forward pass: ``num_input_frames - generator_frames +
        num_output_frames`` (4 in the paper)."""
        return self.num_input_frames - self.generator_frames + self.num_output_frames


class HighwayDFN(nnx.Module):
    """The paper's recurrent DFN for highway-driving video (3 frames in, 3 predicted).

    Args:
      config: :class:`HighwayDFNConfig`.
      rngs: ``nnx.Rngs`` for the parameter initialisation.

    Call it on a clip ``frames [B, T, H, W, C]`` (values in [0, 1], ``T >= num_input_frames``)
    for a :class:`~dfn_jax.models.VideoPrediction` of the ``num_output_frames`` frames after the
    first ``num_input_frames`` (closed loop); :meth:`predict` rolls out any horizon.
    """

    def __init__(self, config: HighwayDFNConfig, *, rngs: nnx.Rngs):
        if not isinstance(config, HighwayDFNConfig):
            raise ValueError(f"`config` must be a HighwayDFNConfig, got {type(config).__name__}.")
        self.config = config
        num_params = config.num_taps + int(config.dynamic_bias)
        self.generator = filter_generator(
            config,
            config.generator_frames * config.channels,
            num_params,
            recurrent=config.recurrent,
            rngs=rngs,
        )
        dynamic_filter_or_output_conv(self, config, config.filter_size, num_params, rngs=rngs)

    # -- one step ---------------------------------------------------------------------------
    def _generator_input(self, window: jax.Array) -> jax.Array:
        """``[B, G, H, W, C] -> [B, H, W, G*C]``, oldest frame first."""
        b, g, h, w, c = window.shape
        return jnp.moveaxis(window, 1, 3).reshape(b, h, w, g * c)

    def advance(self, hidden: jax.Array | None, window: jax.Array):
        """Encodes a window ``[B, G, H, W, C]`` and updates the recurrent state.

        Returns:
          ``(hidden, features)``: the new state (``None`` for a feed-forward generator) and the
          ``[B, H/2, W/2, F]`` features the decoder reads.
        """
        features = self.generator.encode(self._generator_input(window))
        if self.generator.recurrence is None:
            return None, features
        return self.generator.recurrence(hidden, features)

    def step(self, hidden: jax.Array | None, window: jax.Array):
        """One prediction from a window ``[B, G, H, W, C]`` of the most recent frames.

        Returns:
          ``(hidden, prediction [B, H, W, C], filters [B, H, W, k*k] or None)``: the prediction
          of the frame after ``window[:, -1]``.
        """
        hidden, features = self.advance(hidden, window)
        params = self.generator.decode(features)
        return hidden, *apply_output_stage(self, window[:, -1], params)

    # -- rollouts ---------------------------------------------------------------------------
    def __call__(self, frames: jax.Array) -> VideoPrediction:
        """Predicts frames ``num_input_frames ..`` from the first ``num_input_frames``.

        Args:
          frames: ``[B, T, H, W, C]`` in [0, 1], ``T >= num_input_frames`` (later frames are
            ignored, so a whole training clip can be passed).

        Returns:
          ``VideoPrediction(frames [B, num_output_frames, H, W, C], filters [B,
          num_output_frames, H, W, k*k] or None for the baseline)``.
        """
        cfg = self.config
        frames = _check_images(frames, "frames", cfg, ndim=5, layout="[B, T, H, W, C]")
        if frames.shape[1] < cfg.num_input_frames:
            raise ValueError(
                f"`frames` must have at least num_input_frames = {cfg.num_input_frames} frames, "
                f"got T = {frames.shape[1]} in shape {tuple(frames.shape)}."
            )
        return self._rollout(frames[:, : cfg.num_input_frames], cfg.num_output_frames)

    def predict(self, context: jax.Array, num_future: int) -> jax.Array:
        """Closed-loop rollout of ``num_future`` frames after ``context [B, Tin, H, W, C]``
        (``Tin >= generator_frames``). Jit with ``num_future`` static."""
        return self.rollout(context, num_future).frames

    def rollout(self, context: jax.Array, num_future: int) -> VideoPrediction:
        """:meth:`predict` with the filters that made the frames (``None`` for the baseline)."""
        num_future = _positive_int(num_future, name="num_future")
        cfg = self.config
        context = _check_images(context, "context", cfg, ndim=5, layout="[B, T, H, W, C]")
        if context.shape[1] < cfg.generator_frames:
            raise ValueError(
                f"`context` must have at least generator_frames = {cfg.generator_frames} frames, "
                f"got shape {tuple(context.shape)}."
            )
        return self._rollout(context, num_future)

    def _rollout(self, context: jax.Array, num_future: int) -> VideoPrediction:
        cfg = self.config
        g = cfg.generator_frames
        batch, num_context, height, width, _ = context.shape
        graphdef, state = nnx.split(self)
        recurrence = self.generator.recurrence
        hidden = (
            None if recurrence is None else recurrence.initial_state(batch, height // 2, width // 2)
        )
        num_warm_up = num_context - g
        if recurrence is not None and num_warm_up > 0:
            # Windows of observed frames whose predictions would be discarded: only the state.
            windows = jnp.stack([context[:, t : t + g] for t in range(num_warm_up)], axis=0)

            def warm_up_step(carry, window):
                model = nnx.merge(graphdef, state)
                carry, _ = model.advance(carry, window)
                return carry, None

            hidden, _ = scan_steps(
                warm_up_step, hidden, windows, num_warm_up, cfg.unroll, cfg.remat
            )

        def prediction_step(carry, _):
            model = nnx.merge(graphdef, state)
            hidden, window = carry
            hidden, prediction, filters = model.step(hidden, window)
            window = jnp.concatenate([window[:, 1:], prediction[:, None]], axis=1)
            return (hidden, window), (prediction, filters)

        _, (predictions, filters) = scan_steps(
            prediction_step,
            (hidden, context[:, num_context - g :]),
            None,
            num_future,
            cfg.unroll,
            cfg.remat,
        )
        return _batch_major(predictions, filters)
