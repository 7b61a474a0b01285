"""Smoke tests of the benchmark scripts: tiny runs in a subprocess, one JSON document on stdout."""

import json
import sys

import pytest

from tests.helpers import run_python


def run_benchmark(name, *flags):
    return json.loads(run_python("-m", f"benchmarks.{name}", *flags, timeout=120).stdout)


HEADER_KEYS = {"benchmark", "date", "jax_version", "backend", "device_kind", "cpu_count", "runs"}


@pytest.mark.slow
def test_train_step_benchmark_small(tmp_path):
    out = tmp_path / "train_step.json"
    doc = run_benchmark(
        "train_step", "--small", "--runs", "1", "--remat", "false,true", "--cli", "--out", str(out)
    )
    assert json.loads(out.read_text()) == doc
    assert HEADER_KEYS <= doc.keys()
    assert doc["benchmark"] == "train_step" and doc["small"] and doc["runs"] == 1
    assert {"num_params", "config", "unroll_values", "unroll_note", "total_wall_s"} <= doc.keys()
    assert doc["unroll_values"] == [True]  # CPU default: the rolled scan is skipped, and why
    assert "12868" in doc["unroll_note"]
    record, remat = doc["results"]
    assert record["unroll"] is True and record["num_params"] == doc["num_params"] > 0
    assert doc["conv_values"] == ["matmul"]  # the CPU's default convolution backward
    assert record["conv"] == "matmul" and doc["comparison"][0]["conv"] == "matmul"
    assert (record["remat"], remat["remat"]) == (False, True)
    assert record["dtype"] == remat["dtype"] == "float32"
    assert [row["remat"] for row in doc["comparison"]] == [False, True]
    assert doc["comparison"][0]["time_vs_first"] == 1.0 and doc["comparison"][1]["temp_bytes"] > 0
    assert record["batch_shape"] == [2, 6, 32, 32, 1]
    for step in ("train", "eval"):
        res = record[step]
        for key in ("lower_s", "compile_s", "lower_compile_s", "median_s", "min_s"):
            assert res[key] > 0, (step, key)
        assert res["steps_per_s"] == pytest.approx(1 / res["median_s"])
        assert {"temp_bytes", "argument_bytes", "output_bytes"} <= res["memory"].keys()
        assert "device_peak_bytes_in_use" in res and "sequences_per_s" in res
    assert len(record["train"]["times_s"]) == 1
    assert all(abs(v) < 1e3 for v in record["train"]["losses"])
    cli = doc["cli"]
    assert cli["benchmark_step_s"] == record["train"]["median_s"]
    assert cli["steps"] == 11 and len(cli["intervals_s"]) == 10 and cli["steady_steps"] >= 1
    assert cli["vs_benchmark"] == pytest.approx(cli["per_step_s"] / cli["benchmark_step_s"])


@pytest.mark.slow
def test_dynamic_filter_benchmark_tiny():
    doc = run_benchmark(
        "dynamic_filter", "--shapes", "1,8,8,1,3,3", "--runs", "2", "--flush-bytes", "1048576"
    )
    assert HEADER_KEYS <= doc.keys()
    assert doc["benchmark"] == "dynamic_local_filter" and doc["runs"] == 2
    assert doc["cpu_kernel"]["available"] in (True, False)  # CPU run: built, or why not
    (record,) = doc["results"]
    assert record["shape"] == {"B": 1, "H": 8, "W": 8, "C": 1, "kh": 3, "kw": 3}
    assert doc["flush_bytes"] == 1 << 20
    if sys.platform.startswith("linux"):  # glibc: import dfn_jax set malloc to keep freed memory
        assert doc["host_allocator"]["applied"] is True
        assert doc["system_allocator"]["host_allocator"]["applied"] is False
        (row,) = doc["allocator_comparison"]
        assert row["library_fb_vs_forward"] > 0 and row["system_fb_vs_forward"] > 0
    keys = {"bytes", "copy", "roofline_s", "roofline_cold_s", "implementations", "ratios"}
    assert keys | {"ratios_cold"} <= record.keys()
    assert set(record["implementations"]) == {"fast", "xla", "reference", "patches"}
    for impl, res in record["implementations"].items():
        names = ["forward", "forward_backward"]
        names += ["loss_forward_backward"] if impl in ("fast", "xla") else []
        for name in names:
            for timing in (res[name], res[name]["cold"]):  # back to back, cold caches
                assert timing["median_s"] > 0 and timing["runs"] == 2
                assert timing["page_faults_per_run"] >= 0
            assert res["compile_s"][name] > 0
    assert record["copy"]["cold"]["bandwidth_Bps"] > 0
    for ratios in (record["ratios"], record["ratios_cold"]):
        assert {"fast_fb_vs_fast_forward", "fast_loss_fb_vs_fast_forward"} <= ratios.keys()


@pytest.mark.slow
def test_dynamic_filter_benchmark_without_flush_or_allocator_comparison():
    doc = run_benchmark(
        "dynamic_filter",
        *("--shapes", "1,8,8,1,3,3", "--runs", "2", "--implementations", "fast"),
        *("--flush-bytes", "0", "--no-system-allocator"),
    )
    assert "system_allocator" not in doc and "allocator_comparison" not in doc
    (record,) = doc["results"]
    assert "cold" not in record["implementations"]["fast"]["forward"]
    assert "ratios_cold" not in record and "roofline_cold_s" not in record
    assert record["ratios"]["fast_fb_vs_fast_forward"] > 0


def test_conv_benchmark_small():
    doc = run_benchmark("conv", "--small", "--batch-size", "1", "--runs", "1")
    assert HEADER_KEYS <= doc.keys()
    assert doc["benchmark"] == "conv" and doc["default_implementation"] == "matmul"
    assert [r["layer"] for r in doc["layers"]] == ["small_3x3", "small_1x1"]
    for record in doc["layers"]:
        assert set(record["implementations"]) == {"xla", "matmul", "dot"}  # --torch not asked
        for impl in ("xla", "matmul"):
            res = record["implementations"][impl]
            assert res["forward_s"] > 0 and res["forward_backward_gflops"] > 0
        assert record["matmul_speedup_forward_backward"] > 0
    # 1*16*16 output positions: XLA's kernel gradient for the 3x3, dot for the 1x1
    assert [r["default"] for r in doc["layers"]] == ["xla", "matmul"]
    assert doc["totals"]["matmul"]["forward_backward_s"] > 0
    assert doc["totals"]["default"]["forward_backward_s"] > 0


def test_local_filter_forms_benchmark_tiny():
    doc = run_benchmark("local_filter_forms", "--shapes", "1,6,5,2,3,3", "--runs", "1")
    assert doc["benchmark"] == "local_filter_forms" and doc["backend"] == "cpu"
    (record,) = doc["shapes"]
    forms = {(r["op"], r["form"]): r for r in record["results"]}
    assert set(forms) == {
        ("G", "taps"),
        ("G", "reference"),
        ("H", "rows"),
        ("H", "gather"),
        ("H", "reference"),
    }
    # On the CPU the library uses the taps and the window rows.
    assert [k for k, r in forms.items() if r["chosen"]] == [("G", "taps"), ("H", "rows")]
    assert all(r["median_s"] > 0 and r["vs_roofline"] > 0 for r in forms.values())


@pytest.mark.slow
def test_gpu_check_script_runs_small(tmp_path):
    """Issue 16's one accelerator command, at smoke size on the CPU: every part exits 0 and
    leaves at most the eight files the device tool returns."""
    out = tmp_path / "out"
    run_python(
        "-c",
        "import subprocess, sys; sys.exit(subprocess.call(['bash', 'benchmarks/gpu_check.sh']))",
        timeout=600,
        OUT=str(out),
        WORK=str(tmp_path / "work"),
        SMALL="1",
        PYTHON=sys.executable,
    )
    summary = (out / "summary.txt").read_text()
    parts = (
        "dynamic_filter",
        "local_filter_forms",
        "train_step",
        "train_step_conv",
        "moving_mnist",
    )
    for part in parts:
        assert f"{part}: exit 0" in summary, summary
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and "moving_mnist_results.json" in files, files
    conv = json.loads((out / "train_step_conv.json").read_text())
    assert [r["conv"] for r in conv["results"]] == ["xla", "matmul"]
