r"""Learning steerable filters with dynamic convolution (De Brabandere et al. 2016, Sec. 4.1).

``--config=experiments/configs/steerable.py[:VARIANT[,cos_sin]]``; variants:

* ``paper`` (default): the paper's model and schedule. An angle ``theta ~ U[0, 2 pi)`` goes
  through a 64 -> 128 -> 81 filter-generating network (leaky ReLU, linear output) whose 9x9 filter
  convolves a 64x64 procedural texture; the target is ``cos(theta) I_x + sin(theta) I_y`` with
  Gaussian-derivative filters (sigma 1, 9 taps). MSE, batch 64, Adam 1e-3 halved every 1,000
  steps, 5,000 steps. The paper shows the learned filters matching the analytic ones; here
  ``results.json`` holds their cosine similarity at 0, 45, ..., 315 degrees
  (``test.filter_cosine_similarity``) and ``figures/filters.png`` shows them side by side::

    python -m experiments.main --config=experiments/configs/steerable.py \
        --workdir=/tmp/steerable_paper

  Measured on 2 shared CPU cores (9 steps/s, 9.5 minutes): cosine similarities 0.968, 0.995,
  0.991, 0.995, 0.996, 0.994, 0.993, 0.998 at 0, 45, ..., 315 degrees; test MSE 2.9e-6 against
  a target mean square of 2.7e-3.

* ``baseline``: the same data and schedule, but a **static** learned 9x9 filter that ignores
  ``theta`` (an ordinary convolutional layer, no filter-generating network). The mean target filter
  over ``theta`` is zero, so it can only learn a near-zero filter; its test MSE is the targets'
  mean square (``test.target_mean_square``), the error the dynamic filter removes::

    python -m experiments.main --config=experiments/configs/steerable.py:baseline \
        --workdir=/tmp/steerable_baseline

* ``,cos_sin`` (with ``paper``): the network reads ``(cos theta, sin theta)`` instead of the raw
  angle.

``--config.data.source=mnist`` trains on MNIST digits (resized to 56x56 and centred on 64x64)
instead of the textures; ``data.mnist_dir`` defaults to the ``DFN_MNIST_DIR`` environment variable.
"""

from __future__ import annotations

import os

import ml_collections

from dfn_jax.training.config import base_config, parse_config_arg

VARIANTS = ("paper", "baseline", "cos_sin")
TEST_SET_SEED = 2016
"""Seed of the fixed test set: example ``i`` is made from ``fold_in(key(TEST_SET_SEED), i)``."""


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_config_arg(arg, name="steerable", variants=VARIANTS, default="paper")
    tokens = args.tokens
    baseline = "baseline" in tokens
    if baseline and "cos_sin" in tokens:
        raise ValueError(
            "The `baseline` variant ignores theta; it cannot be combined with cos_sin."
        )

    config = base_config(experiment="dfn.steerable", variant=args.variant)

    config.batch_size = 64
    config.learning_rate = 1e-3
    config.lr_schedule = "step_halving"
    config.lr_halve_every_steps = 1000
    config.grad_clip_norm = 0.0
    config.num_train_steps = 5000
    config.log_every_steps = 100
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
    config.checkpoints_to_keep = 3
    config.num_eval_examples = 1024
    config.eval_batch_size = 256
    config.num_figure_examples = 3

    config.data.source = "textures"  # or "mnist"
    config.data.image_size = 64
    config.data.filter_size = 9  # the analytic target filter: 9 taps ...
    config.data.sigma = 1.0  # ... of Gaussian derivatives with sigma 1 px
    config.data.num_gabors = 4
    config.data.num_shapes = 4
    config.data.digit_size = 56
    config.data.mnist_dir = os.environ.get("DFN_MNIST_DIR", "")
    config.data.tfds_data_dir = ""
    config.data.download = True
    config.data.test_seed = TEST_SET_SEED

    config.model.filter_size = 9
    config.model.hidden_features = (64, 128)
    config.model.dynamic_filter = not baseline
    config.model.theta_encoding = "cos_sin" if "cos_sin" in tokens else "angle"
    config.model.leaky_relu_slope = 0.01
    config.model.init_scale = 2.0
    return args.apply(config)
