"""The trainer never loses work: corrupt checkpoints, SIGKILL and SIGTERM (subprocesses)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dfn_jax.training import Checkpointer, Trainer
from experiments import main
from tests.helpers import REPO_ROOT, TINY_FLAGS, tiny_config


def _command(workdir, steps):
    return [sys.executable, "-m", "experiments.main", *TINY_FLAGS] + [
        f"--config.num_train_steps={steps}",
        f"--workdir={workdir}",
    ]


def _env():
    env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def _wait_for_checkpoint(workdir, step, process, timeout=300):
    deadline = time.time() + timeout
    target = workdir / "checkpoints" / str(step)
    while time.time() < deadline:
        if (target / "_CHECKPOINT_METADATA").exists() or (target / "commit_success.txt").exists():
            return
        if process.poll() is not None:
            raise AssertionError(f"run ended early:\n{process.stdout.read()}")
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint {target} within {timeout} s")


def _test_metrics(workdir):
    return json.loads((workdir / "results.json").read_text())["test"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(_command(workdir, 5), check=True, cwd=REPO_ROOT, env=_env(), capture_output=True)
    return _test_metrics(workdir)


def test_sigkill_then_rerun_matches_uninterrupted_run_bitwise(tmp_path, uninterrupted):
    process = subprocess.Popen(
        _command(tmp_path, 5),
        cwd=REPO_ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for_checkpoint(tmp_path, 2, process)
    process.kill()
    process.wait()
    assert not (tmp_path / "results.json").exists()
    rerun = subprocess.run(
        _command(tmp_path, 5), cwd=REPO_ROOT, env=_env(), capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "Resuming from step" in rerun.stdout
    assert _test_metrics(tmp_path) == uninterrupted


def test_sigterm_saves_the_current_step_and_exits_cleanly(tmp_path):
    process = subprocess.Popen(
        _command(tmp_path, 1000),
        cwd=REPO_ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for_checkpoint(tmp_path, 1, process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert "SIGTERM received: saved the checkpoint at step" in output
    saved = int(output.split("checkpoint at step ")[1].split(";")[0])
    assert (tmp_path / "checkpoints" / str(saved)).is_dir()


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    config = tiny_config(num_train_steps=2, checkpoint_every_steps=1)
    main.train_and_evaluate(config, str(tmp_path))
    # Truncate every data file of the latest checkpoint, as a crash mid-write might leave it.
    for path in (tmp_path / "checkpoints" / "2").rglob("*"):
        if path.is_file() and path.stat().st_size > 0:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.warns(RuntimeWarning, match=r"checkpoints/2 could not be restored"):
        resumed = main.train_and_evaluate(tiny_config(num_train_steps=3), str(tmp_path))
    assert resumed["steps"] == 3
    assert (tmp_path / "checkpoints" / "2.corrupt").is_dir()
    fresh = main.train_and_evaluate(tiny_config(num_train_steps=3), str(tmp_path / "fresh"))
    assert resumed["test"] == fresh["test"]


def test_missing_commit_marker_and_half_written_directory_are_not_resumed_from(tmp_path):
    """A crash mid-save leaves a step without its commit marker or a temporary directory:
    neither stops the re-run, which ends where an uninterrupted run does."""
    config = tiny_config(num_train_steps=2, checkpoint_every_steps=1)
    main.train_and_evaluate(config, str(tmp_path))
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "2" / "_CHECKPOINT_METADATA").unlink()
    half = checkpoints / "3.orbax-checkpoint-tmp-1"
    half.mkdir()
    (half / "partial").write_bytes(b"\0" * 10)
    resumed = main.train_and_evaluate(tiny_config(num_train_steps=3), str(tmp_path))
    assert resumed["steps"] == 3
    fresh = main.train_and_evaluate(tiny_config(num_train_steps=3), str(tmp_path / "fresh"))
    assert resumed["test"] == fresh["test"]


def test_checkpoint_in_the_layout_before_model_state_carry_and_key_still_restores(tmp_path):
    """Checkpoints written before the train state held ``model_state``, ``carry`` and ``key``
    (dfn_jax <= 2026-11) resume: the entries they hold restore, the rest start as initialised."""
    trainer = Trainer(main.make_experiment(tiny_config()))
    state = trainer.init_state()
    for step in range(2):
        state, _ = trainer.train_step(state, trainer.train_batch(step))
    old_layout = {k: state[k] for k in ("step", "params", "opt_state", "train_time_s")}
    checkpointer = Checkpointer(tmp_path, async_save=False)
    checkpointer.save(2, old_layout, force=True)
    checkpointer.close()
    resumed = main.train_and_evaluate(tiny_config(num_train_steps=3), str(tmp_path))
    fresh = main.train_and_evaluate(tiny_config(num_train_steps=3), str(tmp_path / "fresh"))
    assert resumed["test"] == fresh["test"]
