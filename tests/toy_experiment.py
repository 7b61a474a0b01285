"""A toy experiment: the smallest complete member of the zoo, written only in its own file.

Linear regression through BatchNorm and dropout, with noise drawn on device from the step's key
and a carried step counter. It exercises everything a new family relies on (the key, the model's
own RNG streams and batch statistics carried through the step, a carry, a config-chosen
optimiser) without compiling a DFN. Run it like any experiment::

    python -m experiments.main --config=tests/toy_experiment.py --workdir=/tmp/toy
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from dfn_jax.training import Experiment, base_config, parse_config_arg

FEATURES = 8


def get_config(arg: str | None = None):
    args = parse_config_arg(arg, name="toy", variants=("default",), default="default")
    config = base_config(experiment="tests.toy_experiment", variant=args.variant)
    config.batch_size = 8
    config.eval_batch_size = 8
    config.num_train_steps = 6
    config.log_every_steps = 1
    config.checkpoint_every_steps = 2
    config.learning_rate = 0.05
    config.num_eval_examples = 32
    config.host_sleep_s = 0.0  # slows each step on the host (kill-and-resume tests)
    config.model.dropout_rate = 0.5
    config.data.noise = 0.1
    return args.apply(config)


class ToyModel(nnx.Module):
    def __init__(self, features: int, dropout_rate: float, *, rngs: nnx.Rngs):
        self.norm = nnx.BatchNorm(features, rngs=rngs)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.linear = nnx.Linear(features, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.linear(self.dropout(self.norm(x)))[..., 0]


def _regression(keys: jax.Array) -> dict:
    x = jax.vmap(lambda k: jax.random.normal(k, (FEATURES,)))(keys)
    w = jnp.arange(1.0, FEATURES + 1.0) / FEATURES
    return {"x": x, "y": x @ w + 1.0}


class Toy(Experiment):
    config_keys = frozenset({"num_eval_examples", "host_sleep_s"})
    data_keys = frozenset({"noise"})

    def build_model(self, rngs: nnx.Rngs) -> ToyModel:
        return ToyModel(FEATURES, self.config.model.dropout_rate, rngs=rngs)

    def train_batch(self, step, rows=None):
        if self.config.host_sleep_s:
            time.sleep(self.config.host_sleep_s)
        return _regression(self.example_keys(step, rows))

    def loss(self, model, batch, key):
        noise = self.config.data.noise * jax.random.normal(key, batch["y"].shape)
        mse = jnp.mean(jnp.square(model(batch["x"]) - (batch["y"] + noise)))
        # One more draw from the dropout layer's own stream, logged as a fingerprint of its mask.
        mask = model.dropout(jnp.ones(FEATURES))
        fingerprint = jnp.sum(mask * jnp.arange(1.0, FEATURES + 1.0))
        return mse, {"mse": mse, "dropout_fingerprint": fingerprint, "noise_sum": jnp.sum(noise)}

    def init_carry(self):
        return {"count": jnp.zeros((), jnp.int32)}

    def carried_loss(self, model, batch, key, carry):
        loss, metrics = self.loss(model, batch, key)
        count = carry["count"] + 1
        return loss, dict(metrics, carry_count=count), {"count": count}

    def eval_batches(self, rows=None):
        keys = jax.random.split(jax.random.key(2016), self.config.num_eval_examples)
        for index in self.eval_indices(self.config.num_eval_examples, rows):
            yield _regression(keys[np.asarray(index)])

    def eval_sums(self, model, batch):
        error = jnp.square(model(batch["x"]) - batch["y"])
        return {"mse": jnp.sum(error), "count": jnp.asarray(error.shape[0], jnp.float32)}


EXPERIMENT = Toy
