"""Helpers shared by the benchmarks: wall-clock medians that block on the results, compile
times, compiled memory."""

from __future__ import annotations

import resource
import statistics
import time

import jax


def median_time(fn, *args, runs: int = 20, warmup: int = 2) -> dict:
    """Calls ``fn(*args)`` ``warmup`` times, then times ``runs`` calls, each blocked until ready.

    Returns ``{"median_s", "min_s", "runs", "page_faults_per_run"}``. Pass an already jitted (or
    compiled) ``fn`` so that compilation is not timed.
    """
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(runs):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "runs": runs,
        # Pages the OS mapped (and zeroed) per call: large outputs sometimes get fresh memory.
        "page_faults_per_run": faults / runs,
    }


def lower_and_compile(jitted, *args) -> tuple[dict, object]:
    """Lowers and compiles ``jitted`` for ``args``; returns ``({"lower_s", "compile_s",
    "lower_compile_s"}, compiled)``."""
    start = time.perf_counter()
    lowered = jitted.lower(*args)
    lowered_at = time.perf_counter()
    compiled = lowered.compile()
    end = time.perf_counter()
    times = {
        "lower_s": lowered_at - start,
        "compile_s": end - lowered_at,
        "lower_compile_s": end - start,
    }
    return times, compiled


def compile_time(jitted, *args) -> tuple[float, object]:
    """Lowers and compiles ``jitted`` for ``args``; returns ``(seconds, compiled)``.

    The compiled executable can be timed directly and queried with ``memory_analysis()``.
    """
    times, compiled = lower_and_compile(jitted, *args)
    return times["lower_compile_s"], compiled


def memory_of(compiled) -> dict:
    """``compiled.memory_analysis()`` as ``{"temp_bytes", "argument_bytes", ...,
    "total_bytes"}``; ``{}`` where the backend lacks it."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # unsupported on some backends and versions
        return {}
    if m is None:
        return {}
    out = {}
    for name in ("temp", "argument", "output", "alias", "generated_code"):
        value = getattr(m, f"{name}_size_in_bytes", None)
        if value is not None:
            out[f"{name}_bytes"] = int(value)
    if {"temp_bytes", "argument_bytes", "output_bytes", "alias_bytes"} <= out.keys():
        # Live at once at most: inputs + outputs (less the donated buffers reused) + scratch.
        out["total_bytes"] = (
            out["argument_bytes"] + out["output_bytes"] - out["alias_bytes"] + out["temp_bytes"]
        )
    return out


def temp_bytes(compiled) -> int | None:
    """``compiled.memory_analysis().temp_size_in_bytes``, or ``None`` where the backend lacks it."""
    return memory_of(compiled).get("temp_bytes")
