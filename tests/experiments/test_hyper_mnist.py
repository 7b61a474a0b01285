"""The HyperNetworks MNIST experiment: configs, parameter counts, a short real run."""

import json

import pytest
from flax import nnx

from dfn_jax.models import count_params
from experiments import main
from experiments.configs import hyper_mnist


@pytest.mark.parametrize("variant,expected", [("paper", 12_910), ("conventional", 21_210)])
def test_variants_and_their_parameter_counts(variant, expected):
    config = hyper_mnist.get_config(variant)
    assert config.experiment == "hypernet.mnist" and config.variant == variant
    assert (config.batch_size, config.num_train_steps, config.learning_rate) == (1000, 2750, 0.005)
    assert (config.lr_schedule, config.lr_decay_rate, config.lr_end_value) == (
        "exponential",
        0.999,
        1e-4,
    )
    experiment = main.make_experiment(config)  # loads no data
    assert count_params(experiment.build_model(nnx.Rngs(0))) == expected


def test_unknown_or_two_variants_fail():
    with pytest.raises(ValueError, match="Unknown hyper_mnist variant"):
        hyper_mnist.get_config("wide")
    with pytest.raises(ValueError, match="Pick one hyper_mnist variant"):
        hyper_mnist.get_config("paper,conventional")


@pytest.mark.slow
def test_a_short_run_reports_validation_and_test_errors_and_the_best_epoch(mnist_dir, tmp_path):
    config = hyper_mnist.get_config(
        "paper,batch_size=500,num_train_steps=4,eval_every_steps=2,log_every_steps=2,"
        "checkpoint_every_steps=2"
    )
    config.mesh.data = 1
    config.data.mnist_dir = str(mnist_dir)
    results = main.train_and_evaluate(config, str(tmp_path))
    test = results["test"]
    assert set(test) == {"val_error", "val_loss", "test_error", "test_loss"}
    assert 0 < test["test_error"] < 90 and 0 < test["val_error"] < 90
    assert results["best"]["step"] in (2, 4)
    assert results["best"]["val_error"] == min(
        r["eval/val_error"] for r in _evals(tmp_path) + [{"eval/val_error": test["val_error"]}]
    )
    assert results["split_sizes"] == {"train": 55_000, "val": 5_000, "test": 10_000}
    assert "figures/conv2_kernels.png" in results["figures"]
    assert json.loads((tmp_path / "results.json").read_text())["num_params"] == 12_910


def _evals(workdir):
    from dfn_jax.training import read_metrics

    return [r for r in read_metrics(workdir) if "eval/val_error" in r]
