r"""One-shot character recognition on Omniglot with learnets (Bertinetto, Henriques, Valmadre,
Torr, Vedaldi, "Learning feed-forward one-shot learners", NIPS 2016, arXiv 1606.05233).

``--config=experiments/configs/learnet_omniglot.py[:VARIANT]``; the variant names the model:

* ``learnet`` (default; the paper's best): a single-stream learnet reads the exemplar and predicts
  the per-channel filters of the pupil's last (factorised) convolution, which then processes the
  query (28.75% error on the official runs after the default 4,000 steps, 7 minutes of training
  on 2 CPU cores; 19.75% with ``--config.num_train_steps=32000``; 16.75% after 16,000 steps
  with ``by_drawer`` and ``rotations``, below). Reading the pupil's features
  instead of the image (``--config.model.learnet_input=pupil --config.model.learnet_features=48``,
  the same parameter count) with ``--config.num_train_steps=16000`` gives 12.0%; adding
  ``--config.model.exemplar_template=True`` (the exemplar's own features added to the predicted
  filters, 64 more parameters) gives 12.0% too, and 23.5% on 20-way episodes within an alphabet
  against 27.7% without it and 26.2% for the same-size siamese network trained as long.
  Training on episodes built as the official runs are, with rotated characters as extra classes
  (``--config.data.by_drawer=True --config.data.rotations=True``), gives 9.75%; moving the
  parameter budget from the learnet into the pupil as well
  (``--config.model.channels="(42,42,84,84)" --config.model.learnet_features=16``, 92,923
  parameters) gives 7.75%: the shipped
  ``pretrained.load("learnet_omniglot")``, level with the same-size siamese network trained that
  way (7.75%, shipped as ``learnet_omniglot_siamese``; docs/RESULTS.md);
* ``siamese``: one embedding for both images and a learned weighted-L1 score;
* ``siamese_unshared``: the same with separate exemplar and query embeddings (20.5% on the
  official runs after 16,000 steps with ``by_drawer`` and ``rotations``);
* ``siamese_learnet``: the learnet predicts the embedding applied to both images (15.25% on the
  official runs after 4,000 steps, 13.5% for the same-size ``siamese``; 10.25% after 16,000 steps
  with ``by_drawer`` and ``rotations``, shipped as ``learnet_omniglot_siamese_learnet``);
* ``learnet_unfactorised``: ``learnet`` predicting whole kernels (the ablation: 25x the
  parameters, the same 28.75% after 4,000 steps; 16.75% after 16,000 steps with ``by_drawer``
  and ``rotations``, again the factorised learnet's: level on every test set).

The baselines are sized to the learnet's parameter count (``results.json``: ``num_params``).
Training: 20-way one-shot episodes within one background alphabet (Lake et al.'s protocol: the
evaluation runs are within an alphabet), one query per class, softmax over the 20 scores
(``loss=pairwise``: the logistic loss on every query-exemplar pair, the paper's, unverified;
with it the shipped learnet's recipe gives 10.25% on the official runs and the same-size
siamese network 23.5%, the paper's ranking, where with the episodic loss the two are level),
Adam with a cosine schedule.
Five background alphabets are held out for validation (random 20-way episodes within them) and
select the best evaluation. The test sets, from the 20 evaluation alphabets only: Lake et al.'s
20 official runs (``test.official_runs_error``, percent over the 400 trials; their Modified
Hausdorff baseline: 38.8%), and 1,000 random 20-way and 5-way one-shot episodes within and
across alphabets, with 95% confidence intervals. CPU-sized (28x28 images)::

    python -m experiments.main --config=experiments/configs/learnet_omniglot.py:learnet \
        --config.data.omniglot_dir=../shared/data/omniglot --workdir=workdirs/learnet_omniglot

``data.omniglot_dir`` defaults to the ``DFN_OMNIGLOT_DIR`` environment variable.
"""

from __future__ import annotations

import os

import ml_collections
from ml_collections.config_dict import placeholder

from dfn_jax.training.config import base_config, parse_config_arg

VARIANTS = ("learnet", "siamese", "siamese_unshared", "siamese_learnet", "learnet_unfactorised")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_config_arg(arg, name="learnet_omniglot", variants=VARIANTS, default="learnet")
    if len(args.tokens) != 1:
        raise ValueError(f"Pick one learnet_omniglot variant of {VARIANTS}, got {args.variant!r}.")
    config = base_config(experiment="learnet.omniglot", variant=args.variant)

    config.batch_size = 8  # episodes per step
    config.num_train_steps = 4000
    config.learning_rate = 1e-3
    config.lr_schedule = "cosine"
    config.lr_warmup_steps = 200
    config.log_every_steps = 100
    config.eval_every_steps = 0  # the full evaluation takes minutes on a CPU: at the end only
    config.checkpoint_every_steps = 500
    config.eval_batch_size = 20  # episodes: the 20 official runs are one batch
    config.select_best_by = "val_error"
    config.loss = "episodic"  # or "pairwise"
    config.num_ways = 20
    config.num_train_queries = 4  # per training episode, of different classes
    config.num_val_episodes = 200
    config.num_test_episodes = 1000
    config.num_official_runs = 20  # the first k of Lake et al.'s 20 runs (all: the benchmark)
    config.num_figure_runs = 2

    config.data.omniglot_dir = os.environ.get("DFN_OMNIGLOT_DIR", "")
    config.data.download = True
    config.data.image_size = 28
    config.data.num_val_alphabets = 5
    config.data.rotations = False
    config.data.within_alphabet = True
    # Training episodes built as the official runs are: all exemplars by one drawer, all queries
    # by another (dfn_jax.data.episodes); False: each image's drawer drawn on its own.
    config.data.by_drawer = False

    config.model.variant = args.variant
    # dfn_jax.models.learnet.LearnetConfig; the baselines' widths are matched to the learnet's
    # parameter count unless given.
    config.model.image_size = config.data.get_ref("image_size")
    config.model.channels = (32, 32, 64, 64)
    config.model.kernel_size = 3
    config.model.embedding_dim = 64
    config.model.learnet_channels = (16, 16, 32, 32)
    config.model.learnet_features = 64
    # "image": the learnet's own convnet on the exemplar; "pupil": one linear layer on the
    # exemplar's pupil features before the predicted layer (docs/RESULTS.md).
    config.model.learnet_input = "image"
    # The single-stream learnet's score: "linear" (a head on ReLU of the pupil's embedding) or
    # "l1" (the weighted L1 distance to a centre the learnet predicts).
    config.model.score = "linear"
    # Reading the pupil: add the exemplar's own features to the predicted filters, so that the
    # layer cross-correlates query and exemplar (dfn_jax.models.learnet.LearnetConfig).
    config.model.exemplar_template = False
    # The last convolution's filters: learns fastest (docs/RESULTS.md, "Which layer to predict").
    config.model.predicted_layers = (3,)
    config.model.rank = placeholder(int)
    config.model.factorized = True  # the variant learnet_unfactorised sets False
    config.model.predict_linear = False
    config.model.linear_rank = placeholder(int)
    config.model.siamese_width = placeholder(int)
    config.model.unshared_width = placeholder(int)
    return args.apply(config)
