"""The device mesh the trainer and the meta-learning loop run on, and moving data onto it.

A 1-D data-parallel mesh (axis ``"data"``): batches are sharded on it, parameters and optimiser
state replicated; the same code runs on 1 or N devices, on one host or several.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding


def make_mesh(num_devices: int) -> jax.sharding.Mesh:
    """A 1-D data-parallel mesh (axis ``"data"``) over ``num_devices`` of the global devices
    (0 or -1: all of them, on every process)."""
    devices = jax.devices()
    n = len(devices) if num_devices <= 0 else num_devices
    return jax.make_mesh((n,), ("data",), (AxisType.Auto,), devices=devices[:n])


def process_rows(sharding: NamedSharding, batch_size: int) -> np.ndarray | None:
    """Indices of the rows of a global ``[batch_size, ...]`` batch that live on this process's
    devices under ``sharding``, in the order ``jax.make_array_from_process_local_data`` expects
    them (ascending): a contiguous block per process on a multi-host mesh, or ``None`` when this
    process holds every row (one process), so that callers need not index at all."""
    index_map = sharding.addressable_devices_indices_map((batch_size,))
    starts = sorted({(s[0].start or 0, s[0].stop or batch_size) for s in index_map.values()})
    rows = np.concatenate([np.arange(a, b) for a, b in starts])
    return None if np.array_equal(rows, np.arange(batch_size)) else rows


def host_local_copy(tree: Any) -> Any:
    """A copy of a tree of replicated global arrays on this process's first device only, so
    that process 0 can run a model (figures) without the other processes taking part."""
    device = jax.local_devices()[0]
    return jax.tree.map(lambda a: jax.device_put(a.addressable_data(0), device), tree)


class OnMesh:
    """A jitted function traced and run with ``mesh`` as the context mesh (``jax.set_mesh``), so
    that ops can split per-device work over it (the C++ filtering kernels do); ``lower`` and the
    jitted function's other attributes pass through."""

    def __init__(self, jitted, mesh: jax.sharding.Mesh):
        self._jitted, self._mesh = jitted, mesh

    def __call__(self, *args, **kwargs):
        with jax.set_mesh(self._mesh):
            return self._jitted(*args, **kwargs)

    def lower(self, *args, **kwargs):
        with jax.set_mesh(self._mesh):
            return self._jitted.lower(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._jitted, name)
