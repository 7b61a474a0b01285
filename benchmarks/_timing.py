"""Tiny timing helpers shared by the benchmarks: wall-clock medians that block on the results."""

from __future__ import annotations

import statistics
import time

import jax


def median_time(fn, *args, runs: int = 20, warmup: int = 2) -> dict:
    """Calls ``fn(*args)`` ``warmup`` times, then times ``runs`` calls, each blocked until ready.

    Returns ``{"median_s", "min_s", "runs"}``. Pass an already jitted (or compiled) ``fn`` so
    that compilation is not timed.
    """
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": runs}


def compile_time(jitted, *args) -> tuple[float, object]:
    """Lowers and compiles ``jitted`` for ``args``; returns ``(seconds, compiled)``.

    The compiled executable can be timed directly and queried with ``memory_analysis()``.
    """
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return time.perf_counter() - start, compiled


def temp_bytes(compiled) -> int | None:
    """``compiled.memory_analysis().temp_size_in_bytes``, or ``None`` where the backend lacks it."""
    try:
        return int(compiled.memory_analysis().temp_size_in_bytes)
    except Exception:  # unsupported on some backends and versions
        return None
