"""A one-line progress report with steps/s and ETA, printed to stderr (no dependencies)."""

from __future__ import annotations

import sys
import time


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """Reports ``step/total``, steps/s over the last interval, ETA and the given metrics."""

    def __init__(self, total_steps: int, *, first_step: int = 0, stream=None, enabled: bool = True):
        self.total = total_steps
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._last_step, self._last_time = first_step, time.perf_counter()
        self.steps_per_second = float("nan")

    def update(self, step: int, metrics: dict | None = None) -> None:
        now = time.perf_counter()
        if step > self._last_step:
            self.steps_per_second = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        if not self.enabled:
            return
        eta = (self.total - step) / self.steps_per_second if self.steps_per_second > 0 else 0
        shown = " ".join(f"{k} {float(v):.4g}" for k, v in (metrics or {}).items())
        pct = 100.0 * step / max(self.total, 1)
        self.stream.write(
            f"[{pct:5.1f}%] step {step}/{self.total} | {shown} | "
            f"{self.steps_per_second:.2f} steps/s | ETA {_duration(eta)}\n"
        )
        self.stream.flush()
