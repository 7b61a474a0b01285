"""The learned-optimizer experiments: configs, and a short real run of the quadratic one end to
end (meta-training, tuned baselines, results, figures, the saved optimizer)."""

import json

import jax
import numpy as np
import pytest

from dfn_jax import optim, viz
from experiments import main
from experiments.configs import l2l_mnist, l2l_quadratic


def test_configs_follow_the_paper():
    quad = l2l_quadratic.get_config()
    assert quad.experiment == "l2l.quadratic"
    assert (quad.learned.hidden_size, quad.learned.num_layers, quad.learned.preprocess) == (
        20,
        2,
        False,
    )
    assert (quad.meta.unroll_steps, quad.meta.truncation) == (100, 20)
    assert l2l_quadratic.get_config("preprocessed").learned.preprocess is True
    mnist = l2l_mnist.get_config()
    assert mnist.experiment == "l2l.mnist" and mnist.task.activation == "sigmoid"
    assert (mnist.learned.preprocess, mnist.learned.preprocess_p, mnist.learned.output_scale) == (
        True,
        10.0,
        0.1,
    )
    tuned = l2l_mnist.get_config("tuned")  # what the shipped "mnist" optimizer was trained by
    assert (tuned.meta.step_weights, tuned.meta.lr_schedule) == ("linear", "cosine")
    assert mnist.meta.step_weights == "uniform" and mnist.meta.lr_schedule == "constant"
    long = l2l_mnist.get_config("long")  # meta-trained on 200-step unrolls, tested as the others
    assert (long.meta.unroll_steps, long.evaluation.steps, long.meta.step_weights) == (
        200,
        100,
        "linear",
    )
    mixed = l2l_mnist.get_config("mixed")  # "mnist_mixed" (its seed 2): 100- and 200-step unrolls
    assert mixed.meta.unroll_choices == (100, 200) and mixed.meta.num_epochs == 100
    assert mixed.meta.to_dict() == {**long.meta.to_dict(), "unroll_choices": (100, 200),
                                    "num_epochs": 100}  # fmt: skip
    with pytest.raises(ValueError, match="Unknown l2l_mnist variant"):
        l2l_mnist.get_config("relu")


@pytest.mark.slow
def test_a_short_quadratic_run_end_to_end(tmp_path):
    config = l2l_quadratic.get_config(
        "paper,meta.num_epochs=2,meta.num_problems=4,meta.eval_every_epochs=1,"
        "meta.num_val_problems=3,evaluation.num_test_problems=3,"
        "evaluation.num_tuning_problems=3,evaluation.lr_log10_min=-2.0,"
        "evaluation.lr_log10_max=-1.0,log_every_steps=5,checkpoint_every_steps=5"
    )
    results = main.train_and_evaluate(config, str(tmp_path))
    assert results["steps"] == 10 and results["num_params"] == 5061
    assert set(results["evaluation"]) == {"default", "dim_20", "dim_40"}
    for variant in ("default", "dim_20"):
        evaluation = results["evaluation"][variant]
        assert set(evaluation["final_loss"]) == {"learned", "sgd", "rmsprop", "adam", "nag"}
        for tuned in evaluation["baselines"].values():  # the half-decade grid 1e-2 .. 1e-1
            assert np.isclose(tuned["learning_rate"], [0.01, 10**-1.5, 0.1]).any()
            assert len(tuned["tuning_final_loss"]) == 3
        assert np.isclose(
            evaluation["log10_mean_final_loss"]["adam"], np.log10(evaluation["final_loss"]["adam"])
        )
    saved = json.loads((tmp_path / "results.json").read_text())
    assert "figures/loss_default.png" in saved["figures"]
    opt = optim.load_learned_optimizer(tmp_path / "learned_optimizer")
    x = jax.numpy.ones(10)
    updates, _ = opt.update(x, opt.init(x))
    assert updates.shape == (10,)


def test_a_saved_optimizer_is_evaluated_without_meta_training(tmp_path):
    """``learned.load``: no meta-training; the saved optimizer, with its own settings, on the
    experiment's test problems at the ``evaluation.steps`` horizon; then compared with tuned
    Adam problem by problem (``experiments.l2l.paired``)."""
    from dfn_jax.data.optimizees import Quadratic
    from dfn_jax.training import meta
    from experiments.l2l import paired

    phi = optim.init_meta_params(jax.random.key(3), preprocess=True)
    settings = {"output_scale": 0.5, "preprocess": True, "preprocess_p": 10.0}
    optim.save_learned_optimizer(tmp_path / "saved", phi, settings=settings)
    config = l2l_quadratic.get_config(
        f"paper,learned.load={tmp_path / 'saved'},evaluation.steps=5,"
        "evaluation.num_test_problems=2,evaluation.num_tuning_problems=2,"
        "evaluation.lr_log10_min=-1.0,evaluation.lr_log10_max=-1.0"
    )
    results = main.train_and_evaluate(config, str(tmp_path / "run"))
    assert results["steps"] == 0 and results["loaded_settings"] == settings
    assert not (tmp_path / "run" / "checkpoints").exists() or not any(
        (tmp_path / "run" / "checkpoints").iterdir()
    )
    keys = meta.problem_keys(config.seed, 2, 2)
    expected = meta.optimize(optim.lstm_optimizer(phi, **settings), Quadratic(), {}, keys, 5)
    evaluation = results["evaluation"]["default"]
    assert evaluation["steps"] == 5
    np.testing.assert_allclose(
        evaluation["final_loss"]["learned"], np.asarray(expected)[:, -1].mean(), rtol=1e-6
    )
    # experiments.l2l.paired: both again on the same test problems, the baseline at its tuned
    # rate reproduces the run's mean; the interval is paired (zero width for equal losses).
    report = paired.compare(config, str(tmp_path / "saved"), results)
    assert set(report) == {"default", "dim_20", "dim_40"}
    for variant, entry in report.items():
        assert entry["learning_rate"] == 0.1 and entry["steps"] == 5
        np.testing.assert_allclose(entry["adam"], entry["baseline_in_results"], rtol=1e-6)
        ours = results["evaluation"][variant]["final_loss"]["learned"]
        np.testing.assert_allclose(entry["learned"], ours, rtol=1e-6)
        assert entry["ci95"][0] <= entry["relative_difference"] <= entry["ci95"][1]
        finals = entry["final_losses"]
        assert len(finals["learned"]) == len(finals["adam"]) == 2
        np.testing.assert_allclose(np.mean(finals["learned"]), entry["learned"], rtol=1e-6)
    pairs = {name: tuple(entry["final_losses"].values()) for name, entry in report.items()}
    assert viz.plot_paired(pairs, tmp_path / "paired.png").stat().st_size > 0
    one = paired.compare(config, str(tmp_path / "saved"), results, settings=["dim_20"])
    assert set(one) == {"dim_20"} and one["dim_20"]["adam"] == report["dim_20"]["adam"]
    with pytest.raises(ValueError, match="`settings` must be among"):
        paired.compare(config, str(tmp_path / "saved"), results, settings=["dim_30"])
    # Tuned here over a grid instead (one rate: the run's), the same baseline numbers.
    tuned = paired.compare(config, str(tmp_path / "saved"), None, settings=["dim_20"], grid=[0.1])
    assert tuned["dim_20"]["adam"] == report["dim_20"]["adam"]
    assert list(tuned["dim_20"]["tuning_final_loss"]) == [0.1]
    with pytest.raises(ValueError, match="exactly one of `tuned_from` and `grid`"):
        paired.compare(config, str(tmp_path / "saved"), results, grid=[0.1])
    assert paired.paired_relative_difference([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == (0, 0, 0)
    with pytest.raises(ValueError, match="same P >= 2 items"):
        paired.paired_relative_difference([1.0, 2.0], [1.0, 2.0, 3.0])
    config.evaluation.baselines = False  # the learned optimizer alone, the same numbers
    alone = main.train_and_evaluate(config, str(tmp_path / "alone"))["evaluation"]["default"]
    assert set(alone["final_loss"]) == {"learned"} and alone["baselines"] == {}
    assert alone["final_loss"]["learned"] == evaluation["final_loss"]["learned"]


def test_the_meta_learning_rate_is_constant_or_cosine_decayed_to_zero():
    from experiments.l2l.learned_optimizer import meta_learning_rate

    config = l2l_mnist.get_config()
    assert config.meta.lr_schedule == "constant"  # the paper's
    assert np.isclose(meta_learning_rate(config.meta, 100)(99), config.meta.learning_rate)
    config.meta.lr_schedule = "cosine"
    schedule = meta_learning_rate(config.meta, 100)
    assert np.isclose(schedule(0), 0.01) and np.isclose(schedule(50), 0.005)
    assert np.isclose(schedule(100), 0.0)
    config.meta.lr_schedule = "step"
    with pytest.raises(ValueError, match=r"`meta.lr_schedule` must be one of"):
        meta_learning_rate(config.meta, 100)


def test_meta_training_starts_from_a_saved_optimizer_with_the_same_settings(tmp_path):
    """``learned.init_from``: a curriculum's start is the saved optimizer's meta-parameters; one
    saved with other settings than the config's is refused, naming what differs."""
    from experiments.main import make_experiment

    phi = optim.init_meta_params(jax.random.key(5), preprocess=True)
    settings = {"output_scale": 1.0, "preprocess": True, "preprocess_p": 10.0}
    optim.save_learned_optimizer(tmp_path / "saved", phi, settings=settings)
    config = l2l_quadratic.get_config(f"preprocessed,learned.init_from={tmp_path / 'saved'}")
    start = make_experiment(config).initial_meta_params()
    jax.tree.map(np.testing.assert_array_equal, start, phi)
    fresh = make_experiment(l2l_quadratic.get_config("preprocessed")).initial_meta_params()
    assert not np.array_equal(fresh["out_w"], phi["out_w"])
    config.learned.output_scale = 0.1
    with pytest.raises(ValueError, match=r"`learned.init_from`.*output_scale: saved 1.0"):
        make_experiment(config).initial_meta_params()
    curriculum = l2l_mnist.get_config("curriculum")  # the shipped 100-step optimizer, 200 steps
    assert curriculum.learned.init_from == "mnist" and curriculum.meta.unroll_steps == 200
    start = make_experiment(curriculum).initial_meta_params()
    jax.tree.map(np.testing.assert_array_equal, start, optim.load_meta_params("mnist"))
