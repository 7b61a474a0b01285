"""dfn_jax: Dynamic Filter Networks and other networks that generate their own weights."""

__version__ = "0.1.0"
