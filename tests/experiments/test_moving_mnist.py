"""End-to-end tests of the shared trainer on the Moving MNIST experiment at toy size."""

import json
import pathlib

import numpy as np
import pytest

from dfn_jax.training import read_metrics
from experiments import main
from experiments.configs import moving_mnist as mm_config
from tests.helpers import tiny_config


def test_variants_parse_and_unknown_variant_fails():
    for arg in ["shapes", "quick", "paper", "baseline", "quick,baseline"]:
        config = mm_config.get_config(arg)
        assert config.experiment == "dfn.moving_mnist"
    assert mm_config.get_config("baseline").model.dynamic_filter is False
    assert mm_config.get_config("baseline").learning_rate == 1e-4
    assert mm_config.get_config("paper").batch_size == 16
    quick_start = mm_config.get_config()  # the README's: 32x32 shapes, 5 frames read
    assert (quick_start.data.source, quick_start.data.image_size) == ("shapes", 32)
    assert quick_start.model.num_input_frames == 5
    assert quick_start.model.teacher_forcing and quick_start.num_train_steps == 1600
    with pytest.raises(ValueError, match="Unknown moving_mnist variant"):
        mm_config.get_config("nonsense")


def test_evaluation_is_closed_loop_when_trained_with_teacher_forcing():
    """A model trained with teacher forcing is evaluated on its own predictions: the same
    parameters give the same test sums with and without the training setting."""
    from flax import nnx

    forced = main.make_experiment(tiny_config(**{"model.teacher_forcing": True}))
    closed = main.make_experiment(tiny_config(**{"model.teacher_forcing": False}))
    batch = closed.train_batch(0)
    model = forced.build_model(nnx.Rngs(0))
    sums_forced = forced.eval_sums(model, batch)
    sums_closed = closed.eval_sums(closed.build_model(nnx.Rngs(0)), batch)
    for key, value in sums_closed.items():
        np.testing.assert_allclose(np.asarray(sums_forced[key]), np.asarray(value), atol=1e-5)
    # ...while the training forward pass does read the true frames.
    n_in = closed.model_config.num_input_frames
    assert not np.allclose(model(batch).frames, model.rollout(batch[:, :n_in], 3).frames)


def test_shapes_data_options_reach_the_generator_and_are_checked():
    """``data.sprite_size`` and ``data.whole_pixel_steps`` change the bouncing shapes the
    experiment trains on; on other sources, or out of range, they are config problems."""
    from dfn_jax.data import shapes

    config = tiny_config(**{"data.sprite_size": 10, "data.whole_pixel_steps": True})
    experiment = main.make_experiment(config)
    assert experiment.config_problems() == []
    frames = np.asarray(experiment.train_batch(0))
    keys = experiment.example_keys(0)
    expected = shapes.bouncing_shapes_sequences(
        keys,
        num_frames=6,
        image_size=32,
        num_shapes=1,
        step_length=config.data.step_length,
        whole_pixel_steps=True,
        **shapes.sprite_options(10),
    )
    np.testing.assert_array_equal(frames, np.asarray(expected))
    # The test examples are the evaluation's sequences; longer ones extend the same clips.
    first = np.asarray(next(iter(experiment.eval_batches())))
    np.testing.assert_array_equal(np.asarray(experiment.test_examples(2)), first[:2])
    longer = np.asarray(experiment.test_examples(2, num_frames=9))
    assert longer.shape[1] == 9
    np.testing.assert_array_equal(longer[:, :6], first[:2])
    assert shapes.sprite_options(28) == {"sprite_size": 28, "min_size": 10, "max_size": 20}
    assert shapes.sprite_options(14) == {"sprite_size": 14, "min_size": 5, "max_size": 10}

    for overrides, message in [
        ({"data.sprite_size": 40}, "`data.sprite_size` must be in"),
        ({"data.source": "mnist", "data.whole_pixel_steps": True}, "`data.whole_pixel_steps`"),
        ({"data.source": "mnist", "data.sprite_size": 14}, "`data.sprite_size` applies"),
    ]:
        problems = main.make_experiment(tiny_config(**overrides)).config_problems()
        assert any(message in p for p in problems), problems


@pytest.mark.parametrize("variant,expected", [("paper", 637_361), ("baseline", 637_443)])
def test_paper_parameter_counts_through_the_experiment(variant, expected):
    from flax import nnx

    from dfn_jax.models import count_params

    experiment = main.make_experiment(mm_config.get_config(variant))  # Loads no data.
    assert count_params(experiment.build_model(nnx.Rngs(0))) == expected


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    results = main.train_and_evaluate(tiny_config(), str(workdir))
    return workdir, results


def test_run_writes_checkpoints_logs_figures_and_results(finished_run):
    workdir, results = finished_run
    assert results["steps"] == 3
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["num_params"] == results["num_params"] > 0
    for name in ["bce", "mse", "mae", "ssim", "psnr"]:
        assert np.isfinite(saved["test"][name])
        assert len(saved["test"][f"{name}_per_horizon"]) == 3
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == 3
    records = read_metrics(workdir)
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2, 3]
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    figures = {p.name for p in (workdir / "figures").glob("*.png")}
    assert {"prediction_0.png", "flow.png", "loss_curves.png"} <= figures
    for name in figures:
        assert (workdir / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resumed_run_matches_an_uninterrupted_one_bitwise(tmp_path, finished_run):
    _, uninterrupted = finished_run
    # Stop after 2 steps (as a killed run would leave its step-2 checkpoint), then re-run.
    main.train_and_evaluate(tiny_config(num_train_steps=2), str(tmp_path))
    resumed = main.train_and_evaluate(tiny_config(), str(tmp_path))
    assert resumed["steps"] == 3
    assert resumed["test"] == uninterrupted["test"]


def test_non_finite_loss_stops_without_saving(tmp_path):
    config = tiny_config(learning_rate=1e30, num_train_steps=6, checkpoint_every_steps=1)
    with pytest.raises(FloatingPointError, match=r"Non-finite .* at step \d+"):
        main.train_and_evaluate(config, str(tmp_path))
    steps = [int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
    records = {r["step"]: r["train/loss"] for r in read_metrics(tmp_path) if "train/loss" in r}
    assert all(np.isfinite(records[s]) for s in steps)


def test_unwritable_workdir_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match="not writable"):
        main.train_and_evaluate(tiny_config(), str(pathlib.Path(blocker) / "run"))


def test_mixed_precision_and_remat_train_with_float32_parameters_and_loss(tmp_path):
    """bfloat16 compute + remat, as config options: float32 parameters, optimiser state and
    loss; finite metrics; the loss stays close to the float32 run's."""
    import jax
    import jax.numpy as jnp

    from dfn_jax.training import Trainer

    losses = {}
    for dtype, remat in (("float32", False), ("bfloat16", True)):
        config = tiny_config(**{"model.dtype": dtype, "model.remat": remat})
        trainer = Trainer(main.make_experiment(config))
        state = trainer.init_state()
        for step in range(2):
            state, metrics = trainer.train_step(state, trainer.train_batch(step))
        assert metrics["loss"].dtype == jnp.float32
        leaves = jax.tree.leaves((state["params"], state["opt_state"]))
        assert all(x.dtype in (jnp.float32, jnp.int32) for x in leaves), dtype
        losses[dtype] = float(metrics["loss"])
    assert np.isfinite(losses["bfloat16"])
    np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=0.05)
