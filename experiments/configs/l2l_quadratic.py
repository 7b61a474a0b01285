r"""Learned optimizer on quadratics (Andrychowicz et al., "Learning to learn by gradient descent by
gradient descent", NIPS 2016, Sec. 3.1)::

    python -m experiments.main --config=experiments/configs/l2l_quadratic.py \
        --workdir=workdirs/l2l_quadratic

Two LSTM layers of 20 units shared by the 10 coordinates, raw gradients in and updates out (no
preprocessing, no output scale, as the paper's quadratics); 100 optimization steps per problem
unrolled in truncations of 20; per meta-step 128 fresh problems (``meta.num_problems``), the
meta-loss the sum of the losses after each step (``meta.step_weights=uniform``, the paper's;
``linear`` weighs step ``t`` by ``2 t / (unroll_steps + 1)``), Adam 0.003 on the optimizer's
weights; validation on 100 fixed problems every 10 meta-epochs, the best kept. Then SGD,
RMSprop, Adam and Nesterov momentum, each with its learning rate tuned on a half-decade grid on
100 tuning problems, against the learned optimizer on 100 test problems, 10-dimensional (the
training distribution) and 20-dimensional (never seen).

``:preprocessed`` feeds the LSTM the paper's MNIST gradient preprocessing (p = 10: log-magnitude
and sign) instead of the raw gradients: the one change that lets it generalise to larger
quadratics than it was trained on (docs/RESULTS.md); it ships as
``load_learned_optimizer("quadratic")``, the paper's raw-gradient one as ``"quadratic_paper"``.

``--config.learned.load=NAME_OR_PATH`` evaluates a saved (or shipped) optimizer without
meta-training. ``task.distribution=uniform`` draws ``W, y`` in [0, 1) as the authors' code does.
"""

from __future__ import annotations

import ml_collections

from dfn_jax.training.config import parse_config_arg

VARIANTS = ("paper", "preprocessed")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_config_arg(arg, name="l2l_quadratic", variants=VARIANTS, default="paper")
    config = ml_collections.ConfigDict()
    config.experiment = "l2l.quadratic"
    config.variant = args.variant
    config.seed = 0
    config.log_every_steps = 50
    config.checkpoint_every_steps = 250
    config.checkpoints_to_keep = 2

    config.task = ml_collections.ConfigDict(
        {"dim": 10, "distribution": "gaussian", "init_scale": 0.01}
    )
    config.learned = ml_collections.ConfigDict(
        {
            "hidden_size": 20,
            "num_layers": 2,
            "preprocess": False,
            "preprocess_p": 10.0,
            "output_scale": 1.0,
            "zero_output": False,
            # A shipped name or the path of a saved optimizer: no meta-training, that optimizer
            # evaluated against the tuned baselines.
            "load": "",
            # A shipped name or the path of a saved optimizer: meta-training starts from its
            # meta-parameters (same settings and size) instead of fresh ones.
            "init_from": "",
        }
    )
    config.meta = ml_collections.ConfigDict(
        {
            "num_epochs": 300,
            "num_problems": 128,
            "unroll_steps": 100,
            "truncation": 20,
            "learning_rate": 0.003,
            # "constant", or "cosine": decayed to 0 over the meta-training (optax's cosine decay).
            "lr_schedule": "constant",
            "grad_clip_norm": 0.0,
            "second_order": False,
            "eval_every_epochs": 10,
            "num_val_problems": 100,
            "unroll": "auto",  # of each truncation's scan: fully unrolled on CPU
            # Weights of the meta-loss's f(theta_t): "uniform" (all 1, the paper's) or "linear"
            # (w_t = 2 t / (unroll_steps + 1) over the whole unroll: later steps count more).
            "step_weights": "uniform",
            # Non-empty: each meta-epoch's unroll drawn from these (multiples of `truncation`)
            # instead of `unroll_steps`, validation at the longest (a mix of horizons).
            "unroll_choices": (),
        }
    )
    config.evaluation = ml_collections.ConfigDict(
        {
            "steps": 100,  # the test horizon (steps_200 on MNIST: twice it), not meta.unroll_steps
            "num_test_problems": 100,
            "num_tuning_problems": 100,
            "lr_log10_min": -4.0,
            "lr_log10_max": 1.0,
            # False: the learned optimizer alone (no tuned baselines) on the test problems.
            "baselines": True,
        }
    )
    if args.variant == "preprocessed":
        config.learned.preprocess = True
    return args.apply(config)
