"""Optimizers as optax transforms: the coordinatewise LSTM optimizer of "Learning to learn by
gradient descent by gradient descent" (Andrychowicz et al., 2016), its gradient preprocessing,
and loading meta-trained ones (:func:`load_learned_optimizer`)."""

from dfn_jax.optim.learned_io import (
    available_learned_optimizers,
    learned_optimizer_info,
    load_learned_optimizer,
    load_meta_params,
    save_learned_optimizer,
)
from dfn_jax.optim.lstm_optimizer import (
    LSTMOptimizerState,
    init_meta_params,
    lstm_optimizer,
    preprocess_gradients,
)

__all__ = [
    "LSTMOptimizerState",
    "available_learned_optimizers",
    "init_meta_params",
    "learned_optimizer_info",
    "load_learned_optimizer",
    "load_meta_params",
    "lstm_optimizer",
    "preprocess_gradients",
    "save_learned_optimizer",
]
