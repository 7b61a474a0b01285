"""The host allocator setting applied at ``import dfn_jax``: when, how to switch it off, and that a
short training run gives the same results with and without it."""

import json
import sys

import pytest

from dfn_jax._src import host_memory
from tests.helpers import TINY_FLAGS, run_python

GLIBC = sys.platform.startswith("linux")


@pytest.fixture
def fresh_state(monkeypatch):
    monkeypatch.setattr(host_memory, "_state", {"applied": False, "reason": "test"})
    calls = []
    monkeypatch.setattr(host_memory, "mallopt_settings", lambda: calls.append(1) or (True, "ok"))
    return calls


@pytest.mark.parametrize(
    "platforms, on_cpu", [("cpu", True), ("cpu,cuda", True), ("cuda", False), ("tpu", False)]
)
def test_computes_on_cpu_reads_jax_platforms(platforms, on_cpu):
    assert host_memory.computes_on_cpu({"JAX_PLATFORMS": platforms})[0] is on_cpu


def test_auto_applies_on_cpu_and_opt_out_leaves_malloc_alone(fresh_state):
    state = host_memory.configure({"JAX_PLATFORMS": "cpu"})
    assert state["applied"] and state["mode"] == "auto" and fresh_state == [1]
    assert host_memory.host_allocator() == state

    host_memory._state = {"applied": False}
    state = host_memory.configure({"JAX_PLATFORMS": "cpu", host_memory.ENV_VAR: "system"})
    assert not state["applied"] and "system" in state["reason"] and fresh_state == [1]


def test_accelerators_and_glibc_tunables_are_left_alone_unless_forced(fresh_state):
    state = host_memory.configure({"JAX_PLATFORMS": "cuda"})
    assert not state["applied"] and "accelerator" in state["reason"]
    tunables = {"JAX_PLATFORMS": "cpu", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    state = host_memory.configure(tunables)
    assert not state["applied"] and "GLIBC_TUNABLES" in state["reason"]
    assert fresh_state == []
    state = host_memory.configure({"JAX_PLATFORMS": "cuda", host_memory.ENV_VAR: "keep"})
    assert state["applied"] and fresh_state == [1]


def test_bad_setting_names_the_variable(fresh_state):
    with pytest.raises(ValueError, match="DFN_JAX_HOST_ALLOCATOR must be 'auto'"):
        host_memory.configure({host_memory.ENV_VAR: "sometimes"})


def _python(code: str, **env) -> str:
    return run_python("-c", code, timeout=120, **env).stdout


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_import_applies_it_in_a_plain_process_and_the_variable_switches_it_off():
    code = "import json, dfn_jax; print(json.dumps(dfn_jax.host_allocator()))"
    assert json.loads(_python(code))["applied"] is True
    off = json.loads(_python(code, DFN_JAX_HOST_ALLOCATOR="system"))
    assert off["applied"] is False and off["mode"] == "system"


@pytest.mark.slow
def test_short_training_run_gives_the_same_results_with_the_settings_off(tmp_path):
    def train(name, **env):
        workdir = tmp_path / name
        flags = [*TINY_FLAGS, "--config.num_train_steps=3", f"--workdir={workdir}"]
        run_python("-m", "experiments.main", *flags, **env)
        return json.loads((workdir / "results.json").read_text())

    default = train("default")
    off = train("off", DFN_JAX_HOST_ALLOCATOR="system")
    assert default["host"]["allocator"]["applied"] is GLIBC
    assert off["host"]["allocator"]["applied"] is False
    assert default["test"].keys() == off["test"].keys()
    for name, value in default["test"].items():
        assert value == pytest.approx(off["test"][name], rel=1e-5, abs=1e-6), name
