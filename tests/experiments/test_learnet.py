"""The learnet Omniglot experiment: configs, matched parameter counts, a short real run."""

import json
import subprocess
import sys

import numpy as np
import pytest
from flax import nnx

from dfn_jax import pretrained, viz
from dfn_jax.data.omniglot import load_official_runs, load_omniglot, official_run_indices
from dfn_jax.models import count_params
from dfn_jax.models.learnet import learnet_param_count
from experiments import main
from experiments.configs import learnet_omniglot
from experiments.export_pretrained import export
from experiments.learnet import paired, runs_like
from experiments.learnet.evaluate_official import official_run_errors
from tests.helpers import REPO_ROOT

TINY = (
    "model.channels=(4,4,8,8),model.learnet_channels=(4,4,4,4),model.embedding_dim=8,"
    "model.learnet_features=8,batch_size=2,num_train_queries=2,num_ways=5,num_train_steps=1,"
    "log_every_steps=1,checkpoint_every_steps=1,eval_batch_size=2,num_val_episodes=2,"
    "num_test_episodes=3,num_official_runs=2,num_figure_runs=1,lr_warmup_steps=0"
)

TEST_SETS = ("official_runs", "within20", "across20", "within5", "across5", "within20_by_drawer")


@pytest.mark.parametrize("variant", learnet_omniglot.VARIANTS)
def test_each_variant_builds_with_its_documented_size(variant):
    config = learnet_omniglot.get_config(variant)
    assert config.experiment == "learnet.omniglot" and config.model.variant == variant
    experiment = main.make_experiment(config)  # loads no data
    model = experiment.build_model(nnx.Rngs(0))
    assert count_params(model) == learnet_param_count(variant, experiment.model_config)


def test_baselines_match_the_learnets_parameter_count():
    learnet = learnet_param_count("learnet", main.make_experiment(
        learnet_omniglot.get_config("learnet")).model_config)  # fmt: skip
    for variant in ("siamese", "siamese_unshared", "siamese_learnet"):
        experiment = main.make_experiment(learnet_omniglot.get_config(variant))
        count = learnet_param_count(variant, experiment.model_config)
        assert abs(count - learnet) <= 0.05 * learnet, (variant, count, learnet)


def test_bad_variants_and_settings_fail_with_a_sentence():
    with pytest.raises(ValueError, match="Unknown learnet_omniglot variant"):
        learnet_omniglot.get_config("prototypical")
    with pytest.raises(ValueError, match="Pick one learnet_omniglot variant"):
        learnet_omniglot.get_config("learnet,siamese")
    experiment = main.make_experiment(learnet_omniglot.get_config("learnet,loss=hinge"))
    assert any("`loss`" in p for p in experiment.config_problems())
    config = learnet_omniglot.get_config("learnet,num_train_queries=21")
    assert any("`num_train_queries`" in p for p in main.make_experiment(config).config_problems())


def test_by_drawer_builds_training_episodes_as_the_official_runs(omniglot_dir):
    config = learnet_omniglot.get_config(f"learnet,{TINY}")
    config.data.omniglot_dir = str(omniglot_dir)
    config.data.by_drawer = True
    experiment = main.make_experiment(config)
    assert not experiment.config_problems()
    batch = experiment.train_episodes.sample(0, 4)
    drawers = experiment.background[0].drawers
    support, query = drawers[batch.support_indices], drawers[batch.query_indices]
    assert (support == support[:, :1]).all() and (query == query[:, :1]).all()
    assert (support[:, 0] != query[:, 0]).all()
    assert experiment.train_batch(0)["support"].shape == (2, 5, 28, 28)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["learnet", "siamese"])
def test_a_one_step_run_evaluates_on_two_official_runs(variant, omniglot_dir, tmp_path):
    config = learnet_omniglot.get_config(f"{variant},{TINY}")
    config.mesh.data = 1
    config.data.omniglot_dir = str(omniglot_dir)
    results = main.train_and_evaluate(config, str(tmp_path / "run"))
    test = results["test"]
    sets = ("val", *TEST_SETS)
    assert {f"{s}_error" for s in sets} <= set(test)
    assert {f"{s}_ci95" for s in sets if s != "official_runs"} <= set(test)
    assert len(test["per_run_error"]) == 2
    # Each run has 20 trials: errors are multiples of 5%, and the runs' mean is the set's error.
    per_run = np.asarray(test["per_run_error"])
    assert np.allclose(per_run % 5, 0) and np.isclose(per_run.mean(), test["official_runs_error"])
    for s in sets:
        assert 0 <= test[f"{s}_error"] <= 100
    assert results["steps"] == 1 and results["variant"] == variant
    assert len(results["val_alphabets"]) == 5 and len(results["train_alphabets"]) == 25
    assert any(f.endswith("official_run01.png") for f in results["figures"])
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["num_params"] == results["num_params"]
    # Exported as package data and loaded back, it scores as the trained model did.
    meta = export(tmp_path / "run", "tiny", "the test", directory=tmp_path)
    assert meta["builder"] == "learnet.model" and meta["config"]["variant"] == variant
    model = pretrained.load("tiny", directory=tmp_path)
    assert count_params(model) == results["num_params"]
    runs = load_official_runs(omniglot_dir=omniglot_dir)
    np.testing.assert_allclose(official_run_errors(model, runs)[:2], test["per_run_error"])
    if variant != "learnet":
        return
    # The documented one-line evaluation, on all 20 runs (once: the command is the same).
    command = [sys.executable, "-m", "experiments.learnet.evaluate_official", "--model=tiny",
               f"--directory={tmp_path}", f"--omniglot_dir={omniglot_dir}", "--nodownload",
               f"--figure={tmp_path / 'runs.png'}"]  # fmt: skip
    out = subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, text=True)
    report = json.loads(out.stdout)
    assert len(report["per_run_error"]) == 20 and report["num_params"] == results["num_params"]
    assert report["per_run_error"][:2] == test["per_run_error"]
    assert (tmp_path / "runs.png").is_file()
    # experiments.learnet.paired: a model against itself reproduces the run's test errors,
    # differs by nothing and is worse on no trial.
    report = paired.compare(config, ["tiny", "tiny"], [str(tmp_path)] * 2)
    assert report["official_runs"]["count"] == 40 and report["num_params"][0] == meta["num_params"]
    assert report["per_run_error"] == [test["per_run_error"]] * 2
    errors = dict(zip(["a", "b"], report["per_run_error"], strict=True))
    assert viz.plot_run_errors(errors, tmp_path / "both.png").stat().st_size > 0
    for name in TEST_SETS:
        entry = report[name]
        np.testing.assert_allclose(entry["error"], [test[f"{name}_error"]] * 2, rtol=1e-5)
        assert entry["difference"] == 0 and entry["ci95"] == [0, 0]
        assert entry["worse_only"] == [0, 0]
    assert report["official_runs"]["ci95_runs"] == [0, 0]
    with pytest.raises(ValueError, match="`models` must name two models"):
        paired.compare(config, ["tiny"], [str(tmp_path)])
    # experiments.learnet.runs_like: the same model twice, on episodes built as the runs are.
    data = load_omniglot("evaluation", omniglot_dir=omniglot_dir)
    like = runs_like.compare([model, model], data, runs, num_episodes=4)
    assert set(like) == {*runs_like.SETS, "official_runs"}
    np.testing.assert_allclose(
        like["official_runs"]["error"], [official_run_errors(model, runs).mean()] * 2
    )
    for name in runs_like.SETS:
        assert (
            like[name]["difference"] == 0
            and like[name]["range_of_20"][0] == like[name]["range_of_20"][1]
        )
    assert runs_like.draw(like, ["a", "b"], tmp_path / "like.png").stat().st_size > 0
    sets = runs_like.runs_like_episodes(data, runs, num_episodes=40)
    training, test = official_run_indices(runs, data)
    for name, (images, support, query) in sets.items():
        assert support.shape == query.shape == (40, 20), name
        np.testing.assert_array_equal(images[support].mean((2, 3)) > 0, True)  # real drawings
    # Each run's own characters (by other drawers), or its own two drawers (other characters).
    _, support, query = sets["run_characters"]
    np.testing.assert_array_equal(data.labels[support[21]], data.labels[training[1]])
    np.testing.assert_array_equal(data.labels[query[21]], data.labels[training[1]])
    _, support, query = sets["run_drawers"]
    assert set(data.drawers[support[21]]) == set(data.drawers[training[1]])
    assert set(data.drawers[query[21]]) == set(data.drawers[test[1]])
    np.testing.assert_array_equal(data.labels[support], data.labels[query])
    # Two runs of one model joined by "+": each trial's error is their mean, each run's listed.
    joined = paired.compare(config, ["tiny+tiny", "tiny"], [str(tmp_path)] * 2)
    for name in ("official_runs", "within5"):
        assert joined[name]["error"] == report[name]["error"] and joined[name]["difference"] == 0
        assert joined[name]["error_per_run"] == [
            [report[name]["error"][0]] * 2,
            [report[name]["error"][1]],
        ]
