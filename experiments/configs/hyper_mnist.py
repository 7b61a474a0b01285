r"""MNIST with a static hypernetwork (Ha, Dai, Le, HyperNetworks, arXiv 1609.09106 v4, Sec. 4.1).

``--config=experiments/configs/hyper_mnist.py[:VARIANT]``; variants:

* ``paper`` (default): the second 7x7x16x16 convolution's kernel generated from one 4-number
  embedding by a static hypernetwork (``N_z = d = 4``): **12,910** parameters (4,240 in the
  hypernetwork, 4 in the embedding). Paper: 0.76% test error; the authors' notebook: 0.79%.
* ``conventional``: the same network with a learned kernel: **21,210** parameters. Paper: 0.72%;
  notebook: 0.77%.

Both use the authors' notebook schedule: batch 1,000, Adam 0.005 decayed x0.999 per step with a
floor of 1e-4, global-norm clipping at 100, 50 epochs of the 55,000 training digits, random
28x28 crops of the digits padded to 30x30; the validation (5,000) and test (10,000) sets are
evaluated every epoch and ``results.json``'s ``best`` holds the test error at the best validation
epoch::

    python -m experiments.main --config=experiments/configs/hyper_mnist.py \
        --config.data.mnist_dir=../shared/data/mnist --workdir=/tmp/hyper_mnist_paper

``--config.model.z_dim=N`` changes the embedding size (the sweep of docs/RESULTS.md).
``data.mnist_dir`` defaults to the ``DFN_MNIST_DIR`` environment variable.
"""

from __future__ import annotations

import os

import ml_collections

from dfn_jax.training.config import base_config, parse_config_arg

VARIANTS = ("paper", "conventional")
STEPS_PER_EPOCH = 55  # 55,000 training digits in batches of 1,000


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_config_arg(arg, name="hyper_mnist", variants=VARIANTS, default="paper")
    if len(args.tokens) != 1:
        raise ValueError(f"Pick one hyper_mnist variant of {VARIANTS}, got {args.variant!r}.")
    config = base_config(experiment="hypernet.mnist", variant=args.variant)

    config.batch_size = 1000
    config.num_train_steps = 50 * STEPS_PER_EPOCH
    config.learning_rate = 0.005
    config.lr_schedule = "exponential"
    config.lr_decay_rate = 0.999
    config.lr_transition_steps = 1
    config.lr_end_value = 1e-4
    config.grad_clip_norm = 100.0
    config.log_every_steps = STEPS_PER_EPOCH
    config.eval_every_steps = STEPS_PER_EPOCH  # every epoch: validation and test
    config.checkpoint_every_steps = 5 * STEPS_PER_EPOCH
    config.eval_batch_size = 1000
    config.select_best_by = "val_error"
    config.crop_padding = 1  # 28 -> 30 -> random 28 crop

    config.data.mnist_dir = os.environ.get("DFN_MNIST_DIR", "")
    config.data.tfds_data_dir = ""
    config.data.download = True
    config.data.validation_size = 5000

    config.model.features = 16
    config.model.kernel_size = 7
    config.model.num_classes = 10
    config.model.image_size = 28
    config.model.hypernetwork = "conventional" not in args
    config.model.z_dim = 4
    return args.apply(config)
