"""Configuration checks that run before anything is built or compiled.

Every problem found is collected, so one error lists them all instead of surfacing one per run.
"""

from __future__ import annotations

import difflib

import jax

from dfn_jax.training.config import OPTIMIZER_DEFAULTS, base_config
from dfn_jax.training.optim import optimizer_problems


class ConfigError(ValueError):
    """A configuration with one or more problems; the message lists each on its own line."""


# Every top-level key the trainer and the Experiment base class read: the default block every
# config file starts from (``model`` and ``data`` belong to the experiment).
TRAINER_KEYS = frozenset(base_config(experiment="").keys())
OPTIMIZER_KEYS = frozenset(OPTIMIZER_DEFAULTS)
MESH_KEYS = frozenset({"data"})

POSITIVE_INTS = ("batch_size", "num_train_steps", "log_every_steps", "checkpoint_every_steps")
NON_NEGATIVE_INTS = ("eval_every_steps", "lr_halve_every_steps", "lr_warmup_steps")


def trainer_problems(config) -> list[str]:
    """Problems with the fields the shared trainer reads."""
    problems = []
    for name in POSITIVE_INTS:
        value = config.get(name)
        if not isinstance(value, int) or value <= 0:
            problems.append(f"`{name}` must be a positive integer, got {value!r}.")
    for name in NON_NEGATIVE_INTS:
        value = config.get(name, 0)
        if not isinstance(value, int) or value < 0:
            problems.append(f"`{name}` must be a non-negative integer, got {value!r}.")
    problems += optimizer_problems(config)
    devices = config.get("mesh", {}).get("data", -1)
    available = jax.device_count()
    n = available if devices in (0, -1) else devices
    if not isinstance(n, int) or n <= 0 or n > available:
        problems.append(f"`mesh.data` must be -1 (all) or 1..{available} devices, got {devices!r}.")
    else:
        for name in ("batch_size", "eval_batch_size"):
            size = config.get(name)
            if isinstance(size, int) and size > 0 and size % n:
                problems.append(
                    f"`{name}` ({size}) must be divisible by the number of data-parallel "
                    f"devices ({n}); set `mesh.data` or change `{name}`."
                )
    return problems


def unknown_key_problems(config, experiment_keys=None, data_keys=None) -> list[str]:
    """Keys nothing reads (a typo in a forked config must not be silently ignored).

    ``experiment_keys``: the top-level keys the experiment reads besides the trainer's;
    ``data_keys``: the keys of its ``data`` section. ``None`` leaves that level unchecked. The
    ``model`` section is checked by the model's config dataclass.
    """
    levels = [("", config, None if experiment_keys is None else TRAINER_KEYS | experiment_keys)]
    levels.append(("mesh.", config.get("mesh", {}), MESH_KEYS))
    levels.append(("optimizer.", config.get("optimizer", {}), OPTIMIZER_KEYS))
    levels.append(("data.", config.get("data", {}), data_keys))
    problems = []
    for prefix, section, allowed in levels:
        if allowed is None:
            continue
        for key in sorted(set(section.keys()) - allowed):
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean `{prefix}{close[0]}`?)" if close else ""
            problems.append(f"unknown config key `{prefix}{key}`{hint}.")
    return problems


def raise_if_problems(problems: list[str], *, what: str = "configuration") -> None:
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"The {what} has {len(problems)} problem(s):\n{lines}")
