"""dfn_jax: Dynamic Filter Networks and other networks that generate their own weights.

Importing the package sets the host allocator to reuse freed memory when JAX computes on the CPU
(before the runtime starts its threads; ``DFN_JAX_HOST_ALLOCATOR=system`` opts out):
:func:`host_allocator` says what was done and why.
"""

from dfn_jax._src import host_memory as _host_memory
from dfn_jax._src.host_memory import host_allocator

__version__ = "0.1.0"
__all__ = ["host_allocator"]

_host_memory.configure()
