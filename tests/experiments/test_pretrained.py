"""Pretrained models: export from a run, load in one call, same outputs; the shipped ones."""

import jax
import numpy as np
import pytest

from dfn_jax import pretrained
from experiments import main
from experiments.configs import hyper_mnist
from experiments.export_pretrained import export


@pytest.mark.slow
def test_export_then_load_gives_the_trained_model(mnist_dir, tmp_path):
    config = hyper_mnist.get_config(
        "paper,batch_size=100,num_train_steps=2,eval_every_steps=0,checkpoint_every_steps=2"
    )
    config.mesh.data = 1
    config.data.mnist_dir = str(mnist_dir)
    main.train_and_evaluate(config, str(tmp_path / "run"))
    meta = export(tmp_path / "run", "tiny", "the test", directory=tmp_path)
    assert meta["num_params"] == 12_910 and pretrained.available(tmp_path) == ["tiny"]
    model = pretrained.load("tiny", tmp_path)
    images = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))
    fresh = pretrained.BUILDERS[meta["builder"]](meta["config"])
    assert not np.allclose(model(images), fresh(images))  # trained weights were restored
    with pytest.raises(ValueError, match="No pretrained model 'nope'"):
        pretrained.load("nope", tmp_path)


@pytest.mark.parametrize("name", pretrained.available())
def test_shipped_models_load_and_state_their_command_and_metrics(name):
    meta = pretrained.info(name)
    assert meta["command"].startswith("python -m experiments.main") and meta["test"]
    model = pretrained.load(name)
    assert model is not None


@pytest.mark.slow
def test_the_shipped_paper_dfn_reproduces_on_the_first_test_sequences(mnist_dir):
    from experiments.configs import moving_mnist
    from experiments.evaluate_pretrained import evaluate_pretrained

    config = moving_mnist.get_config("paper")
    config.data.mnist_dir = str(mnist_dir)
    config.num_eval_sequences = config.eval_batch_size = 20
    report = evaluate_pretrained("moving_mnist_paper", config)
    assert report["num_params"] == 637_361
    assert report["recorded_test"]["bce"] < 285.2  # the paper's, on all 10,000 (docs/RESULTS.md)
    # An untrained model is near 700 nats/frame; the first 80 sequences gave 290.1 on this CPU.
    assert report["test"]["bce"] < 320 and len(report["test"]["bce_per_horizon"]) == 10


def test_evaluating_a_pretrained_model_under_another_experiment_is_refused():
    from experiments.evaluate_pretrained import evaluate_pretrained

    with pytest.raises(ValueError, match="was trained by experiment 'dfn.moving_mnist'"):
        evaluate_pretrained("moving_mnist_paper", hyper_mnist.get_config("paper"))


def test_evaluating_a_pretrained_model_with_another_architecture_is_refused():
    from experiments.configs import moving_mnist
    from experiments.evaluate_pretrained import evaluate_pretrained

    config = moving_mnist.get_config()  # the quick start's small model, not the paper's
    with pytest.raises(ValueError, match="does not fit the model `--config` builds"):
        evaluate_pretrained("moving_mnist_paper", config)
