"""Data parallelism over a device mesh (8 fake CPU devices, set in conftest)."""

import jax
import numpy as np
import pytest

from dfn_jax.training import Trainer
from dfn_jax.training.validation import ConfigError
from experiments import main
from tests.helpers import tiny_config


def _train(num_devices, steps=3):
    config = tiny_config(batch_size=8, eval_batch_size=8, num_eval_sequences=8)
    config.mesh.data = num_devices
    experiment = main.make_experiment(config)
    trainer = Trainer(experiment)
    state = trainer.init_state()
    for step in range(steps):
        state, _ = trainer.train_step(state, trainer.train_batch(step))
    return trainer, jax.device_get(state["params"])


def test_eight_devices_reach_the_parameters_of_one_device_and_compile_once():
    assert jax.device_count() == 8
    trainer8, params8 = _train(8)
    _, params1 = _train(1)
    assert trainer8.mesh.size == 8
    assert trainer8.train_step._cache_size() == 1
    flat8, flat1 = jax.tree.leaves(params8), jax.tree.leaves(params1)
    for a, b in zip(flat8, flat1, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)


def test_unknown_keys_indivisible_batch_and_other_problems_are_listed_together():
    config = tiny_config(batch_size=6, learning_rate=-1.0, num_train_steps=0)
    config.mesh.data = 4
    config.model.filter_size = 4
    config.batchsize = 8  # typos in a forked config
    config.data.imagesize = 32
    with pytest.raises(ConfigError) as info:
        Trainer(main.make_experiment(config))
    message = str(info.value)
    assert "`batch_size` (6) must be divisible" in message
    assert "`learning_rate` must be a positive number" in message
    assert "`num_train_steps` must be a positive integer" in message
    assert "filter_size" in message
    assert "unknown config key `batchsize` (did you mean `batch_size`?)" in message
    assert "unknown config key `data.imagesize` (did you mean `data.image_size`?)" in message
