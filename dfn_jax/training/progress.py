"""Training progress on stderr: a live ``tqdm`` bar in a terminal, one line per logged interval
elsewhere (log files, CI), each with steps/s, ETA and the latest loss."""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """Reports ``step/total``, steps/s over the last interval, ETA and the given metrics.

    ``live=None`` (default) draws a bar when ``stream`` is a terminal and writes plain lines
    otherwise; ``update`` is called at every logged step.
    """

    def __init__(
        self,
        total_steps: int,
        *,
        first_step: int = 0,
        stream=None,
        enabled: bool = True,
        live: bool | None = None,
    ):
        self.total = total_steps
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self._last_step, self._last_time = first_step, time.perf_counter()
        self.steps_per_second = float("nan")
        is_tty = getattr(self.stream, "isatty", lambda: False)()
        self._bar = None
        if enabled and (is_tty if live is None else live):
            self._bar = tqdm(
                total=total_steps, initial=first_step, file=self.stream, unit="step", leave=True
            )

    def update(self, step: int, metrics: dict | None = None) -> None:
        now = time.perf_counter()
        if step > self._last_step:
            self.steps_per_second = (step - self._last_step) / max(now - self._last_time, 1e-9)
        advanced = step - self._last_step
        self._last_step, self._last_time = step, now
        if not self.enabled:
            return
        shown = " ".join(f"{k} {float(v):.4g}" for k, v in (metrics or {}).items())
        if self._bar is not None:
            self._bar.set_postfix_str(shown, refresh=False)
            self._bar.update(advanced)
            if step >= self.total:
                self._bar.close()
            return
        eta = (self.total - step) / self.steps_per_second if self.steps_per_second > 0 else 0
        pct = 100.0 * step / max(self.total, 1)
        self.stream.write(
            f"[{pct:5.1f}%] step {step}/{self.total} | {shown} | "
            f"{self.steps_per_second:.2f} steps/s | ETA {_duration(eta)}\n"
        )
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
