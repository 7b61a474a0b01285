"""The character-level PTB experiment: variants and counts, TBPTT segments, a short run."""

import numpy as np
import pytest
from flax import nnx

from dfn_jax.models import count_params
from experiments import main
from experiments.configs import hyper_ptb

COUNTS = {
    "paper": 4_911_874,
    "ln": 4_923_154,
    "lstm": 4_254_050,
    "ln_lstm": 4_264_050,
    "small": 437_586,
    "small_lstm": 436_250,
}


@pytest.mark.parametrize("variant", hyper_ptb.VARIANTS)
def test_variants_and_parameter_counts(variant):
    config = hyper_ptb.get_config(variant)
    assert (config.batch_size, config.seq_length, config.learning_rate) == (128, 100, 1e-3)
    assert config.grad_clip_norm == 1.0 and config.model.recurrent_dropout == 0.1
    experiment = main.make_experiment(config)
    assert count_params(experiment.build_model(nnx.Rngs(0))) == COUNTS[variant]
    # Paper rounding: 4.91M, 4.92M, 4.25M, 4.26M; the small pair within 0.5% of each other.
    assert abs(COUNTS["small"] - COUNTS["small_lstm"]) / COUNTS["small"] < 0.005


def test_segments_follow_each_other_and_reset_each_epoch(shared_data_dir):
    config = hyper_ptb.get_config("small,batch_size=4,seq_length=10")
    config.data.ptb_dir = str(shared_data_dir / "ptb")
    experiment = main.make_experiment(config)
    first, second = experiment.train_batch(0), experiment.train_batch(1)
    assert first["reset"].all() and not second["reset"].any()
    np.testing.assert_array_equal(first["targets"][:, -1], second["tokens"][:, 0])
    np.testing.assert_array_equal(first["tokens"][:, 1:], first["targets"][:, :-1])
    again = experiment.train_batch(experiment.segments_per_epoch)
    assert again["reset"].all()
    np.testing.assert_array_equal(again["tokens"], first["tokens"])


@pytest.mark.slow
def test_a_short_run_carries_the_state_and_reports_bits_per_character(shared_data_dir, tmp_path):
    config = hyper_ptb.get_config(
        "small,batch_size=4,seq_length=8,num_train_steps=3,eval_every_steps=2,"
        "log_every_steps=1,checkpoint_every_steps=2,eval_rows=256,eval_batch_size=256,"
        "model.hidden_features=16,model.hyper_features=8"
    )
    config.data.ptb_dir = str(shared_data_dir / "ptb")
    results = main.train_and_evaluate(config, str(tmp_path))
    assert set(results["test"]) == {"val_bpc", "test_bpc"}
    assert 4.0 < results["test"]["val_bpc"] < 6.0  # near log2(50) = 5.64 after 3 steps
    assert results["best"]["step"] in (2, 3)
