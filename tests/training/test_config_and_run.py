"""Config parsing, the default block, progress reporting and the Run a non-trainer loop reuses."""

import io
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dfn_jax.layers.rollout import resolve_unroll
from dfn_jax.training import Run, base_config, parse_config_arg, read_metrics
from dfn_jax.training.progress import Progress
from dfn_jax.training.validation import TRAINER_KEYS, trainer_problems, unknown_key_problems
from experiments import main
from experiments.configs import highway, moving_mnist, steerable, stereo


def test_config_arg_splits_variants_and_overrides():
    args = parse_config_arg(
        "quick,baseline,batch_size=4,model.encoder_features=(1,2),model.unroll=1",
        name="moving_mnist",
        variants=("quick", "baseline"),
        default="quick",
    )
    assert args.tokens == ("quick", "baseline") and args.variant == "quick,baseline"
    assert "baseline" in args
    config = ml_collections.ConfigDict(
        {"batch_size": 8, "model": {"encoder_features": (8, 8), "unroll": "auto"}}
    )
    args.apply(config)
    assert config.batch_size == 4 and config.model.encoder_features == (1, 2)
    assert config.model.unroll == "1"  # a string field keeps the text, as --config.x=1 does
    assert parse_config_arg(None, name="x", variants=("a",), default="a").tokens == ("a",)
    with pytest.raises(ValueError, match=r"Unknown x variant\(s\) \['b'\]"):
        parse_config_arg("b", name="x", variants=("a",), default="a")
    with pytest.raises(ValueError, match="no key `nope`"):
        parse_config_arg("nope=1", name="x", variants=("a",), default="a").apply(config)


@pytest.mark.parametrize("module", [moving_mnist, highway, stereo, steerable])
def test_every_config_file_starts_from_the_default_block_and_passes_the_checks(module):
    config = module.get_config()
    config.mesh.data = 1  # the suite's 8 devices divide not every default batch size
    assert TRAINER_KEYS <= set(config.keys())
    assert unknown_key_problems(config, main.make_experiment(config).config_keys) == []
    assert trainer_problems(config) == []


@pytest.mark.parametrize("text,expected", [("auto", True), ("1", 1), ("true", True), (4, 4)])
def test_unroll_from_the_command_line_reaches_the_model_resolved(text, expected):
    assert resolve_unroll(text) == expected  # the suite runs on CPU: "auto" unrolls fully
    config = moving_mnist.get_config(f"shapes,model.unroll={text}")
    experiment = main.make_experiment(config)
    assert resolve_unroll(experiment.model_config.unroll) == expected


@pytest.mark.parametrize("bad", ["0", "sometimes", 0, -2, 1.5])
def test_bad_unroll_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="`unroll` must be 'auto', true/false or an int"):
        resolve_unroll(bad)


def test_optimizer_problems_are_reported_before_anything_is_built():
    config = base_config(experiment="x")
    config.optimizer.name = "adagrad"
    config.lr_schedule = "piecewise"
    config.lr_halve_every_steps = 10
    problems = " ".join(trainer_problems(config))
    assert "`optimizer.name` must be one of" in problems
    assert "`lr_boundaries` and `lr_scales` must be non-empty" in problems
    assert "`lr_halve_every_steps` is read only by lr_schedule='step_halving'" in problems
    config.optimizer.momentom = 0.9
    assert "did you mean `optimizer.momentum`" in " ".join(unknown_key_problems(config, set()))


def test_progress_writes_lines_off_a_terminal_and_a_bar_on_one():
    stream = io.StringIO()
    progress = Progress(10, stream=stream)
    progress.update(5, {"loss": 0.5})
    assert "step 5/10" in stream.getvalue() and "loss 0.5" in stream.getvalue()
    stream = io.StringIO()
    progress = Progress(10, stream=stream, live=True)
    progress.update(10, {"loss": 0.25})
    assert "10/10" in stream.getvalue() and "loss 0.25" in stream.getvalue()


def _outer_loop(workdir, total):
    """A loop that is not the trainer's (a stand-in for a meta-learning outer loop: each step
    unrolls 5 inner gradient steps on a quadratic and updates the inner learning rate)."""
    config = base_config(experiment="none")
    config.log_every_steps = 1
    config.checkpoint_every_steps = 2
    run = Run(workdir, config, total_steps=total)
    state = run.restore(
        {"step": jnp.zeros((), jnp.int32), "lr": jnp.asarray(0.01), "train_time_s": jnp.zeros(())}
    )

    @jax.jit
    def outer_step(state):
        def meta_loss(lr):
            x = jnp.asarray(3.0)
            for _ in range(5):
                x = x - lr * 2 * x
            return x**2

        loss, grad = jax.value_and_grad(meta_loss)(state["lr"])
        return dict(state, step=state["step"] + 1, lr=state["lr"] - 0.001 * grad), {"loss": loss}

    try:
        for step in range(run.start, total):
            state, metrics = outer_step(state)
            state = run.after_step(step + 1, state, metrics)
    finally:
        run.close_loop()
    results = {"steps": int(state["step"]), "test": {"lr": float(state["lr"])}}
    return run.finish(results)


def test_run_serves_a_loop_other_than_the_trainer(tmp_path):
    whole = _outer_loop(tmp_path / "whole", 6)
    _outer_loop(tmp_path / "resumed", 4)
    resumed = _outer_loop(tmp_path / "resumed", 6)
    assert resumed["test"] == whole["test"] and whole["test"]["lr"] > 0.01
    saved = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert saved["figures"] == ["figures/loss_curves.png"]
    losses = [r["train/loss"] for r in read_metrics(tmp_path / "resumed") if "train/loss" in r]
    assert len(losses) == 6 and np.all(np.diff(losses) < 0)
