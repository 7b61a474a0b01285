"""Highway-driving video prediction with the recurrent DFN (De Brabandere et al. 2016, Sec. 4.2).

Binds :class:`dfn_jax.models.HighwayDFN` (3 frames observed, 3 predicted in closed loop, 11x11
softmax filters plus a dynamic bias), a driving video (an HDF5 file or a folder of frames, see
:mod:`dfn_jax.data.driving`; or, with ``data.path`` empty, the procedural road-scene stand-in)
and the paper's loss (mean squared error) for the shared trainer. Configs and commands:
``experiments/configs/highway.py``.

Metrics (``results.json``): ``mse`` is the sum of squared errors over a 64x64 frame with values in
[0, 1], averaged over the predicted frames and the test windows (the "per image" number of the
authors' README: DFN 13.39, baseline 15.08 on their recording); ``mse_per_pixel`` (0.003270 and
0.003683 there) is it divided by the pixels; ``mae``, ``ssim`` and ``psnr`` follow the OpenSTL
conventions; ``mse_copy_last`` is what repeating the last observed frame scores. Each also comes
``_per_horizon``.
"""

from __future__ import annotations

import functools
import logging
import pathlib

import jax.numpy as jnp
import numpy as np
from flax import nnx

from dfn_jax import ops
from dfn_jax.data import driving
from dfn_jax.models import HighwayDFN, HighwayDFNConfig
from dfn_jax.training import Experiment
from dfn_jax.training.config import dataclass_from_config
from experiments.dfn import _common
from experiments.dfn._figures import write_video_figures

log = logging.getLogger(__name__)


def model_config(config) -> HighwayDFNConfig:
    """``config.model`` (plus ``data.image_size``) as a :class:`HighwayDFNConfig`."""
    return dataclass_from_config(HighwayDFNConfig, config.model, image_size=config.data.image_size)


class HighwayDriving(Experiment):
    """Windows of 6 consecutive frames: 3 observed, 3 predicted in closed loop; MSE loss."""

    config_keys = frozenset(["num_eval_sequences", "num_figure_sequences"])
    data_keys = frozenset(
        ["dataset", "image_size", "path", "swap_hw", "test_fraction", "test_path", "test_seed"]
    )

    @functools.cached_property
    def model_config(self) -> HighwayDFNConfig:
        return model_config(self.config)

    @property
    def num_frames(self) -> int:
        return self.model_config.num_input_frames + self.model_config.num_output_frames

    @property
    def uses_standin(self) -> bool:
        return not self.config.data.path

    def config_problems(self) -> list[str]:
        problems = _common.recording_problems(self.config.data, what="the training video")
        return problems + self.evaluation_problems() + self.model_problems()

    def build_model(self, rngs: nnx.Rngs) -> HighwayDFN:
        return HighwayDFN(self.model_config, rngs=rngs)

    # -- data -------------------------------------------------------------------------------
    @functools.cached_property
    def _video(self) -> tuple[np.ndarray, np.ndarray]:
        """``(train, test)`` frames ``[N, H, W, 1]`` from the files (loaded on first use)."""
        data = self.config.data
        kwargs = dict(dataset=data.dataset, swap_hw=data.swap_hw)
        frames = driving.load_video(data.path, **kwargs)
        driving.check_frame_size(frames, data.image_size, what=f"video {data.path!r}")
        if data.test_path:
            train = frames
            test = driving.load_video(data.test_path, **kwargs)
            driving.check_frame_size(test, data.image_size, what=f"video {data.test_path!r}")
        else:
            train, test = driving.split_tail(frames, test_fraction=data.test_fraction)
        for part, frames_ in (("training", train), ("test", test)):
            if len(frames_) < self.num_frames:
                raise ValueError(
                    f"the {part} part of {data.path!r} has {len(frames_)} frames, fewer than one "
                    f"window of {self.num_frames} (num_input_frames + num_output_frames)."
                )
        log.info(
            "highway: %d training and %d test frames from %s", len(train), len(test), data.path
        )
        return train, test

    @functools.cached_property
    def _standin(self):
        log.info("highway: data.path is empty, using the procedural stand-in (no files).")
        return functools.partial(
            driving.highway_standin_sequences,
            num_frames=self.num_frames,
            image_size=self.config.data.image_size,
        )

    def _test_windows(self) -> np.ndarray | None:
        """The file test set: non-overlapping windows of the held-out frames (None: stand-in)."""
        if self.uses_standin:
            return None
        windows = driving.tiled_windows(self._video[1], window=self.num_frames)
        return windows[: _common.num_test_examples(len(windows), self.config)]

    def train_batch(self, step: int, rows=None):
        if self.uses_standin:
            return self._standin(self.example_keys(step, rows))
        train = self._video[0]
        starts = driving.random_window_starts(
            self.example_keys(step)[0],
            num_frames_total=len(train),
            window=self.num_frames,
            batch_size=self.config.batch_size,
        )
        starts = starts if rows is None else starts[rows]
        return driving.gather_windows(train, starts, window=self.num_frames)

    @property
    def eval_batch_size(self) -> int:
        windows = self._test_windows()
        size = self.config.eval_batch_size
        return size if windows is None else min(size, len(windows))

    def eval_batches(self, rows=None):
        windows = self._test_windows()
        if windows is not None:
            for index in self.eval_indices(len(windows), rows):
                yield windows[index]
            return
        n = self.config.num_eval_sequences
        keys = _common.standin_test_keys(self.config, n)
        for index in self.eval_indices(n, rows):
            yield self._standin(keys[index])

    # -- loss and metrics -------------------------------------------------------------------
    def _targets(self, frames):
        n_in = self.model_config.num_input_frames
        return frames[:, n_in : self.num_frames]

    def loss(self, model, batch, key):
        del key  # deterministic: no dropout, data drawn on the host
        predictions = model(batch).frames
        targets = self._targets(batch)
        mse_per_pixel = jnp.mean(jnp.square(predictions - targets))
        return mse_per_pixel, {"mse_per_frame": mse_per_pixel * np.prod(targets.shape[2:])}

    def eval_sums(self, model, batch):
        predictions = model(batch).frames.astype(jnp.float32)
        targets = self._targets(batch)
        last = batch[:, self.model_config.num_input_frames - 1 : self.model_config.num_input_frames]
        pixels = float(np.prod(targets.shape[2:]))
        mse = ops.squared_error_per_frame(predictions, targets)
        per_frame = {  # values: [B, T_out]
            "mse": mse,
            "mse_per_pixel": mse / pixels,
            **_common.image_quality(predictions, targets),
            "mse_copy_last": ops.squared_error_per_frame(
                jnp.broadcast_to(last, targets.shape), targets
            ),
        }
        return _common.per_frame_sums(per_frame, batch.shape[0])

    # -- figures and facts ------------------------------------------------------------------
    def _figure_sequences(self) -> np.ndarray:
        n = self.config.num_figure_sequences
        windows = self._test_windows()
        if windows is not None:
            return np.asarray(windows[:n])
        return np.asarray(self._standin(_common.standin_test_keys(self.config, n)))

    def write_figures(self, model, figures_dir: pathlib.Path) -> list[pathlib.Path]:
        return write_video_figures(model, self.model_config, self._figure_sequences(), figures_dir)

    def describe(self) -> dict:
        facts = _common.recording_facts(self)
        if not self.uses_standin:
            train, test = self._video
            facts.update(
                num_train_frames=len(train),
                num_test_frames=len(test),
                num_eval_sequences=len(self._test_windows()),
            )
        else:
            facts["num_eval_sequences"] = self.config.num_eval_sequences
        return facts


EXPERIMENT = HighwayDriving
