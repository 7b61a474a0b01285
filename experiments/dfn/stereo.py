"""Stereo prediction with a Dynamic Filter Network (De Brabandere et al. 2016, Sec. 4.3).

Binds :class:`dfn_jax.models.StereoDFN` (left image in, right image out through per-pixel
horizontal ``1 x 13`` softmax filters and a dynamic bias), rectified stereo pairs (an HDF5 file
with ``highway_L``/``highway_R`` or a folder with ``left/`` and ``right/``, see
:mod:`dfn_jax.data.driving`; or, with ``data.path`` empty, the procedural stand-in with known
disparity) and the paper's loss (mean squared error) for the shared trainer. Configs and
commands: ``experiments/configs/stereo.py``.

Metrics (``results.json``): ``mse`` is the sum of squared errors over a 64x64 image in [0, 1]
(the authors' README, per image: DFN 1.35, baseline 1.70; per pixel 0.000330 and 0.000416), and
``mse_per_pixel``, ``mae``, ``ssim``, ``psnr``; ``mse_copy_left`` is what predicting the left
image itself scores. On the stand-in the DFN also reports ``disparity_mae_px``: the mean absolute
difference, over all pixels, between the disparity read off its filters
(:func:`dfn_jax.ops.filter_disparity`) and the true one; in textureless regions (sky, flat
asphalt) the disparity is ambiguous, so this is a coarse measure.
"""

from __future__ import annotations

import functools
import logging
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib import colormaps

from dfn_jax import ops, viz
from dfn_jax.data import driving
from dfn_jax.models import StereoDFN, StereoDFNConfig
from dfn_jax.training import Experiment
from dfn_jax.training.config import dataclass_from_config
from experiments.dfn import _common

log = logging.getLogger(__name__)


def model_config(config) -> StereoDFNConfig:
    """``config.model`` (plus ``data.image_size``) as a :class:`StereoDFNConfig`."""
    return dataclass_from_config(StereoDFNConfig, config.model, image_size=config.data.image_size)


class Stereo(Experiment):
    """Left image -> right image; MSE loss. Batches are dicts ``left``, ``right`` (and
    ``disparity`` for the stand-in's evaluation batches)."""

    config_keys = frozenset(["num_eval_sequences", "num_figure_sequences"])
    data_keys = frozenset(
        [
            "datasets",
            "image_size",
            "max_disparity",
            "path",
            "swap_hw",
            "test_fraction",
            "test_path",
            "test_seed",
        ]
    )

    @functools.cached_property
    def model_config(self) -> StereoDFNConfig:
        return model_config(self.config)

    @property
    def uses_standin(self) -> bool:
        return not self.config.data.path

    def config_problems(self) -> list[str]:
        data = self.config.data
        problems = _common.recording_problems(data, what="the training pairs")
        if not 0.0 < data.max_disparity <= self.config.model.filter_size // 2:
            problems.append(
                f"`data.max_disparity` must lie in (0, filter_size // 2 = "
                f"{self.config.model.filter_size // 2}], got {data.max_disparity!r}."
            )
        return problems + self.evaluation_problems() + self.model_problems()

    def build_model(self, rngs: nnx.Rngs) -> StereoDFN:
        return StereoDFN(self.model_config, rngs=rngs)

    # -- data -------------------------------------------------------------------------------
    @functools.cached_property
    def _pairs(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{"train": (left, right), "test": (left, right)}`` from the files."""
        data = self.config.data
        kwargs = dict(datasets=tuple(data.datasets), swap_hw=data.swap_hw)
        left, right = driving.load_stereo(data.path, **kwargs)
        driving.check_frame_size(left, data.image_size, what=f"stereo data {data.path!r}")
        if data.test_path:
            train = (left, right)
            test = driving.load_stereo(data.test_path, **kwargs)
            driving.check_frame_size(test[0], data.image_size, what=f"{data.test_path!r}")
        else:
            (left_train, left_test), (right_train, right_test) = (
                driving.split_tail(x, test_fraction=data.test_fraction) for x in (left, right)
            )
            train, test = (left_train, right_train), (left_test, right_test)
        log.info(
            "stereo: %d training and %d test pairs from %s", len(train[0]), len(test[0]), data.path
        )
        return {"train": train, "test": test}

    @functools.cached_property
    def _standin(self):
        log.info("stereo: data.path is empty, using the procedural stand-in (no files).")
        return functools.partial(
            driving.stereo_standin_pairs,
            image_size=self.config.data.image_size,
            max_disparity=self.config.data.max_disparity,
        )

    def _standin_batch(self, keys, *, with_disparity: bool) -> dict:
        left, right, disparity = self._standin(keys)
        batch = {"left": left, "right": right}
        if with_disparity:
            batch["disparity"] = disparity
        return batch

    def _test_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        left, right = self._pairs["test"]
        n = _common.num_test_examples(len(left), self.config)
        return left[:n], right[:n]

    def train_batch(self, step: int, rows=None) -> dict:
        if self.uses_standin:
            return self._standin_batch(self.example_keys(step, rows), with_disparity=False)
        left, right = self._pairs["train"]
        size = self.config.batch_size
        index = np.asarray(jax.random.randint(self.example_keys(step)[0], (size,), 0, len(left)))
        index = index if rows is None else index[rows]
        return {"left": left[index], "right": right[index]}

    @property
    def eval_batch_size(self) -> int:
        size = self.config.eval_batch_size
        return size if self.uses_standin else min(size, len(self._test_pairs()[0]))

    def eval_batches(self, rows=None):
        if not self.uses_standin:
            left, right = self._test_pairs()
            for index in self.eval_indices(len(left), rows):
                yield {"left": left[index], "right": right[index]}
            return
        n = self.config.num_eval_sequences
        keys = _common.standin_test_keys(self.config, n)
        for index in self.eval_indices(n, rows):
            yield self._standin_batch(keys[index], with_disparity=True)

    # -- loss and metrics -------------------------------------------------------------------
    def loss(self, model, batch, key):
        del key  # deterministic: no dropout, data drawn on the host
        predicted = model(batch["left"]).image
        mse_per_pixel = jnp.mean(jnp.square(predicted - batch["right"]))
        pixels = np.prod(batch["right"].shape[1:])
        return mse_per_pixel, {"mse_per_image": mse_per_pixel * pixels}

    def eval_sums(self, model, batch):
        left, right = batch["left"], batch["right"]
        prediction = model(left)
        predicted = prediction.image.astype(jnp.float32)
        mse = ops.squared_error_per_frame(predicted, right)  # [B]
        per_image = {
            "mse": mse,
            "mse_per_pixel": mse / float(np.prod(right.shape[1:])),
            **_common.image_quality(predicted, right),
            "mse_copy_left": ops.squared_error_per_frame(left, right),
        }
        if prediction.filters is not None and "disparity" in batch:
            disparity = ops.filter_disparity(
                prediction.filters, kernel_size=self.model_config.filter_size
            )
            per_image["disparity_mae_px"] = jnp.mean(
                jnp.abs(disparity - batch["disparity"]), axis=(1, 2)
            )
        sums = {name: jnp.sum(values) for name, values in per_image.items()}
        sums["count"] = jnp.asarray(left.shape[0], jnp.float32)
        return sums

    # -- figures and facts ------------------------------------------------------------------
    def write_figures(self, model, figures_dir: pathlib.Path) -> list[pathlib.Path]:
        n = self.config.num_figure_sequences
        if self.uses_standin:
            batch = self._standin_batch(
                _common.standin_test_keys(self.config, n), with_disparity=True
            )
        else:
            left, right = self._test_pairs()
            batch = {"left": left[:n], "right": right[:n]}
        batch = {k: np.asarray(v) for k, v in batch.items()}
        prediction = jax.jit(lambda x: model(x))(jnp.asarray(batch["left"]))
        predicted = np.asarray(prediction.image)
        k = self.model_config.filter_size
        half = k // 2
        colour = colormaps["viridis"]

        def disparity_rgb(d):
            return colour(np.clip((np.asarray(d) + half) / (2 * half), 0.0, 1.0))[..., :3]

        learned = None
        if prediction.filters is not None:
            learned = np.asarray(ops.filter_disparity(prediction.filters, kernel_size=k))
        images, titles = [], []
        for i in range(len(predicted)):
            images += [batch["left"][i], batch["right"][i], predicted[i]]
            titles += [f"pair {i}: left (input)", "right (truth)", "right (predicted)"]
            if learned is not None:
                images.append(disparity_rgb(learned[i]))
                titles.append("disparity from filters")
            if "disparity" in batch:
                images.append(disparity_rgb(batch["disparity"][i]))
                titles.append("true disparity")
        ncols = 3 + (learned is not None) + ("disparity" in batch)
        legend = disparity_rgb(np.tile(np.linspace(-half, half, 64), (16, 1)))
        images.append(legend)
        titles.append(f"colour key: disparity -{half} .. +{half} px")
        return [viz.plot_images(images, titles, figures_dir / "stereo.png", ncols=ncols)]

    def describe(self) -> dict:
        data = self.config.data
        facts = _common.recording_facts(self)
        if self.uses_standin:
            facts.update(
                max_disparity=data.max_disparity, num_eval_sequences=self.config.num_eval_sequences
            )
        else:
            facts.update(
                num_train_pairs=len(self._pairs["train"][0]),
                num_test_pairs=len(self._pairs["test"][0]),
                num_eval_sequences=len(self._test_pairs()[0]),
            )
        return facts


EXPERIMENT = Stereo
