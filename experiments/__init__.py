"""Experiments: one small file per paper experiment, run by ``python -m experiments.main``."""
