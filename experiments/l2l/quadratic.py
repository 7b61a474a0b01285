"""The learned optimizer on 10-dimensional quadratics ``||W theta - y||^2`` (Andrychowicz et al.
2016, Sec. 3.1): no gradient preprocessing, no output scale. Configs and commands:
``experiments/configs/l2l_quadratic.py``."""

from __future__ import annotations

from dfn_jax.data.optimizees import Quadratic
from experiments.l2l.learned_optimizer import LearnedOptimizerExperiment


class L2LQuadratic(LearnedOptimizerExperiment):
    def make_task(self, **kwargs) -> Quadratic:
        task = self.config.task
        settings = {
            "dim": task.dim,
            "distribution": task.distribution,
            "init_scale": task.init_scale,
        }
        return Quadratic(**(settings | kwargs))

    def test_variants(self) -> dict[str, tuple[dict, int]]:
        """The trained setting, and (never seen in meta-training) 20- and 40-dimensional
        problems."""
        steps = self.test_steps
        return {
            "default": ({}, steps),
            "dim_20": ({"dim": 20}, steps),
            "dim_40": ({"dim": 40}, steps),
        }


EXPERIMENT = L2LQuadratic
