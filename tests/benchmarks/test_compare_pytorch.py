"""The PyTorch comparison benchmark: the PyTorch model matches ours (forward and gradients), and a
``--small`` run prints one JSON document, also without PyTorch installed."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.helpers import REPO_ROOT

# Imports ``torch`` itself in a subprocess: a ``None`` entry in ``sys.modules`` makes
# ``import torch`` fail as if it were not installed.
WITHOUT_TORCH = (
    "import runpy, sys; sys.modules['torch'] = None; "
    "runpy.run_module('benchmarks.compare_pytorch', run_name='__main__')"
)


def run_compare(*flags, without_torch=False):
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # the suite's 8 fake devices: not wanted for a timing run
    env["JAX_PLATFORMS"] = "cpu"
    command = ["-c", WITHOUT_TORCH] if without_torch else ["-m", "benchmarks.compare_pytorch"]
    proc = subprocess.run(
        [sys.executable, *command, *flags],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout)


def check_header_and_jax(doc):
    keys = {"benchmark", "date", "jax_version", "backend", "cpu_model", "cpu_count", "runs"}
    assert keys <= doc.keys()
    assert doc["benchmark"] == "compare_pytorch" and doc["small"] and doc["runs"] == 1
    assert doc["batch_sizes"] == [2] and doc["num_params_jax"] > 0
    assert doc["config"]["image_size"] == 32 and doc["config"]["unroll"] is True
    (record,) = doc["results"]
    assert record["batch_shape"] == [2, 6, 32, 32, 1]
    assert record["jax_step_s"] == record["jax"]["median_s"] > 0
    assert all(np.isfinite(record["jax"]["losses"]))
    (row,) = doc["summary"]
    assert row["jax_step_s"] == record["jax_step_s"]
    return record


@pytest.fixture(scope="module")
def small_trainer():
    from benchmarks.compare_pytorch import build_config
    from dfn_jax.training.trainer import Trainer
    from experiments.main import make_experiment

    return Trainer(make_experiment(build_config(2, small=True)))


def test_pytorch_model_matches_ours(small_trainer):
    pytest.importorskip("torch")
    from benchmarks.compare_pytorch import equivalence_check, initial_params
    from benchmarks.train_step import synthetic_batch

    batch = jax.device_get(synthetic_batch(3, 2, small_trainer.experiment))
    res = equivalence_check(small_trainer, batch)  # the initial parameters, as the script does
    assert res["num_params_torch"] == res["num_params_jax"] == small_trainer.num_params
    assert res["max_abs_diff_frames"] < 1e-4
    assert res["abs_diff_loss"] < 1e-4 and 0.1 < res["loss_jax"] < 10

    # Gradients: at zero biases the first recurrent step sits on the leaky ReLUs' kink, where
    # JAX and PyTorch pick different subgradients (see equivalence_check); move the biases off 0.
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map_with_path(
        lambda path, v: (
            v + 0.05 * rng.standard_normal(v.shape).astype(v.dtype) if path[-1].key == "bias" else v
        ),
        initial_params(small_trainer),
    )
    res = equivalence_check(small_trainer, batch, params=params, gradients=True)
    assert res["max_abs_diff_frames"] < 1e-4 and res["abs_diff_loss"] < 1e-4
    diffs, scales = res["grad_max_abs_diff"], res["grad_max_abs"]
    assert len(diffs) == 2 * (5 + 2 + 4 + 2)  # every parameter, first layer to filter head
    for name in ("encoder.0.kernel", "recurrence.conv_1.bias", "filter_head.kernel"):
        assert scales[name] > 0 and diffs[name] <= 1e-3 * scales[name], name
    assert res["grad_max_rel_diff"] < 1e-3


def test_parameter_mapping_names_and_layouts(small_trainer):
    from benchmarks.compare_pytorch import initial_params, jax_params_to_torch, torch_grad_as_jax

    params = initial_params(small_trainer)
    mapped = jax_params_to_torch(params)
    kernel = params["encoder"][1]["kernel"]  # HWIO [3, 3, 8, 8]
    assert mapped["encoder.1.weight"].shape == (8, 8, 3, 3)  # OIHW
    np.testing.assert_array_equal(mapped["encoder.1.weight"][5, 2], kernel[:, :, 2, 5])
    np.testing.assert_array_equal(
        torch_grad_as_jax("encoder.1.weight", mapped["encoder.1.weight"]), kernel
    )
    assert mapped["filter_head.weight"].shape == (81, 32, 1, 1)
    assert sum(v.size for v in mapped.values()) == small_trainer.num_params


@pytest.mark.slow
def test_compare_small_without_torch(tmp_path):
    out = tmp_path / "compare.json"
    doc = run_compare(
        "--small", "--runs", "1", "--warmup", "1", "--out", str(out), without_torch=True
    )
    assert json.loads(out.read_text()) == doc
    record = check_header_and_jax(doc)
    assert doc["torch"] is None and doc["equivalence"] is None
    assert 'pip install -e ".[torch]"' in doc["torch_missing_reason"]
    assert record["torch_step_s"] is None and record["ratio_jax_over_torch"] is None


@pytest.mark.slow
def test_compare_small_with_torch():
    pytest.importorskip("torch")
    doc = run_compare("--small", "--runs", "1", "--warmup", "1", "--threads", "1")
    record = check_header_and_jax(doc)
    assert doc["torch"]["num_threads"] == doc["torch_num_threads"] == 1
    assert doc["torch_version"] == doc["torch"]["version"]
    assert doc["num_params_torch"] == doc["num_params_jax"]
    eq = doc["equivalence"]
    assert eq["max_abs_diff_frames"] < 1e-4 and abs(eq["loss_jax"] - eq["loss_torch"]) < 1e-4
    assert record["torch_step_s"] == record["torch"]["median_s"] > 0
    assert record["ratio_jax_over_torch"] == pytest.approx(
        record["jax_step_s"] / record["torch_step_s"]
    )
    # Same parameters, batch and optimiser: the first training losses agree too.
    assert record["torch"]["losses"][0] == pytest.approx(record["jax"]["losses"][0], abs=1e-4)
