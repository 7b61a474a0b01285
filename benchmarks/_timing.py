"""Helpers shared by the benchmarks: wall-clock medians that block on the results (with warm or
flushed caches), compile times and compiled memory."""

from __future__ import annotations

import datetime
import json
import os
import resource
import statistics
import time

import jax
import jax.numpy as jnp

# Writing this many bytes between calls evicts every cache level of today's CPUs and GPUs
# (the largest last-level caches are 32-256 MiB; Triton's do_bench also writes 256 MiB).
FLUSH_BYTES = 256 << 20


def _page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def median_time(fn, *args, runs: int = 20, warmup: int = 2, flush=None) -> dict:
    """Calls ``fn(*args)`` ``warmup`` times, then times ``runs`` calls, each blocked until ready.

    With ``flush`` (a callable, e.g. from :func:`cache_flusher`), it runs untimed before every
    timed call, so that each call starts with cold caches; without it, calls run back to back
    and an input that fits the last-level cache is read from there.

    Returns ``{"median_s", "min_s", "runs", "page_faults_per_run"}``. Pass an already jitted (or
    compiled) ``fn`` so that compilation is not timed.
    """
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times, faults = [], 0
    for _ in range(runs):
        if flush is not None:
            flush()
        faults_before = _page_faults()
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
        faults += _page_faults() - faults_before
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "runs": runs,
        # Pages the OS mapped (and zeroed) per call: large outputs can get fresh memory.
        "page_faults_per_run": faults / runs,
    }


def cache_flusher(nbytes: int = FLUSH_BYTES):
    """Returns ``flush()``: rewrites an ``nbytes`` array on the default device in place (a
    donated jitted update), which evicts whatever a timed call left in the caches, then runs a
    tiny jitted op, which wakes the runtime's threads and reloads its dispatch path (on CPU a
    call after the bare flush pays ~0.1 ms for that, for any size), so that what is cold is
    the data."""
    step = jax.jit(lambda buf: buf + 1.0, donate_argnums=0)
    wake = jax.jit(lambda v: v + 1.0)
    state = [jnp.zeros((max(nbytes // 4, 1),), jnp.float32), jnp.zeros((8,), jnp.float32)]

    def flush():
        state[0] = jax.block_until_ready(step(state[0]))
        jax.block_until_ready(wake(state[1]))

    flush()  # compiles both
    return flush


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


def header(benchmark: str) -> dict:
    """The fields every benchmark's JSON starts with: its name, the date and the machine."""
    return {
        "benchmark": benchmark,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
    }


def emit(doc: dict, out: str | None) -> None:
    """Prints a benchmark's JSON document to stdout and, with ``out``, writes it there too."""
    text = json.dumps(doc, indent=2)
    print(text)
    if out:
        with open(out, "w") as fh:
            fh.write(text + "\n")
