r"""Stereo prediction with a Dynamic Filter Network (De Brabandere et al. 2016, Sec. 4.3).

``--config=experiments/configs/stereo.py[:VARIANT]``; variants:

* ``paper`` (default): the paper's model (464,494 parameters: 1x13 horizontal softmax filters and
  a dynamic bias, untied biases on the fifth conv; see :mod:`dfn_jax.models.dfn.stereo`) with the
  authors' batch size and learning rate (batch 16, Adam 1e-3 halved every 4,000 steps: orig.
  code), but a CPU-sized number of steps, so that the command finishes in a few minutes on 2 CPU
  cores::

    python -m experiments.main --config=experiments/configs/stereo.py --workdir=/tmp/stereo

  With ``data.path`` empty it trains on the procedural stand-in (two views of a road scene with
  known disparity, at most ``data.max_disparity`` pixels); the figure ``stereo.png`` shows the
  disparity read off the learned filters beside the true one. The authors' schedule (100 epochs
  of 200 batches = 20,000 steps) is a GPU job::

    python -m experiments.main --config=experiments/configs/stereo.py \
        --config.data.path=highwayDriving_train.h5 --config.data.test_path=highwayDriving_test.h5 \
        --config.num_train_steps=20000 --workdir=/tmp/stereo_paper

  Their README reports a test MSE of 1.35 per 64x64 image (0.000330 per pixel).

* ``baseline``: a 1x1 conv to the image instead of the dynamic filter (464,509 parameters;
  README: 1.70 per image). Same learning rate as the DFN (orig. code).

Data (``data.*``): ``path`` an HDF5 file with the datasets ``data.datasets`` (``highway_L``,
``highway_R``) or a folder with ``left/`` and ``right/`` image subfolders; the last
``test_fraction`` of the pairs is the test set unless ``test_path`` is given. Not stated anywhere
we could check: the recording's baseline and disparity range (1x13 filters cover +-6 px), and
which pairs the README's numbers average over (its table calls the data "Stereo Cars").
"""

from __future__ import annotations

import ml_collections

from dfn_jax.training.config import base_config, parse_config_arg

VARIANTS = ("paper", "baseline")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_config_arg(arg, name="stereo", variants=VARIANTS, default="paper")
    tokens = args.tokens
    baseline = "baseline" in tokens

    config = base_config(experiment="dfn.stereo", variant=args.variant)

    # The authors' optimiser settings (orig. code); a CPU-sized number of steps.
    config.batch_size = 16
    config.learning_rate = 1e-3
    config.lr_schedule = "step_halving"
    config.lr_halve_every_steps = 4000
    config.grad_clip_norm = 0.0
    config.num_train_steps = 150  # The authors': 20,000 (a GPU job).
    config.log_every_steps = 10
    config.eval_every_steps = 0
    config.checkpoint_every_steps = 50
    config.checkpoints_to_keep = 3
    config.num_eval_sequences = 128
    config.eval_batch_size = 32
    config.num_figure_sequences = 3

    config.data.path = ""  # Empty: the procedural stand-in.
    config.data.test_path = ""  # Empty: hold out the last `test_fraction` of `path`.
    config.data.datasets = ("highway_L", "highway_R")
    config.data.swap_hw = False
    config.data.test_fraction = 0.1
    config.data.image_size = 64
    config.data.max_disparity = 5.0  # The stand-in's largest disparity (px).
    config.data.test_seed = 2016  # The stand-in's fixed test pairs.

    config.model.filter_size = 13
    config.model.dynamic_filter = not baseline
    config.model.dynamic_bias = True
    config.model.encoder_features = (32, 32, 64, 64, 128)
    config.model.decoder_features = (64, 64, 64, 64)
    config.model.head_features = 128
    config.model.untied_bias_layer = 4
    return args.apply(config)
