"""Multi-host start-up: ``jax.distributed.initialize`` from flags or the environment.

JAX is multi-controller: the same program runs once per process (host), each process drives its
local devices, and a jitted step over a mesh spanning all processes runs on every process at
once. This module decides *whether* and *how* to join such a job; nothing here runs a step.

Where the settings come from, first match wins:

1. explicit arguments (``experiments/main.py`` passes its ``--coordinator_address``,
   ``--num_processes`` and ``--process_id`` flags);
2. the environment: ``JAX_COORDINATOR_ADDRESS`` (read by JAX itself), ``JAX_NUM_PROCESSES``,
   ``JAX_PROCESS_ID``;
3. JAX's cluster auto-detection (Cloud TPU pods, SLURM, Open MPI), which needs no settings.

``mode="auto"`` (the default) joins a job when a coordinator address is known or one of those
clusters is detected with more than one process, and otherwise runs as a single process;
``"on"`` always calls ``jax.distributed.initialize`` (an error if nothing tells it how);
``"off"`` never does. On CPU the cross-process collectives use gloo.
"""

from __future__ import annotations

import logging
import os

import jax

log = logging.getLogger(__name__)

MODES = ("auto", "on", "off")


def _int_or_none(value, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be an integer, got {value!r}.") from None


def _cluster_detected() -> bool:
    """A multi-process job launched by SLURM, Open MPI or on a multi-host Cloud TPU slice."""
    env = os.environ
    if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in env:
        return True
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
        return True
    return len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1


def initialize(
    mode: str = "auto",
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Joins a multi-process JAX job if asked to (see the module docstring); returns whether it did.

    Call it before any other JAX call of the program. Idempotent: a second call does nothing.
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
    if jax.distributed.is_initialized():
        return True
    if mode == "off":
        return False
    address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
    count = _int_or_none(
        num_processes if num_processes is not None else os.environ.get("JAX_NUM_PROCESSES"),
        "num_processes",
    )
    index = _int_or_none(
        process_id if process_id is not None else os.environ.get("JAX_PROCESS_ID"), "process_id"
    )
    if mode == "auto" and address is None and count is None and not _cluster_detected():
        return False
    if address is not None and (count is None or index is None) and not _cluster_detected():
        raise ValueError(
            f"A coordinator address ({address}) was given without the number of processes and "
            "this process's id: pass --num_processes and --process_id (or set "
            "JAX_NUM_PROCESSES and JAX_PROCESS_ID)."
        )
    if count is not None and index is not None and not 0 <= index < count:
        raise ValueError(f"`process_id` must be in [0, {count}), got {index}.")
    # Gloo gives CPU processes their cross-process collectives; other backends ignore it.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=address, num_processes=count, process_id=index)
    log.info(
        "Joined a JAX job: process %d of %d, %d local / %d global devices.",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True
