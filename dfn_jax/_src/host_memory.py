"""The host allocator setting applied when ``dfn_jax`` is imported (CPU computation only).

XLA:CPU allocates each step's temporary buffers (hundreds of MB for a training step, tens of MB for
one dynamic filtering gradient) from its worker threads. glibc's malloc serves a block that large
with a fresh ``mmap`` (a thread arena's heap holds at most 64 MiB) and unmaps it when it is freed,
so the next step touches pages the kernel must map and zero again: 180,000 page faults per training
step of the quick start's model, a quarter of its time (docs/BENCHMARKS.md, "The host allocator and
the command line"). Three ``mallopt`` settings make the process reuse freed memory instead: one
arena, no mapped blocks, no trimming. The price is a process that keeps its peak heap (measured
there).

They are applied once, at ``import dfn_jax``, which must come before the runtime starts its
threads (the first computation, not ``import jax``) to be complete, when all of these hold:

* the C library is glibc (``mallopt`` exists; elsewhere nothing is done);
* JAX will compute on the CPU: ``JAX_PLATFORMS`` names ``cpu`` first, or is unset and no GPU or
  TPU plugin is installed (on an accelerator the host's allocations are small and left alone);
* the user did not opt out with ``DFN_JAX_HOST_ALLOCATOR=system`` (``keep`` forces the setting
  on any backend), and did not set glibc's own ``GLIBC_TUNABLES`` malloc tunables (theirs win).

:func:`host_allocator` says what was done and why.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys

ENV_VAR = "DFN_JAX_HOST_ALLOCATOR"
"""``system`` (leave malloc alone), ``keep`` (always apply) or unset / ``auto``."""

# <malloc.h> parameter numbers and the values applied.
MALLOPT_SETTINGS = {
    "M_ARENA_MAX": (-8, 1),
    "M_MMAP_MAX": (-4, 0),
    "M_TRIM_THRESHOLD": (-1, -1),  # mallopt(3): -1 disables trimming (2**31 - 1 would still
    # return a freed top chunk larger than 2 GiB: the batch-16 paper step frees ~4 GiB at once)
}

_ACCELERATOR_PLUGINS = (
    "jax_plugins.xla_cuda12",
    "jax_plugins.xla_cuda13",
    "jax_cuda12_plugin",
    "jax_cuda13_plugin",
    "jax_plugins.xla_rocm",
    "libtpu",
)

_state: dict = {"applied": False, "reason": "not configured yet"}


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def computes_on_cpu(environ=os.environ) -> tuple[bool, str]:
    """Whether JAX will compute on the host CPU, judged without starting a backend."""
    platforms = environ.get("JAX_PLATFORMS", environ.get("JAX_PLATFORM_NAME", "")).strip()
    if platforms:
        first = platforms.split(",")[0].strip().lower()
        return first == "cpu", f"JAX_PLATFORMS={platforms!r}"
    plugins = [name for name in _ACCELERATOR_PLUGINS if _module_exists(name)]
    if plugins:
        return False, f"an accelerator plugin is installed ({plugins[0]})"
    return True, "no GPU or TPU plugin is installed"


def mallopt_settings() -> tuple[bool, str]:
    """Applies :data:`MALLOPT_SETTINGS` with glibc's ``mallopt``; returns (applied, reason)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False, "no mallopt in this C library (not glibc)"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    failed = [name for name, (p, value) in MALLOPT_SETTINGS.items() if mallopt(p, value) != 1]
    if failed:
        return False, f"mallopt refused {failed}"
    return True, "one arena, no mapped blocks, no trimming (freed memory is reused)"


def _backend_started() -> bool:
    bridge = sys.modules.get("jax._src.xla_bridge")
    return bool(getattr(bridge, "_backends", None))


def configure(environ=os.environ) -> dict:
    """Decides and applies the setting (see the module docstring); idempotent once applied."""
    global _state
    if _state.get("applied"):
        return dict(_state)
    mode = environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if mode not in ("auto", "keep", "system"):
        raise ValueError(
            f"{ENV_VAR} must be 'auto' (default), 'keep' or 'system', got {environ[ENV_VAR]!r}."
        )
    state = {"mode": mode}
    if mode == "system":
        state.update(applied=False, reason=f"{ENV_VAR}=system")
    elif mode == "auto" and "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        state.update(applied=False, reason="GLIBC_TUNABLES sets malloc tunables (left to them)")
    else:
        on_cpu, why = computes_on_cpu(environ) if mode == "auto" else (True, f"{ENV_VAR}=keep")
        if not on_cpu:
            state.update(applied=False, reason=f"JAX computes on an accelerator: {why}")
        else:
            applied, reason = mallopt_settings()
            state.update(applied=applied, reason=reason, why=why)
            if applied:
                state["settings"] = {name: value for name, (_, value) in MALLOPT_SETTINGS.items()}
                if _backend_started():
                    state["note"] = (
                        "the JAX backend had already started: threads that allocated before keep "
                        "their arenas (import dfn_jax before the first computation)"
                    )
    _state = state
    return dict(state)


def host_allocator() -> dict:
    """What ``import dfn_jax`` did to the host allocator: ``{"applied": bool, "reason": str,
    "mode": ..., "settings": {...}}``."""
    return dict(_state)
