r"""Moving MNIST with the recurrent Dynamic Filter Network (De Brabandere et al. 2016, Sec. 4.1).

``--config=experiments/configs/moving_mnist.py:VARIANT[,baseline]``; variants:

* ``shapes`` (default): the embedded bouncing-shapes data (32x32 frames, one 14-pixel sprite
  moving by the same whole pixels every frame), no download, a small model that reads five
  frames, trained with teacher forcing and a schedule sized to train in under 5 minutes on 2 CPU
  cores; its ten closed-loop predictions follow the sprite (SSIM between about 0.7 and 0.92
  with the machine and ``--config.seed``; docs/RESULTS.md). The README's quick start::

    python -m experiments.main --config=experiments/configs/moving_mnist.py \
        --workdir=/tmp/dfn_moving_mnist

* ``quick``: real MNIST digits, a CPU-sized model (narrow widths) and schedule::

    python -m experiments.main --config=experiments/configs/moving_mnist.py:quick \
        --config.data.mnist_dir=../shared/data/mnist --workdir=/tmp/mm_quick

  (add ``,baseline`` for the baseline); docs/RESULTS.md holds what it reached.

* ``paper``: the paper's model (637,361 parameters) and schedule: batch 16, Adam 1e-3 halved
  every 4,000 steps, 20,000 steps, evaluation on 10,000 test sequences. Paper: 285.2 nats/frame.
  A GPU job: XLA counts 1.24 TFLOP per training step (benchmarks/train_step.py); on one H200
  the 20,000 steps take 9 minutes and reach 281.8 nats/frame (docs/RESULTS.md). The trained
  model ships as ``dfn_jax.pretrained.load("moving_mnist_paper")``.

* ``baseline``: the paper's baseline (637,443 parameters: a 1x1 convolution to one channel
  replaces the dynamic filter; lr 1e-4 as in the original code). Paper: 432.5 nats/frame.

``data.mnist_dir`` defaults to the ``DFN_MNIST_DIR`` environment variable.
"""

from __future__ import annotations

import os

import ml_collections

from dfn_jax.data.moving_mnist import TEST_SET_SEED
from dfn_jax.training.config import base_config, parse_config_arg

VARIANTS = ("shapes", "quick", "paper", "baseline")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_config_arg(arg, name="moving_mnist", variants=VARIANTS, default="shapes")
    tokens = args.tokens
    baseline = "baseline" in tokens
    variant = next((t for t in tokens if t != "baseline"), "paper" if baseline else "shapes")

    config = base_config(experiment="dfn.moving_mnist", variant=args.variant)

    # The paper's setup; variants below shrink it.
    config.batch_size = 16
    config.learning_rate = 1e-4 if baseline else 1e-3
    config.lr_schedule = "step_halving"
    config.lr_halve_every_steps = 4000
    config.grad_clip_norm = 0.0
    config.num_train_steps = 20_000
    config.log_every_steps = 50
    config.eval_every_steps = 2000
    config.checkpoint_every_steps = 1000
    config.checkpoints_to_keep = 3
    config.num_eval_sequences = 10_000
    # Evaluation batches must divide the test set and be divisible by the number of devices:
    # 80 divides 10,000 and works on 1, 2, 4, 8 or 16 devices.
    config.eval_batch_size = 80
    config.num_figure_sequences = 4

    config.data.source = "mnist"
    config.data.mnist_dir = os.environ.get("DFN_MNIST_DIR", "")
    config.data.tfds_data_dir = ""
    config.data.download = True
    config.data.image_size = 64
    config.data.num_objects = 2
    config.data.step_length = 0.1
    config.data.whole_pixel_steps = False  # shapes only: the same whole-pixel step every frame
    config.data.sprite_size = 28  # shapes only: the sprites' box (extents 10/28 to 20/28 of it)
    config.data.test_seed = TEST_SET_SEED  # The documented fixed test set (sha256 tested).

    config.model.filter_size = 9
    config.model.dynamic_filter = not baseline
    config.model.recurrence = "additive"
    config.model.encoder_features = (32, 32, 64, 64, 128)
    config.model.decoder_features = (64, 64, 64, 64)
    config.model.hidden_features = 128
    config.model.head_features = 128
    config.model.num_input_frames = 10
    config.model.num_output_frames = 10
    config.model.teacher_forcing = False
    config.model.unroll = "auto"  # "auto": full unroll on CPU (jax issue 12868), rolled elsewhere.
    # Memory and speed (README "Scaling out"): "bfloat16" computes the convolutions in bfloat16
    # (parameters, softmax, filtering, predictions and loss stay float32); remat recomputes each
    # recurrent step in the backward pass instead of storing its activations.
    config.model.dtype = "float32"
    config.model.remat = False
    config.model.centre_tap_logit = 0.0  # > 0: filters start as a copy of the frame read

    if variant in ("quick", "shapes"):
        config.model.encoder_features = (8, 8, 16, 16, 32)
        config.model.decoder_features = (16, 16, 16, 16)
        config.model.hidden_features = 32
        config.model.head_features = 32
        config.batch_size = 8
        config.learning_rate = 1e-3
        config.eval_batch_size = 20  # divides 100 and 200; 1, 2 or 4 devices
        config.log_every_steps = 25
    if variant == "quick":
        config.num_train_steps = 700
        config.lr_halve_every_steps = 300
        config.eval_every_steps = 350
        config.checkpoint_every_steps = 100
        config.num_eval_sequences = 200
    if variant == "shapes":
        # Chosen (docs/RESULTS.md, "Embedded data") to train in under 5 minutes on 2 CPU cores
        # and follow the motion: 32x32 frames with one 14-pixel sprite moving by the same whole
        # pixels every frame, five context frames, teacher forcing (tested closed loop), Adam
        # 5e-3 with a cosine decay over 1,600 steps.
        config.data.source = "shapes"
        config.data.image_size = 32
        config.data.sprite_size = 14
        config.data.num_objects = 1
        config.data.step_length = 0.1
        config.data.whole_pixel_steps = True
        config.model.num_input_frames = 5
        config.model.teacher_forcing = True
        config.num_train_steps = 1600
        config.learning_rate = 5e-3
        config.lr_schedule = "cosine"
        config.lr_warmup_steps = 20
        config.lr_halve_every_steps = 0
        config.eval_every_steps = 0
        config.checkpoint_every_steps = 400
        config.num_eval_sequences = 100
    return args.apply(config)
