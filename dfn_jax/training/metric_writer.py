"""Metric logging: ``metrics.jsonl`` (one JSON object per logged step) and TensorBoard event
files written with tensorboardX, which needs no TensorFlow install."""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Mapping

import numpy as np


def _to_float(value) -> float:
    return float(np.asarray(value))


class MetricWriter:
    """Writes scalars to ``<workdir>/metrics.jsonl`` and TensorBoard; only on process 0."""

    def __init__(self, workdir: str | pathlib.Path, *, enabled: bool = True):
        self.enabled = enabled
        self.path = pathlib.Path(workdir) / "metrics.jsonl"
        self._tb = None
        if enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(logdir=str(pathlib.Path(workdir) / "tensorboard"))

    def write(self, step: int, scalars: Mapping[str, float], *, prefix: str = "") -> None:
        if not self.enabled:
            return
        record = {"step": int(step)}
        for name, value in scalars.items():
            value = _to_float(value)
            record[prefix + name] = value if math.isfinite(value) else str(value)
            self._tb.add_scalar(prefix + name, value, global_step=int(step))
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: str | pathlib.Path) -> list[dict]:
    """Reads back ``metrics.jsonl`` (for loss-curve figures and tests)."""
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
