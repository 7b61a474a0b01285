"""Multi-host training: two processes on loopback (gloo collectives) against one process.

Each process has 2 fake CPU devices, so the job's mesh has 4 devices over 2 hosts; every process
generates only its half of each batch. The single-process run uses 4 devices in one process and
the same global batches, so both must end at the same parameters (to float tolerance).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from dfn_jax.training import Checkpointer, Trainer, distributed
from experiments import main
from tests.helpers import REPO_ROOT, TINY_FLAGS, tiny_config

STEPS = 3
JOB_FLAGS = [
    *TINY_FLAGS,
    "--config.mesh.data=-1",
    "--config.batch_size=4",
    "--config.eval_batch_size=4",
    f"--config.num_train_steps={STEPS}",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(devices_per_process: int) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices_per_process}"
    env["PYTHONPATH"] = str(REPO_ROOT)
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(name, None)
    return env


def _final_params(workdir):
    """The last checkpoint's parameters, restored into a single-process, single-device state."""
    config = tiny_config(batch_size=4)
    template = Trainer(main.make_experiment(config)).init_state()
    checkpointer = Checkpointer(workdir, async_save=False)
    state = checkpointer.restore(checkpointer.latest_step(), template)
    checkpointer.close()
    return jax.device_get(state["params"])


def _start_job(workdir, extra_flags=()) -> list[subprocess.Popen]:
    """Two processes of one job on loopback, 2 CPU devices each."""
    address = f"localhost:{_free_port()}"
    return [
        subprocess.Popen(
            [sys.executable, "-m", "experiments.main", *JOB_FLAGS, *extra_flags]
            + [
                f"--workdir={workdir}",
                f"--coordinator_address={address}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            cwd=REPO_ROOT,
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]


def _finish(processes, timeout=600) -> list[str]:
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=timeout)[0])
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            raise
    return outputs


def test_two_processes_agree_with_one_process_and_only_process_zero_writes(tmp_path):
    """One test, not two sharing a module fixture: pytest-xdist would run the jobs once per
    worker that gets one of them."""
    multi, single = tmp_path / "two_processes", tmp_path / "one_process"
    processes = _start_job(multi)
    outputs = _finish(processes)
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
    done = subprocess.run(
        [sys.executable, "-m", "experiments.main", *JOB_FLAGS]
        + [f"--workdir={single}", "--distributed=off"],
        cwd=REPO_ROOT,
        env=_env(4),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    multi_results = json.loads((multi / "results.json").read_text())
    single_results = json.loads((single / "results.json").read_text())
    assert multi_results["num_processes"] == 2 and len(multi_results["devices"]) == 4
    assert single_results["num_processes"] == 1 and len(single_results["devices"]) == 4
    assert multi_results["steps"] == single_results["steps"] == STEPS
    for name, value in single_results["test"].items():
        np.testing.assert_allclose(multi_results["test"][name], value, rtol=1e-4, err_msg=name)
    params_multi, params_single = _final_params(multi), _final_params(single)
    for a, b in zip(jax.tree.leaves(params_multi), jax.tree.leaves(params_single), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)

    # Process 0 reports and writes logs, figures and results; process 1 stays quiet.
    assert "Test metrics" in outputs[0] and "Test metrics" not in outputs[1]
    assert (multi / "figures" / "loss_curves.png").is_file()
    lines = (multi / "metrics.jsonl").read_text().splitlines()
    # One writer: every logged step appears once, not once per process.
    steps = [json.loads(line)["step"] for line in lines if '"train/loss"' in line]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS


def test_sigterm_to_one_process_saves_the_same_step_on_both(tmp_path):
    """A preemption notice reaches one host: JAX's preemption service makes every process save
    at the same step and exit cleanly; re-running resumes from it."""
    processes = _start_job(tmp_path, ["--config.num_train_steps=100000"])
    target = tmp_path / "checkpoints" / "1"
    deadline = time.time() + 300
    while not (target / "_CHECKPOINT_METADATA").exists():
        if any(p.poll() is not None for p in processes) or time.time() > deadline:
            outputs = _finish(processes, timeout=10)
            raise AssertionError(f"the job did not reach step 1:\n{outputs}")
        time.sleep(0.2)
    processes[1].send_signal(signal.SIGTERM)
    outputs = _finish(processes, timeout=300)
    saved = []
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
        assert "SIGTERM received: saved the checkpoint at step" in output, output
        saved.append(int(output.split("checkpoint at step ")[1].split(";")[0]))
    assert saved[0] == saved[1]
    assert (tmp_path / "checkpoints" / str(saved[0]) / "_CHECKPOINT_METADATA").exists()


def test_distributed_settings_are_checked():
    with pytest.raises(ValueError, match="mode"):
        distributed.initialize("sometimes")
    with pytest.raises(ValueError, match="--num_processes and --process_id"):
        distributed.initialize("auto", coordinator_address="localhost:1")
    with pytest.raises(ValueError, match=r"process_id` must be in \[0, 2\)"):
        distributed.initialize(
            "auto", coordinator_address="localhost:1", num_processes=2, process_id=5
        )
    assert distributed.initialize("off") is False
    assert distributed.initialize("auto") is False  # nothing says this is a job: one process
