"""Meta-trains the coordinatewise LSTM optimizer on a task and compares it with tuned optax
baselines on fresh test problems ("Learning to learn by gradient descent by gradient descent").

What a run does, in its work directory:

1. meta-training (:func:`dfn_jax.training.meta.meta_train`: checkpointed, resumable), keeping the
   best meta-parameters by validation;
2. each baseline (SGD, RMSprop, Adam, Nesterov momentum) gets its learning rate tuned on a log
   grid on separate tuning problems (mean final loss);
3. every optimizer runs on the same ``num_test_problems`` fresh test problems for each evaluation
   horizon and task variant; ``results.json`` holds per optimizer the mean final loss, its
   log10 (the authors' "log mean final error") and the tuned learning rates; one figure per
   variant (mean and interquartile band of the loss per step);
4. the learned optimizer is written as ``learned_optimizer.{msgpack,json}``, loadable with
   :func:`dfn_jax.optim.load_learned_optimizer`.

``config.learned.load`` (a shipped name or the path of a saved optimizer) skips step 1 and
evaluates that optimizer, with its own settings, against the same tuned baselines on the same
test problems. ``config.evaluation.steps`` is the test horizon (the ``steps_200`` test runs
twice as long), independent of the meta-training's ``meta.unroll_steps``.
``evaluation.baselines=False`` skips the baselines (the learned optimizer alone on the test
problems, e.g. a saved optimizer against baselines an earlier run recorded with the same seeds).

A subclass gives the task (``make_task(variant)``), the task's arrays, and ``num_params``.
"""

from __future__ import annotations

import pathlib
import time

import jax
import ml_collections
import numpy as np
import optax

from dfn_jax import viz
from dfn_jax.optim import (
    init_meta_params,
    learned_optimizer_info,
    load_meta_params,
    lstm_optimizer,
    save_learned_optimizer,
)
from dfn_jax.training import meta
from dfn_jax.training.optim import learning_rate_schedule
from dfn_jax.training.run import Run

BASELINES = {
    "sgd": lambda lr: optax.sgd(lr),
    "rmsprop": lambda lr: optax.rmsprop(lr),
    "adam": lambda lr: optax.adam(lr),
    "nag": lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
}


#: ``config.meta.lr_schedule``: the meta-optimizer's learning rate, constant or cosine-decayed to 0.
META_LR_SCHEDULES = ("constant", "cosine")


def meta_learning_rate(meta_config, total_steps: int) -> optax.Schedule:
    """Adam's learning rate on the optimizer's weights over ``total_steps`` meta-steps, from
    ``meta_config.learning_rate`` and ``lr_schedule`` (the trainer's schedules)."""
    name = meta_config.get("lr_schedule", "constant")
    if name not in META_LR_SCHEDULES:
        raise ValueError(f"`meta.lr_schedule` must be one of {META_LR_SCHEDULES}, not {name!r}.")
    schedule = {"learning_rate": meta_config.learning_rate, "lr_schedule": name}
    schedule |= {"num_train_steps": total_steps, "lr_end_value": 0.0}
    return learning_rate_schedule(ml_collections.ConfigDict(schedule))


class LearnedOptimizerExperiment(meta.MetaExperiment):
    #: Task variants evaluated after meta-training: ``{name: (make_task kwargs, steps)}``.
    def test_variants(self) -> dict[str, tuple[dict, int]]:
        return {"default": ({}, self.test_steps)}

    @property
    def test_steps(self) -> int:
        """The test horizon: ``evaluation.steps``, or the meta-training's unroll if unset."""
        return int(self.config.evaluation.get("steps") or self.config.meta.unroll_steps)

    @property
    def test_keys(self) -> jax.Array:
        """The test problems' keys (``evaluation.num_test_problems`` from the seed's test
        stream): the evaluation's and :mod:`experiments.l2l.paired`'s."""
        return meta.problem_keys(self.config.seed, 2, self.config.evaluation.num_test_problems)

    @property
    def tune_keys(self) -> jax.Array:
        """The baselines' tuning problems' keys (``evaluation.num_tuning_problems`` from the
        seed's tuning stream)."""
        return meta.problem_keys(self.config.seed, 3, self.config.evaluation.num_tuning_problems)

    def make_task(self, **kwargs):
        raise NotImplementedError

    def task_data(self, task) -> dict:
        return task.arrays()

    @property
    def settings(self) -> dict:
        learned = self.config.learned
        return {
            "output_scale": learned.output_scale,
            "preprocess": learned.preprocess,
            "preprocess_p": learned.preprocess_p,
        }

    def optimizer_fn(self, meta_params) -> optax.GradientTransformation:
        return lstm_optimizer(meta_params, **self.settings)

    def run(self, workdir: str) -> dict:
        if self.config.learned.get("load"):
            return self.evaluate_loaded(workdir, self.config.learned.load)
        config = self.config
        m = config.meta
        step_weights = meta.check_step_weights(m.get("step_weights", "uniform"))
        task = self.make_task()
        data = self.task_data(task)
        phi0 = self.initial_meta_params()
        choices = tuple(m.get("unroll_choices") or ())
        lengths = meta.epoch_unrolls(config.seed, m.num_epochs, m.unroll_steps, choices)
        total = int(meta.epoch_starts(lengths, m.truncation)[-1])
        meta_optimizer = optax.adam(meta_learning_rate(m, total))
        if m.grad_clip_norm:
            meta_optimizer = optax.chain(
                optax.clip_by_global_norm(m.grad_clip_norm), meta_optimizer
            )
        run = Run(workdir, config, total_steps=total)
        start = time.perf_counter()
        state = meta.meta_train(
            run,
            optimizer_fn=self.optimizer_fn,
            init_meta_params=phi0,
            task=task,
            data=data,
            seed=config.seed,
            num_epochs=m.num_epochs,
            num_problems=m.num_problems,
            unroll_steps=m.unroll_steps,
            truncation=m.truncation,
            meta_optimizer=meta_optimizer,
            second_order=m.second_order,
            eval_every_epochs=m.eval_every_epochs,
            num_val_problems=m.num_val_problems,
            unroll=m.unroll,
            step_weights=step_weights,
            unroll_choices=choices,
        )
        train_time = time.perf_counter() - start
        phi = jax.device_get(state["best_meta_params"])
        workdir = pathlib.Path(workdir)
        evaluation, curves = self.evaluate(self.optimizer_fn(phi))
        results = self.results(
            phi,
            evaluation,
            steps=total,
            meta_train_wall_time_s=train_time,
            best_val_final_loss=float(state["best_val"]),
        )
        if run.is_main:
            save_learned_optimizer(
                workdir / "learned_optimizer",
                phi,
                settings=self.settings,
                info={"task": config.task.to_dict(), "results": evaluation["default"]},
            )

        return run.finish(results, self.figures(curves))

    def initial_meta_params(self):
        """The meta-parameters meta-training starts from: fresh ones from the seed, or those of
        the saved optimizer ``learned.init_from`` (a curriculum: e.g. the 100-step ``"mnist"``
        optimizer meta-trained further on 200-step unrolls), whose settings and size must be
        the config's."""
        config, learned = self.config, self.config.learned
        source = learned.get("init_from")
        if not source:
            return init_meta_params(
                jax.random.fold_in(jax.random.key(config.seed), 7),
                hidden_size=learned.hidden_size,
                num_layers=learned.num_layers,
                preprocess=learned.preprocess,
                zero_output=learned.zero_output,
            )
        info = learned_optimizer_info(source)
        saved = {**info["settings"], "hidden_size": info["hidden_size"]}
        saved["num_layers"] = info["num_layers"]
        wanted = {**self.settings, "hidden_size": learned.hidden_size}
        wanted["num_layers"] = learned.num_layers
        differ = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
        if differ:
            detail = ", ".join(f"{k}: saved {a!r}, config {b!r}" for k, (a, b) in differ.items())
            raise ValueError(
                f"`learned.init_from` ({source!r}) was trained with other settings than the "
                f"config's ({detail}); set them to the saved optimizer's."
            )
        return load_meta_params(source)

    def evaluate_loaded(self, workdir: str, name_or_path: str) -> dict:
        """No meta-training: the saved optimizer ``name_or_path`` against the tuned baselines."""
        info = learned_optimizer_info(name_or_path)
        phi = load_meta_params(name_or_path)
        run = Run(workdir, self.config, total_steps=0)
        evaluation, curves = self.evaluate(lstm_optimizer(phi, **info["settings"]))
        results = self.results(
            phi, evaluation, steps=0, loaded=str(name_or_path), loaded_settings=info["settings"]
        )
        return run.finish(results, self.figures(curves))

    def results(self, phi, evaluation: dict, **facts) -> dict:
        """``results.json``: the run's ``facts``, the optimizer's size and the evaluation."""
        return {
            "experiment": type(self).__name__,
            **facts,
            "num_params": int(sum(np.size(x) for x in jax.tree.leaves(phi))),
            "test": {f"{k}_final_loss": v for k, v in evaluation["default"]["final_loss"].items()},
            "evaluation": evaluation,
        }

    def figures(self, curves: dict):
        """Writes one figure per test variant (``directory`` from :meth:`Run.finish`)."""
        config = self.config

        def write(directory):
            for variant, losses in curves.items():
                title = f"{config.experiment}: {variant} ({config.evaluation.num_test_problems} "
                yield viz.plot_loss_per_step(
                    losses, directory / f"loss_{variant}.png", title=title + "test problems)"
                )

        return write

    def evaluate(self, learned_optimizer: optax.GradientTransformation) -> tuple[dict, dict]:
        """Per task variant: the learned optimizer and each tuned baseline on the test problems."""
        config = self.config
        ev = config.evaluation
        grid = [float(v) for v in 10.0 ** np.arange(ev.lr_log10_min, ev.lr_log10_max + 1e-9, 0.5)]
        tune_keys, test_keys = self.tune_keys, self.test_keys
        baselines = BASELINES if ev.get("baselines", True) else {}
        evaluation, curves = {}, {}
        for variant, (kwargs, steps) in self.test_variants().items():
            task = self.make_task(**kwargs)
            data = self.task_data(task)
            learned = meta.optimize(learned_optimizer, task, data, test_keys, steps)
            losses, labels, tuned = {"learned": learned}, {"learned": "learned (LSTM)"}, {}
            for name, make in baselines.items():
                lr, scores = meta.tune_learning_rate(make, grid, task, data, tune_keys, steps)
                tuned[name] = {"learning_rate": lr, "tuning_final_loss": scores}
                losses[name] = meta.optimize_at(make, lr, task, data, test_keys, steps)
                labels[name] = f"{name} (lr {lr:.2g})"
            finals = {label: np.asarray(v)[:, -1] for label, v in losses.items()}
            evaluation[variant] = {
                "steps": steps,
                "task": kwargs,
                "final_loss": {k: float(v.mean()) for k, v in finals.items()},
                "log10_mean_final_loss": {k: float(np.log10(v.mean())) for k, v in finals.items()},
                "median_final_loss": {k: float(np.median(v)) for k, v in finals.items()},
                "baselines": tuned,
            }
            curves[variant] = {labels[k]: np.asarray(v) for k, v in losses.items()}
        return evaluation, curves
