r"""Character-level Penn Treebank with HyperLSTMs (Ha, Dai, Le, HyperNetworks, arXiv 1609.09106
v4, Sec. 4.4, Table 3).

``--config=experiments/configs/hyper_ptb.py[:VARIANT]``; variants (paper test / valid bpc and
parameter counts; one-hot inputs, 50 symbols, one softmax):

* ``paper`` (default): HyperLSTM 1000 units, hyper cell 128, ``N_z`` 4: **4,911,874**
  parameters; paper 1.265 / 1.296.
* ``ln``: LN HyperLSTM: **4,923,154**; paper 1.250 / 1.281.
* ``lstm``: LSTM 1000: **4,254,050**; paper 1.312 / 1.347.
* ``ln_lstm``: LN LSTM 1000: **4,264,050**; paper 1.267 / 1.300.
* ``small``: a CPU-sized HyperLSTM (256 units, hyper cell 64, ``N_z`` 4): 437,586 parameters.
* ``small_lstm``: an LSTM of the same size (300 units): 436,250 parameters.

The paper's setup: batch 128, sequences of 100 characters with the hidden state carried from
segment to segment (truncated backpropagation through time), Adam 0.001, global-norm clipping
1.0, dropout keep 0.9 on the inputs, the outputs and (recurrent dropout) the cell candidate; the
number of epochs is not stated. The paper variants are GPU jobs. On 2 CPU cores the small pair
runs with the same wall-clock budget (``max_train_time_s``) and their validation curves are
compared (docs/RESULTS.md)::

    python -m experiments.main --config=experiments/configs/hyper_ptb.py:small \
        --config.data.ptb_dir=../shared/data/ptb --workdir=/tmp/hyper_ptb_small

``data.ptb_dir`` defaults to the ``DFN_PTB_DIR`` environment variable. Evaluation covers the
whole validation and test streams, each as ``eval_rows`` contiguous rows with the state carried
through (1: the exact sequential number).
"""

from __future__ import annotations

import os

import ml_collections

from dfn_jax.training.config import base_config, parse_config_arg

VARIANTS = ("paper", "ln", "lstm", "ln_lstm", "small", "small_lstm")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_config_arg(arg, name="hyper_ptb", variants=VARIANTS, default="paper")
    if len(args.tokens) != 1:
        raise ValueError(f"Pick one hyper_ptb variant of {VARIANTS}, got {args.variant!r}.")
    (variant,) = args.tokens
    config = base_config(experiment="hypernet.ptb", variant=variant)

    config.batch_size = 128
    config.seq_length = 100
    config.learning_rate = 1e-3
    config.grad_clip_norm = 1.0
    config.num_train_steps = 50 * 391  # 50 epochs of 391 segments; not stated in the paper
    config.log_every_steps = 50
    config.eval_every_steps = 391
    config.checkpoint_every_steps = 391
    config.eval_rows = 1
    config.eval_batch_size = 1
    config.select_best_by = "val_bpc"
    config.mesh.data = 1  # evaluation streams are one row; use -1 with eval_rows = devices

    config.data.ptb_dir = os.environ.get("DFN_PTB_DIR", "")

    config.model.vocab_size = 50
    config.model.cell = "lstm" if "lstm" in variant else "hyper"
    config.model.layer_norm = variant in ("ln", "ln_lstm")
    config.model.hidden_features = 1000
    config.model.hyper_features = 128
    config.model.z_dim = 4
    config.model.embedding_features = 0
    config.model.input_dropout = 0.1
    config.model.output_dropout = 0.1
    config.model.recurrent_dropout = 0.1
    config.model.forget_bias = 0.0
    config.model.epsilon = 1e-5
    config.model.hyper_first = False
    config.model.unroll = 1
    if variant.startswith("small"):
        config.model.hidden_features = 300 if variant == "small_lstm" else 256
        config.model.hyper_features = 64
        config.max_train_time_s = 1800.0  # the same wall-clock budget for both
        config.log_every_steps = 25
        config.eval_every_steps = 100
        config.checkpoint_every_steps = 100
        config.eval_rows = config.eval_batch_size = 16  # 16 contiguous rows per stream
    return args.apply(config)
