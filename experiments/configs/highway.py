r"""Highway-driving video prediction with the recurrent DFN (De Brabandere et al. 2016, Sec. 4.2).

``--config=experiments/configs/highway.py[:VARIANT]``; variants:

* ``paper`` (default): the paper's model (368,122 parameters: 2 frames in, 11x11 softmax filters
  and a dynamic bias, untied biases on the first conv, a recurrent state; see
  :mod:`dfn_jax.models.dfn.highway`) with the authors' batch size and learning rate (batch 16, Adam
  1e-3, halved every 4,000 steps: orig. code, 20 epochs of 200 batches), but a CPU-sized number of
  steps, so that the command finishes in a few minutes on 2 CPU cores::

    python -m experiments.main --config=experiments/configs/highway.py --workdir=/tmp/highway

  With ``data.path`` empty it trains on the procedural road-scene stand-in (no download). The
  authors' schedule (100 epochs of 200 batches = 20,000 steps) is a GPU job::

    python -m experiments.main --config=experiments/configs/highway.py \
        --config.data.path=highwayDriving_train.h5 --config.data.test_path=highwayDriving_test.h5 \
        --config.num_train_steps=20000 --config.eval_every_steps=2000 --workdir=/tmp/highway_paper

  Their README reports a test MSE of 13.39 per 64x64 image (0.003270 per pixel) after that.

* ``baseline``: the same network with a 1x1 conv to the frame instead of the dynamic filter
  (368,245 parameters; README: 15.08 per image). Same learning rate as the DFN (orig. code).

Data (``data.*``): ``path`` an HDF5 file (dataset ``data.dataset``, ``highway_L`` by default) or a
folder of 64x64 frame images; the last ``test_fraction`` of its frames is the test set unless
``test_path`` names a separate test video. ``swap_hw=True`` transposes each frame, as the authors'
loader did for their files (unverified). Not stated anywhere we could check: the frame rate and
the exact train/test split of the recording, and how many test windows the README's numbers
average over.
"""

from __future__ import annotations

import ml_collections

from dfn_jax.training.config import base_config, parse_config_arg

VARIANTS = ("paper", "baseline")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_config_arg(arg, name="highway", variants=VARIANTS, default="paper")
    tokens = args.tokens
    baseline = "baseline" in tokens

    config = base_config(experiment="dfn.highway", variant=args.variant)

    # The authors' optimiser settings (orig. code); a CPU-sized number of steps.
    config.batch_size = 16
    config.learning_rate = 1e-3
    config.lr_schedule = "step_halving"
    config.lr_halve_every_steps = 4000
    config.grad_clip_norm = 0.0
    config.num_train_steps = 30  # The authors': 20,000 (a GPU job).
    config.log_every_steps = 5
    config.eval_every_steps = 0
    config.checkpoint_every_steps = 10
    config.checkpoints_to_keep = 3
    config.num_eval_sequences = 64
    config.eval_batch_size = 16
    config.num_figure_sequences = 3

    config.data.path = ""  # Empty: the procedural stand-in.
    config.data.test_path = ""  # Empty: hold out the last `test_fraction` of `path`.
    config.data.dataset = "highway_L"
    config.data.swap_hw = False
    config.data.test_fraction = 0.1
    config.data.image_size = 64
    config.data.test_seed = 2016  # The stand-in's fixed test sequences.

    config.model.filter_size = 11
    config.model.dynamic_filter = not baseline
    config.model.dynamic_bias = True
    config.model.num_input_frames = 3
    config.model.num_output_frames = 3
    config.model.generator_frames = 2
    config.model.encoder_features = (32, 32, 64, 64)
    config.model.decoder_features = (64, 32, 64)
    config.model.head_features = 128
    config.model.recurrent = True
    config.model.untied_bias_layer = 0
    config.model.unroll = "auto"  # Full unroll on CPU (jax issue 12868), rolled elsewhere.
    # Memory and speed (README "Scaling out"): "bfloat16" computes the convolutions in bfloat16
    # (parameters, softmax, filtering, predictions and loss stay float32); remat recomputes each
    # recurrent step in the backward pass instead of storing its activations.
    config.model.dtype = "float32"
    config.model.remat = False
    return args.apply(config)
