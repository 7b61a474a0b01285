"""A statistic of two methods' means over the same items (test problems, episodes, trials), with
a 95% percentile bootstrap interval that resamples the items in pairs: both methods keep their
result on each drawn item, so the interval says how much of the difference the draw of items
could explain. Used by :mod:`experiments.l2l.paired` and :mod:`experiments.learnet.paired`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def paired_bootstrap(
    a,
    b,
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    *,
    num_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``statistic(mean(a), mean(b))`` over items ``[P]`` (item ``i`` the same in both) and its
    95% interval over ``num_resamples`` resamples of the items with replacement.
    ``statistic`` takes arrays of means (elementwise, e.g. ``lambda x, y: x - y``)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size < 2:
        raise ValueError(
            "The two methods' results must be [P] over the same P >= 2 items, got shapes "
            f"{a.shape} and {b.shape}."
        )
    rng = np.random.default_rng(seed)
    index = rng.integers(0, a.size, size=(num_resamples, a.size))
    resampled = statistic(a[index].mean(1), b[index].mean(1))
    low, high = np.percentile(resampled, [2.5, 97.5])
    return float(statistic(a.mean(), b.mean())), float(low), float(high)
