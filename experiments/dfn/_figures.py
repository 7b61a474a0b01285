"""The video DFNs' figures (Moving MNIST and highway driving): prediction strips and the flow read
off the generated filters. Private to :mod:`experiments.dfn`."""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from dfn_jax import ops, viz


def write_video_figures(
    model, config, frames: np.ndarray, figures_dir: pathlib.Path
) -> list[pathlib.Path]:
    """Writes ``prediction_<i>.png`` (input, truth and prediction rows) for each test sequence
    ``frames [N, T, H, W, C]`` and, for a DFN (not the baseline), ``flow.png``: per sequence the
    last input, the first prediction and the flow of the filters that made it, with a colour key.

    The predictions are closed loop (``model.rollout``, a :class:`~dfn_jax.models.VideoPrediction`
    from the first ``num_input_frames``), also for a model trained with teacher forcing;
    ``config`` is the model's config (``num_input_frames``, ``num_output_frames``,
    ``filter_size``).
    """
    n_in = config.num_input_frames
    num_frames = n_in + config.num_output_frames
    rollout = jax.jit(lambda f: model.rollout(f[:, :n_in], config.num_output_frames))
    prediction = rollout(jnp.asarray(frames))
    predicted = np.asarray(prediction.frames)
    paths = []
    for i in range(len(frames)):
        paths.append(
            viz.plot_sequence_rows(
                [frames[i, :n_in], frames[i, n_in:num_frames], predicted[i]],
                ["input", "truth", "prediction"],
                figures_dir / f"prediction_{i}.png",
                title=f"Test sequence {i}",
            )
        )
    if prediction.filters is not None:
        flow = ops.filter_flow(
            prediction.filters[:, 0], kernel_size=config.filter_size
        )  # 1st prediction
        rgb = np.asarray(ops.flow_to_rgb(flow))
        images, titles = [], []
        for i in range(len(frames)):
            images += [frames[i, n_in - 1], predicted[i, 0], rgb[i]]
            titles += [f"seq {i}: last input", "first prediction", "flow from filters"]
        images.append(viz.flow_legend())
        titles.append("colour key: (dx, dy) the output reads from")
        paths.append(viz.plot_images(images, titles, figures_dir / "flow.png", ncols=3))
    return paths
