"""The shared trainer on the toy experiment (tests/toy_experiment.py): keys, model variables,
carry, optimisers by config, resume; no DFN is compiled."""

import json
import os
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dfn_jax.training import Checkpointer, Trainer, read_metrics, train_and_evaluate
from dfn_jax.training.config import override
from dfn_jax.training.optim import kernel_mask
from tests import toy_experiment as toy
from tests.helpers import REPO_ROOT


def _config(**overrides):
    config = toy.get_config()
    config.mesh.data = 1
    return override(config, overrides)


def _train(workdir, **overrides):
    return train_and_evaluate(toy.Toy(_config(**overrides)), workdir)


def _per_step(workdir, name):
    return {r["step"]: r[f"train/{name}"] for r in read_metrics(workdir) if f"train/{name}" in r}


def test_dropout_masks_and_keys_differ_between_steps_and_repeat_after_a_resume(tmp_path):
    _train(tmp_path / "whole", num_train_steps=6)
    masks = _per_step(tmp_path / "whole", "dropout_fingerprint")
    noise = _per_step(tmp_path / "whole", "noise_sum")
    assert len(set(masks.values())) > 3, masks  # a fresh mask (nearly) every step
    assert len(set(noise.values())) == 6, noise  # a fresh key every step

    _train(tmp_path / "resumed", num_train_steps=2)
    _train(tmp_path / "resumed", num_train_steps=6)
    assert _per_step(tmp_path / "resumed", "dropout_fingerprint") == masks
    assert _per_step(tmp_path / "resumed", "noise_sum") == noise
    assert _per_step(tmp_path / "resumed", "loss") == _per_step(tmp_path / "whole", "loss")


def test_batch_statistics_update_and_evaluation_uses_them():
    trainer = Trainer(toy.Toy(_config()))
    state = trainer.init_state()
    before = jax.device_get(state["model_state"]["norm"])
    for step in range(3):
        state, _ = trainer.train_step(state, trainer.train_batch(step))
    after = jax.device_get(state["model_state"]["norm"])
    assert not np.allclose(before["mean"], after["mean"])
    assert not np.allclose(before["var"], after["var"])
    # Evaluation runs in eval mode with the running statistics: it depends on them.
    initial = dict(jax.device_get(state["model_state"]), norm=before)
    frozen = trainer.evaluate(state["params"], jax.device_put(initial, trainer.replicated))
    moved = trainer.evaluate(state)
    assert frozen["mse"] != moved["mse"]


def test_init_state_again_after_a_donated_step():
    trainer = Trainer(toy.Toy(_config()))
    first = trainer.init_state()
    expected = jax.device_get(first["params"])
    trainer.train_step(first, trainer.train_batch(0))  # donates (deletes) `first`
    again = trainer.init_state()
    chex.assert_trees_all_equal(jax.device_get(again["params"]), expected)
    trainer.train_step(again, trainer.train_batch(0))


def test_carry_counts_steps_and_the_step_compiles_once():
    experiment = toy.Toy(_config())
    # chex raises if the loss is traced more than once, i.e. if the jitted step recompiles.
    experiment.carried_loss = chex.assert_max_traces(experiment.carried_loss, n=1)
    trainer = Trainer(experiment)
    state = trainer.init_state()
    for step in range(4):
        state, metrics = trainer.train_step(state, trainer.train_batch(step))
    assert int(state["carry"]["count"]) == 4 == int(metrics["carry_count"])
    assert trainer.train_step._cache_size() == 1


OPTIMIZERS = [
    (
        {"optimizer.name": "adam", "lr_schedule": "step_halving", "lr_halve_every_steps": 2},
        lambda: optax.adam(optax.exponential_decay(0.05, 2, 0.5, staircase=True)),
    ),
    (
        {
            "optimizer.name": "sgd",
            "optimizer.momentum": 0.9,
            "optimizer.nesterov": True,
            "lr_schedule": "piecewise",
            "lr_boundaries": (1, 3),
            "lr_scales": (0.2, 0.5),
        },
        lambda: optax.sgd(
            optax.piecewise_constant_schedule(0.05, {1: 0.2, 3: 0.5}), momentum=0.9, nesterov=True
        ),
    ),
    (
        {
            "optimizer.name": "rmsprop",
            "lr_schedule": "exponential",
            "lr_decay_rate": 0.9,
            "lr_end_value": 0.04,
            "grad_clip_norm": 0.5,
        },
        lambda: optax.chain(
            optax.clip_by_global_norm(0.5),
            optax.rmsprop(optax.exponential_decay(0.05, 1, 0.9, end_value=0.04), decay=0.9),
        ),
    ),
    (
        {
            "optimizer.name": "adamw",
            "optimizer.weight_decay": 0.1,
            "lr_schedule": "cosine",
            "lr_warmup_steps": 2,
        },
        lambda: optax.adamw(
            optax.join_schedules(
                [optax.linear_schedule(0.0, 0.05, 2), optax.cosine_decay_schedule(0.05, 2)], [2]
            ),
            weight_decay=0.1,
            mask=kernel_mask,
        ),
    ),
]


@pytest.mark.parametrize(
    "overrides,reference", OPTIMIZERS, ids=[o["optimizer.name"] for o, _ in OPTIMIZERS]
)
def test_config_chosen_optimizer_and_schedule_are_the_ones_applied(overrides, reference):
    overrides = dict(overrides, num_train_steps=4, **{"model.dropout_rate": 0.0})
    trainer = Trainer(toy.Toy(_config(**overrides)))
    experiment = trainer.experiment
    state = trainer.init_state()
    params = jax.device_get(state["params"])
    tx = reference()
    opt_state = tx.init(params)
    for step in range(4):
        batch = trainer.train_batch(step)
        key = jax.random.fold_in(jax.random.wrap_key_data(state["key"]), step)
        model_state = state["model_state"]

        def loss(p, batch=batch, key=key, model_state=model_state):
            return experiment.loss(trainer.bind(p, model_state), batch, key)[0]

        grads = jax.grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        state, _ = trainer.train_step(state, batch)
    chex.assert_trees_all_close(jax.device_get(state["params"]), params, rtol=1e-5, atol=1e-6)


def test_weight_decay_reaches_kernels_only():
    params = {"linear": {"kernel": jnp.ones((2, 1)), "bias": jnp.ones(1)}, "norm": {"scale": 1.0}}
    assert kernel_mask(params) == {
        "linear": {"kernel": True, "bias": False},
        "norm": {"scale": False},
    }


def test_an_experiment_can_bring_its_own_optimizer(tmp_path):
    class Frozen(toy.Toy):
        def make_optimizer(self):
            return optax.set_to_zero()

    experiment = Frozen(_config(num_train_steps=2))
    trainer = Trainer(experiment)
    state = trainer.init_state()
    start = jax.device_get(state["params"])
    state, _ = trainer.train_step(state, trainer.train_batch(0))
    chex.assert_trees_all_equal(jax.device_get(state["params"]), start)


# -- kill and resume, through the command line ------------------------------------------------
def _command(workdir, steps):
    return [
        sys.executable,
        "-m",
        "experiments.main",
        "--config=tests/toy_experiment.py",
        "--config.mesh.data=1",
        f"--config.num_train_steps={steps}",
        "--config.checkpoint_every_steps=5",
        "--config.log_every_steps=5",
        "--config.host_sleep_s=0.05",
        f"--workdir={workdir}",
    ]


def _env():
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")


def _final_state(workdir):
    trainer = Trainer(toy.Toy(_config()))
    checkpointer = Checkpointer(workdir, async_save=False)
    state = checkpointer.restore(checkpointer.latest_step(), trainer.init_state())
    checkpointer.close()
    return jax.device_get({k: state[k] for k in ("step", "params", "model_state", "carry")})


@pytest.mark.slow
def test_carry_and_model_variables_survive_sigkill_and_resume_bitwise(tmp_path):
    steps = 60
    subprocess.run(
        _command(tmp_path / "whole", steps), cwd=REPO_ROOT, env=_env(), check=True, timeout=300
    )
    process = subprocess.Popen(
        _command(tmp_path / "killed", steps),
        cwd=REPO_ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    marker = tmp_path / "killed" / "checkpoints" / "10" / "_CHECKPOINT_METADATA"
    deadline = time.time() + 240
    while not marker.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.kill()
    process.wait()
    assert not (tmp_path / "killed" / "results.json").exists(), "killed too late"
    rerun = subprocess.run(
        _command(tmp_path / "killed", steps),
        cwd=REPO_ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "Resuming from step" in rerun.stdout
    whole, killed = _final_state(tmp_path / "whole"), _final_state(tmp_path / "killed")
    assert int(killed["carry"]["count"]) == steps
    chex.assert_trees_all_equal(killed, whole)
    results = [json.loads((tmp_path / d / "results.json").read_text()) for d in ("whole", "killed")]
    assert results[0]["test"] == results[1]["test"]


def test_a_time_budget_stops_training_saved_and_evaluated(tmp_path):
    results = _train(tmp_path, num_train_steps=50, max_train_time_s=1e-6, eval_every_steps=1)
    assert results["steps"] == 1 and results["stopped_by_time_budget"] is True
    assert (tmp_path / "checkpoints" / "1").is_dir() and "mse" in results["test"]


def test_several_evaluation_sets_and_the_best_evaluation():
    from dfn_jax.training.trainer import best_evaluation, per_count

    means = per_count({"val_error": 6.0, "val_count": 3.0, "test_error": 8.0, "test_count": 4.0})
    assert means == {"val_error": 2.0, "test_error": 2.0}
    with pytest.raises(ValueError, match="has no count"):
        per_count({"mse": 1.0})
    records = [
        {"step": 1, "eval/val_error": 3.0, "eval/test_error": 1.0},
        {"step": 2},
        {"step": 3, "eval/val_error": 2.0, "eval/test_error": 4.0},
    ]
    assert best_evaluation(records, "val_error") == {"step": 3, "val_error": 2.0, "test_error": 4.0}
    assert best_evaluation(records, "nope") is None
