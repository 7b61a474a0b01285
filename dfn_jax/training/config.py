"""What every config file shares: the trainer's default block and the ``name.py:arg`` parsing.

A config file's ``get_config(arg)`` starts from :func:`base_config` (every key the trainer reads,
with its default), reads its variants and ``key=value`` overrides from ``arg`` with
:func:`parse_config_arg`, sets what its experiment needs, and returns ``args.apply(config)``::

    def get_config(arg=None):
        args = parse_config_arg(arg, name="moving_mnist", variants=VARIANTS, default="shapes")
        config = base_config(experiment="dfn.moving_mnist", variant=args.variant)
        ...
        return args.apply(config)

so ``--config=experiments/configs/moving_mnist.py:quick,batch_size=4`` picks the ``quick``
variant and then sets ``batch_size`` (big_vision style), and ``--config.batch_size=4`` still works
on top (ml_collections' flags).
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Sequence

import ml_collections

OPTIMIZER_DEFAULTS = {
    "name": "adam",  # adam | adamw | sgd | rmsprop
    "b1": 0.9,  # adam, adamw
    "b2": 0.999,  # adam, adamw
    "eps": 1e-8,  # adam, adamw, rmsprop
    "momentum": 0.0,  # sgd, rmsprop (0: none)
    "nesterov": False,  # sgd, rmsprop with momentum
    "decay": 0.9,  # rmsprop's moving-average decay
    "weight_decay": 0.0,  # adamw: decoupled; others: L2 added to the gradient
    "weight_decay_on": "kernels",  # kernels (parameters named "kernel") | all
}


def base_config(*, experiment: str, variant: str = "") -> ml_collections.ConfigDict:
    """Every key the shared trainer reads, with its default; config files override what they
    need. ``experiment`` names the binding module (``experiments/<experiment>.py``, dots for
    folders, e.g. ``"dfn.moving_mnist"``, or any importable module path)."""
    config = ml_collections.ConfigDict()
    config.experiment = experiment
    config.variant = variant
    config.seed = 0

    config.batch_size = 16
    config.num_train_steps = 1000
    config.log_every_steps = 50
    config.eval_every_steps = 0  # 0: evaluate only at the end.
    # Early stopping: results.json's "best" is the periodic evaluation with the lowest value of
    # this evaluation metric (e.g. "val_error"); "": none.
    config.select_best_by = ""
    config.checkpoint_every_steps = 1000
    config.checkpoints_to_keep = 3
    config.max_train_time_s = 0.0  # > 0: stop (saved, then evaluated) after this much training
    config.eval_batch_size = 16
    config.mesh = ml_collections.ConfigDict({"data": -1})  # -1: all devices.

    # Optimiser (dfn_jax.training.optim): optax pieces chosen by name.
    config.optimizer = ml_collections.ConfigDict(dict(OPTIMIZER_DEFAULTS))
    config.learning_rate = 1e-3
    # constant | step_halving | exponential | piecewise | cosine (see optim.learning_rate_schedule)
    config.lr_schedule = "constant"
    config.lr_halve_every_steps = 0  # step_halving
    config.lr_decay_rate = 1.0  # exponential: factor per `lr_transition_steps` steps
    config.lr_transition_steps = 1  # exponential
    config.lr_end_value = 0.0  # exponential: floor; cosine: final value
    config.lr_boundaries = ()  # piecewise: steps at which ...
    config.lr_scales = ()  # ... the rate is multiplied by these factors
    config.lr_warmup_steps = 0  # any schedule: linear warm-up from 0 first
    config.grad_clip_norm = 0.0  # global-norm clipping; 0: off

    config.model = ml_collections.ConfigDict()
    config.data = ml_collections.ConfigDict()
    return config


@dataclasses.dataclass(frozen=True)
class ConfigArg:
    """A parsed ``name.py:arg``: the variant tokens, in order, and the ``key=value`` overrides."""

    tokens: tuple[str, ...]
    overrides: tuple[tuple[str, str], ...]  # (dotted key, value as written)

    @property
    def variant(self) -> str:
        return ",".join(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.tokens

    def apply(self, config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
        """Sets each ``key=value`` override (dotted keys reach into sections); returns config.

        A string field keeps the text as written (e.g. ``model.unroll=1``), as ml_collections'
        own ``--config.key=value`` flags do; other fields get the Python literal it spells.
        """
        for key, text in self.overrides:
            section, last = _section_of(config, key, f"config argument `{key}={text}`")
            section[last] = text if isinstance(section[last], str) else _literal(text)
        return config


def _section_of(config, key: str, what: str):
    """``(section, last)`` such that ``section[last]`` is the dotted ``key`` of ``config``."""
    *path, last = key.split(".")
    section = config
    for part in path:
        if part not in section:
            raise ValueError(f"{what}: no section `{part}`.")
        section = section[part]
    if last not in section:
        raise ValueError(f"{what}: no key `{last}`.")
    return section, last


def override(config: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
    """Sets ``config[dotted key] = value`` for each item of ``values`` (keys must exist);
    returns ``config``. ``override(config, {"batch_size": 4, "model.unroll": 1})``."""
    for key, value in values.items():
        section, last = _section_of(config, key, f"`{key}`")
        section[last] = value
    return config


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _split_top_level(text: str) -> list[str]:
    """Splits on commas outside brackets, so ``key=(1,2)`` stays one token."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def parse_config_arg(
    arg: str | None, *, name: str, variants: Sequence[str], default: str
) -> ConfigArg:
    """Splits ``arg`` (``"variant[,variant...][,key=value...]"``; ``None`` or empty: ``default``)
    into known variant tokens and overrides; an unknown token is a ``ValueError`` listing the
    ones ``name`` accepts."""
    tokens, overrides = [], []
    for token in (t.strip() for t in _split_top_level(arg or "")):
        if not token:
            continue
        if "=" in token:
            key, value = token.split("=", 1)
            overrides.append((key.strip(), value.strip()))
        else:
            tokens.append(token)
    unknown = [t for t in tokens if t not in variants]
    if unknown:
        raise ValueError(f"Unknown {name} variant(s) {unknown}; expected from {tuple(variants)}.")
    return ConfigArg(tuple(tokens) or tuple(t for t in default.split(",") if t), tuple(overrides))


def dataclass_from_config(cls, section, **overrides):
    """Builds the config dataclass ``cls`` (e.g. a model's) from a ``ConfigDict`` section.

    Unknown keys are an error (a typo in a forked config must not be silently ignored); lists
    become tuples; ``overrides`` replace values after conversion.
    """
    fields = {f.name for f in dataclasses.fields(cls)}
    values = section.to_dict() if hasattr(section, "to_dict") else dict(section)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"unknown keys {unknown} for {cls.__name__}; it has {sorted(fields)}.")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**{**values, **overrides})
