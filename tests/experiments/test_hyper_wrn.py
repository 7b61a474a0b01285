"""The Hyper-WRN CIFAR-10 experiment: configs, parameter counts, a short run on small files."""

import json
import math

import pytest
from flax import nnx

from dfn_jax.models import count_params
from experiments import main
from experiments.configs import hyper_wrn
from tests.helpers import write_cifar10_binary

COUNTS = {"hyper_40_1": 97_770, "hyper_40_2": 155_626, "wrn_40_1": 563_930, "wrn_40_2": 2_243_546}


@pytest.mark.parametrize("variant", hyper_wrn.VARIANTS)
def test_variants_schedules_and_parameter_counts(variant):
    config = hyper_wrn.get_config(variant)
    assert config.experiment == "hypernet.wrn" and config.variant == variant
    assert config.batch_size == 128 and config.model.depth == 40
    if variant.startswith("hyper"):
        assert (config.optimizer.name, config.learning_rate, config.num_train_steps) == (
            "adam",
            0.002,
            672_000,
        )
    else:
        assert (config.optimizer.name, config.optimizer.nesterov, config.num_train_steps) == (
            "sgd",
            True,
            140_000,
        )
    experiment = main.make_experiment(config)  # loads no data
    model = nnx.eval_shape(lambda: experiment.build_model(nnx.Rngs(0)))
    assert count_params(model) == COUNTS[variant]


def test_unknown_or_two_variants_fail():
    with pytest.raises(ValueError, match="Unknown hyper_wrn variant"):
        hyper_wrn.get_config("wrn_28_10")
    with pytest.raises(ValueError, match="Pick one hyper_wrn variant"):
        hyper_wrn.get_config("hyper_40_1,wrn_40_1")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["hyper_40_1", "wrn_40_1"])
def test_a_short_run_on_small_cifar_files(variant, tmp_path):
    sizes = {f"data_batch_{i}": 6 for i in range(1, 6)} | {"test_batch": 8}
    write_cifar10_binary(tmp_path / "cifar", sizes)
    config = hyper_wrn.get_config(
        f"{variant},batch_size=8,num_train_steps=2,eval_every_steps=2,log_every_steps=1,"
        "checkpoint_every_steps=2,eval_batch_size=8,model.depth=10,data.validation_size=6"
    )
    config.mesh.data = 1
    config.data.cifar_dir = str(tmp_path / "cifar")
    workdir = tmp_path / "run"
    results = main.train_and_evaluate(config, str(workdir))
    assert set(results["test"]) == {"val_error", "val_loss", "test_error", "test_loss"}
    assert results["split_sizes"] == {"train": 24, "val": 6, "test": 8}
    assert results["best"]["step"] == 2
    assert "figures/first_block_kernels.png" in results["figures"]
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["model"]["hypernetwork"] == variant.startswith("hyper")
    assert all(math.isfinite(v) for v in results["test"].values())
    # Sets that are not a multiple of the batch: the last batch is padded with weight-0 rows.
    batches = list(main.make_experiment(config).eval_batches())
    assert [len(b["labels"]) for b in batches] == [8, 8]
    assert [float(b["weight"].sum()) for b in batches] == [6.0, 8.0]
