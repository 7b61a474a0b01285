"""Moving MNIST video prediction with the recurrent DFN (De Brabandere et al. 2016, Sec. 4.1).

Binds :class:`dfn_jax.models.VideoDFN`, on-device Moving MNIST (or the embedded bouncing shapes)
and the paper's loss (binary cross-entropy on the 10 predicted frames) for the shared trainer.
Configs and commands: ``experiments/configs/moving_mnist.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dfn_jax import ops
from dfn_jax.data import moving_mnist, shapes
from dfn_jax.models import VideoDFN, VideoDFNConfig
from dfn_jax.training import Experiment
from dfn_jax.training.config import dataclass_from_config
from experiments.dfn import _common
from experiments.dfn._figures import write_video_figures

SOURCES = ("mnist", "shapes")


def model_config(config) -> VideoDFNConfig:
    return dataclass_from_config(VideoDFNConfig, config.model)


class MovingMNIST(Experiment):
    """20-frame sequences: 10 observed, 10 predicted in closed loop; BCE loss."""

    config_keys = frozenset(["num_eval_sequences", "num_figure_sequences"])
    data_keys = frozenset(
        [
            "download",
            "image_size",
            "mnist_dir",
            "num_objects",
            "source",
            "sprite_size",
            "step_length",
            "test_seed",
            "tfds_data_dir",
            "whole_pixel_steps",
        ]
    )

    @functools.cached_property
    def model_config(self) -> VideoDFNConfig:
        return model_config(self.config)

    @property
    def num_frames(self) -> int:
        return self.model_config.num_input_frames + self.model_config.num_output_frames

    def config_problems(self) -> list[str]:
        data = self.config.data
        problems = _common.source_problems(data, SOURCES)
        if not isinstance(data.image_size, int) or data.image_size <= 0 or data.image_size % 2:
            problems.append(
                f"`data.image_size` must be a positive even int, got {data.image_size!r}."
            )
        for key, default in (("whole_pixel_steps", False), ("sprite_size", 28)):
            if data[key] != default and data.source != "shapes":
                problems.append(
                    f"`data.{key}` applies to the bouncing shapes (`data.source=shapes`), got "
                    f"source {data.source!r}."
                )
        if data.source == "shapes" and not 3 <= data.sprite_size <= data.image_size:
            problems.append(
                f"`data.sprite_size` must be in [3, data.image_size={data.image_size}], got "
                f"{data.sprite_size!r}."
            )
        return problems + self.evaluation_problems() + self.model_problems()

    @functools.cached_property
    def _generators(self):
        """Jitted ``(keys, num_frames=...) -> frames`` for training and test data; digits are
        loaded on first use."""
        data = self.config.data
        jit = functools.partial(jax.jit, static_argnames="num_frames")
        if data.source == "shapes":
            generate = jit(
                functools.partial(
                    shapes.bouncing_shapes_sequences,
                    num_shapes=data.num_objects,
                    step_length=data.step_length,
                    whole_pixel_steps=data.whole_pixel_steps,
                    image_size=data.image_size,
                    **shapes.sprite_options(data.sprite_size),
                )
            )
            return generate, generate
        generate = jit(
            functools.partial(
                moving_mnist.moving_mnist_sequences,
                num_digits=data.num_objects,
                step_length=data.step_length,
                image_size=data.image_size,
            )
        )
        return _common.mnist_generators(data, generate)

    # -- model and data ---------------------------------------------------------------------
    def build_model(self, rngs: nnx.Rngs) -> VideoDFN:
        return VideoDFN(self.model_config, rngs=rngs)

    def train_batch(self, step: int, rows=None) -> jax.Array:
        return self._generators[0](self.example_keys(step, rows), num_frames=self.num_frames)

    def test_examples(self, num: int, num_frames: int | None = None) -> jax.Array:
        """The first ``num`` test sequences, ``[num, T, H, W, 1]``, as the evaluation draws them
        (``num_frames``: ``T``, the experiment's by default; longer ones extend the same clips)."""
        keys = moving_mnist.test_set_keys(num, seed=self.config.data.test_seed)
        return self._generators[1](keys, num_frames=num_frames or self.num_frames)

    def eval_batches(self, rows=None):
        n = self.config.num_eval_sequences
        keys = moving_mnist.test_set_keys(n, seed=self.config.data.test_seed)
        for index in self.eval_indices(n, rows):
            yield self._generators[1](keys[index], num_frames=self.num_frames)

    # -- loss and metrics -----------------------------------------------------------------
    def _split(self, frames):
        n_in = self.model_config.num_input_frames
        return frames, frames[:, n_in : self.num_frames]

    def loss(self, model, batch, key):
        del key  # deterministic: no dropout, data drawn on the host
        frames, targets = self._split(batch)
        predictions = model(frames).frames
        bce = ops.binary_cross_entropy_per_frame(predictions, targets)  # [B, T_out], nats/frame
        pixels = np.prod(targets.shape[2:])
        return jnp.mean(bce) / pixels, {"bce_nats_per_frame": jnp.mean(bce)}

    def eval_sums(self, model, batch):
        frames, targets = self._split(batch)
        # Closed loop also when trained with teacher forcing: the model sees only the context.
        n_in, n_out = self.model_config.num_input_frames, self.model_config.num_output_frames
        predictions = model.rollout(frames[:, :n_in], n_out).frames.astype(jnp.float32)
        per_frame = {  # values: [B, T_out]
            "bce": ops.binary_cross_entropy_per_frame(predictions, targets),
            "mse": ops.squared_error_per_frame(predictions, targets),
            **_common.image_quality(predictions, targets),
        }
        return _common.per_frame_sums(per_frame, frames.shape[0])

    # -- figures and facts ------------------------------------------------------------------
    def write_figures(self, model, figures_dir: pathlib.Path) -> list[pathlib.Path]:
        frames = np.asarray(self.test_examples(self.config.num_figure_sequences))
        return write_video_figures(model, self.model_config, frames, figures_dir)

    def describe(self) -> dict:
        data = self.config.data
        return {
            "data_source": data.source,
            "model": dataclasses.asdict(self.model_config),
            "num_eval_sequences": self.config.num_eval_sequences,
            "test_seed": data.test_seed,
        }


EXPERIMENT = MovingMNIST
