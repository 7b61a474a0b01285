"""The meta-learning loop: meta-gradients against finite differences (first and second order),
the authors' convergence test, learning-rate tuning, a bitwise resume after a kill mid-epoch, and
the meta-loss's step weights (uniform bitwise the paper's sum, linear against a hand-written loop,
bad values)."""

import dataclasses
import functools
import warnings

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from dfn_jax import optim
from dfn_jax.data.optimizees import MLPClassifier, Quadratic
from dfn_jax.training import meta
from dfn_jax.training.run import Preempted, Run
from experiments import main
from experiments.configs import l2l_mnist


@dataclasses.dataclass(frozen=True)
class Square:
    """``f(x) = sum(x^2)`` from ``x ~ N(0, 1)``: the authors' convergence test."""

    dim: int = 3

    def sample(self, key):
        return jax.random.normal(key, (self.dim,)), {}

    def loss(self, params, problem, step, data):
        return jnp.sum(params**2)


class _Replay:
    """A task whose gradients are given: the first-order meta-gradient treats the optimizee's
    gradients as inputs, so it is the exact derivative of the unroll with recorded gradients."""

    def __init__(self, task, grads):
        self.task, self.grads = task, grads

    def run(self, phi, params, problem, length):
        opt = optim.lstm_optimizer(phi, preprocess=False)
        state, total = opt.init(params), 0.0
        for t in range(length):
            updates, state = opt.update(self.grads[t], state)
            params = params + updates
            total = total + self.task.loss(params, problem, t + 1, {})
        return total


def _flat_direction(phi, key):
    leaves, treedef = jax.tree.flatten(phi)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten(
        [jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves, strict=True)]
    )


@pytest.mark.parametrize("second_order", [False, True])
def test_meta_gradient_matches_finite_differences(second_order):
    with jax.enable_x64(True):
        task = Quadratic(dim=3, init_scale=1.0)
        phi = jax.tree.map(
            lambda x: x.astype(jnp.float64),
            optim.init_meta_params(
                jax.random.key(0), hidden_size=4, num_layers=1, preprocess=False
            ),
        )
        fn = lambda p: optim.lstm_optimizer(p, preprocess=False)  # noqa: E731
        keys = jax.random.split(jax.random.key(1), 2)
        params, problems = jax.vmap(task.sample)(keys)
        params = params.astype(jnp.float64)
        problems = jax.tree.map(lambda x: x.astype(jnp.float64), problems)
        opt_state = jax.vmap(fn(phi).init)(params)
        length = 4

        def meta_loss(p):
            value, _ = meta.truncation_meta_loss(
                p, fn, task, {}, params, opt_state, problems, 0, length, second_order
            )
            return value

        grads = jax.grad(meta_loss)(phi)
        direction = _flat_direction(phi, jax.random.key(2))
        analytic = sum(
            jnp.vdot(g, d)
            for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction), strict=True)
        )
        if second_order:
            reference = meta_loss  # the true derivative of the unroll
        else:
            # Record each problem's gradients at phi, then replay them: phi's only path.
            def recorded(i):
                theta, state, out = params[i], fn(phi).init(params[i]), []
                problem = jax.tree.map(lambda x: x[i], problems)
                for t in range(length):
                    g = jax.grad(task.loss)(theta, problem, t, {})
                    out.append(g)
                    updates, state = fn(phi).update(g, state)
                    theta = theta + updates
                return problem, out

            replays = [recorded(i) for i in range(2)]

            def reference(p):
                return (
                    sum(
                        _Replay(task, g).run(p, params[i], problem, length)
                        for i, (problem, g) in enumerate(replays)
                    )
                    / 2
                )

        eps = 1e-6
        plus = jax.tree.map(lambda x, d: x + eps * d, phi, direction)
        minus = jax.tree.map(lambda x, d: x - eps * d, phi, direction)
        numeric = (reference(plus) - reference(minus)) / (2 * eps)
        np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-5)


def _run(tmp_path, name, total, every=100):
    config = ml_collections.ConfigDict(
        {"log_every_steps": every, "checkpoint_every_steps": every, "checkpoints_to_keep": 2}
    )
    return Run(tmp_path / name, config, total_steps=total)


@pytest.mark.slow
def test_the_authors_convergence_test(tmp_path):
    """A learned optimizer without LSTM layers (a learned linear map of the gradient, from zero)
    drives x^2 below 1e-5, meta-trained with 5 unrolls of 20 at meta learning rate 1e-2."""
    task = Square()
    phi0 = optim.init_meta_params(
        jax.random.key(0), num_layers=0, preprocess=False, zero_output=True
    )
    fn = lambda p: optim.lstm_optimizer(p, preprocess=False)  # noqa: E731
    epochs = 100
    state = meta.meta_train(
        _run(tmp_path, "square", epochs * 5),
        optimizer_fn=fn,
        init_meta_params=phi0,
        task=task,
        data={},
        seed=0,
        num_epochs=epochs,
        num_problems=8,
        unroll_steps=100,
        truncation=20,
        meta_optimizer=optax.adam(1e-2),
    )
    losses = meta.optimize(
        fn(state["best_meta_params"]), task, {}, meta.problem_keys(0, 2, 16), 100
    )
    assert float(losses[:, -1].max()) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("unroll_choices", [(), (20, 40)])
def test_meta_training_resumes_bitwise_after_a_kill_mid_epoch(tmp_path, unroll_choices):
    """Also with a mix of horizons (``unroll_choices``): each meta-epoch's unroll is drawn
    from the seed, so the resumed run finds the same epochs at the same steps."""
    task = Quadratic(dim=4)
    phi0 = optim.init_meta_params(jax.random.key(0), hidden_size=6)
    fn = lambda p: optim.lstm_optimizer(p, preprocess=True)  # noqa: E731
    kwargs = dict(
        optimizer_fn=fn,
        init_meta_params=phi0,
        task=task,
        data={},
        seed=3,
        num_epochs=3,
        num_problems=4,
        unroll_steps=40,
        truncation=10,
        meta_optimizer=optax.adam(3e-3),
        eval_every_epochs=1,
        num_val_problems=3,
        unroll_choices=unroll_choices,
    )
    lengths = meta.epoch_unrolls(3, 3, 40, unroll_choices)
    assert lengths == meta.epoch_unrolls(3, 3, 40, unroll_choices)  # deterministic
    assert set(lengths) <= set(unroll_choices or (40,))
    total = sum(n // 10 for n in lengths)
    whole = meta.meta_train(_run(tmp_path, "whole", total), **kwargs)
    assert int(whole["step"]) == total

    killed = _run(tmp_path, "killed", total, every=1)
    after_step = killed.after_step

    def kill_at_step_6(done, state, metrics, **kw):
        if done == 6:  # mid-epoch (4 truncations per epoch): SIGTERM's path
            killed.preemption._flag.append(True)
        return after_step(done, state, metrics, **kw)

    killed.after_step = kill_at_step_6
    with pytest.raises(Preempted):
        meta.meta_train(killed, **kwargs)
    again = _run(tmp_path, "killed", total, every=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checkpoint that cannot be restored warns
        resumed = meta.meta_train(again, **kwargs)
    assert again.start == 6  # resumed from the kill, not from scratch
    chex.assert_trees_all_equal(resumed["meta_params"], whole["meta_params"])
    chex.assert_trees_all_equal(resumed["best_meta_params"], whole["best_meta_params"])
    assert float(resumed["best_val"]) == float(whole["best_val"])


def _sgd(lr):
    return optax.sgd(lr)


def test_tuning_picks_the_best_rate_and_compiles_once_for_tuning_and_testing():
    """``optimize_at`` equals ``optimize`` with the optimizer built at that rate; the grid and
    the test at the chosen rate (same number of problems) share one compilation."""
    task, keys = Quadratic(dim=4), meta.problem_keys(1, 3, 3)
    grid = [1e-3, 1e-2, 1e-1]
    before = meta._optimize_at._cache_size()
    lr, scores = meta.tune_learning_rate(_sgd, grid, task, {}, keys, 7)
    test = meta.optimize_at(_sgd, lr, task, {}, meta.problem_keys(1, 2, 3), 7)
    assert meta._optimize_at._cache_size() == before + 1
    for rate in grid:
        expected = meta.optimize(optax.sgd(rate), task, {}, keys, 7)
        np.testing.assert_allclose(scores[rate], float(expected[:, -1].mean()), rtol=1e-5)
    assert lr == min(scores, key=scores.get) and scores[lr] < max(scores.values())
    assert test.shape == (3, 8)
    np.testing.assert_allclose(
        test, meta.optimize(optax.sgd(lr), task, {}, meta.problem_keys(1, 2, 3), 7), rtol=1e-5
    )


def test_mlp_task_draws_batches_per_step_and_rejects_bad_data():
    rng = np.random.default_rng(0)
    task = MLPClassifier(
        input_size=5,
        hidden=(3, 4),
        batch_size=6,
        images=rng.normal(size=(50, 5)),
        labels=rng.integers(0, 10, 50),
    )
    data = task.arrays()
    params, problem = task.sample(jax.random.key(0))
    assert [p["w"].shape for p in params] == [(5, 3), (3, 4), (4, 10)]
    a, b = (float(task.loss(params, problem, t, data)) for t in (0, 1))
    assert a != b and float(task.loss(params, problem, 0, data)) == a
    with pytest.raises(ValueError, match=r"`images` must be \[N, 5\]"):
        MLPClassifier(input_size=5, images=np.zeros((3, 4)), labels=np.zeros(3)).arrays()
    with pytest.raises(ValueError, match="`activation`"):
        MLPClassifier(activation="gelu")
    with pytest.raises(ValueError, match="must be a positive multiple of `truncation`"):
        meta.meta_train(
            None,
            optimizer_fn=None,
            init_meta_params=None,
            task=task,
            data=data,
            seed=0,
            num_epochs=1,
            num_problems=1,
            unroll_steps=30,
            truncation=20,
            meta_optimizer=optax.adam(1e-3),
        )
    with pytest.raises(ValueError, match=r"`unroll_choices` \(50\) must be a positive multiple"):
        meta.meta_train(
            None, optimizer_fn=None, init_meta_params=None, task=task, data=data, seed=0,
            num_epochs=1, num_problems=1, unroll_steps=20, truncation=20,
            meta_optimizer=optax.adam(1e-3), unroll_choices=(20, 50),
        )  # fmt: skip


def test_meta_loss_estimates_the_loss_on_its_own_batch():
    rng = np.random.default_rng(1)
    images, labels = rng.normal(size=(4000, 5)), rng.integers(0, 10, 4000)
    plain = MLPClassifier(input_size=5, batch_size=8, images=images, labels=labels)
    large = dataclasses.replace(plain, meta_batch_size=2000)
    data = plain.arrays()
    params, problem = plain.sample(jax.random.key(3))
    assert float(plain.meta_loss(params, problem, 4, data)) == float(
        plain.loss(params, problem, 4, data)
    )
    # The large-batch estimate is close to the loss on all examples; minibatch losses scatter.
    full = dataclasses.replace(plain, batch_size=200_000)
    everything = float(full.loss(params, problem, 0, data))
    estimate = float(large.meta_loss(params, problem, 4, data))
    assert abs(estimate - everything) < 0.05 * everything
    assert float(large.loss(params, problem, 4, data)) == float(
        plain.loss(params, problem, 4, data)
    )
    with pytest.raises(ValueError, match="`meta_batch_size`"):
        MLPClassifier(meta_batch_size=-1)


def test_truncation_meta_loss_sums_the_tasks_meta_loss():
    @dataclasses.dataclass(frozen=True)
    class Doubled(Square):
        def meta_loss(self, params, problem, step, data):
            return 2.0 * self.loss(params, problem, step, data)

    phi = optim.init_meta_params(jax.random.key(0), num_layers=1, preprocess=False)
    params = jax.random.normal(jax.random.key(1), (2, 3))

    def value(task):
        opt = optim.lstm_optimizer(phi, preprocess=False)
        state = jax.vmap(opt.init)(params)
        fn = lambda p: optim.lstm_optimizer(p, preprocess=False)  # noqa: E731
        loss, _ = meta.truncation_meta_loss(phi, fn, task, {}, params, state, {}, 0, 4)
        return float(loss)

    np.testing.assert_allclose(value(Doubled()), 2.0 * value(Square()), rtol=1e-6)


def _tiny_truncation(num_problems=2, dim=3):
    """A tiny LSTM optimizer on ``Square`` problems: its meta-parameters, function, the
    problems' parameters and optimizer state."""
    phi = optim.init_meta_params(jax.random.key(0), hidden_size=4, num_layers=1, preprocess=False)
    fn = lambda p: optim.lstm_optimizer(p, preprocess=False)  # noqa: E731
    params = jax.random.normal(jax.random.key(1), (num_problems, dim))
    opt_state = jax.vmap(fn(phi).init)(params)
    return phi, fn, params, opt_state


def test_uniform_step_weights_are_the_papers_sum_bitwise():
    task = Square()
    phi, fn, params, opt_state = _tiny_truncation()
    length = 4

    def previous(phi, start):  # the meta-loss before step weights, verbatim
        optimizer = fn(phi)

        def one(params, opt_state, problem):
            carry, values, final = meta.optimize_scan(
                optimizer, task, {}, params, opt_state, problem, start, length, meta=True
            )
            return jnp.sum(values[1:]) + final, carry, final

        losses, carry, finals = jax.vmap(one)(params, opt_state, {})
        return jnp.mean(losses), (carry, jnp.mean(finals))

    for start in (0, 4):
        expected, expected_grads = jax.value_and_grad(previous, has_aux=True)(phi, start)
        for kwargs in ({}, {"weights": "uniform"}, {"weights": "uniform", "unroll_steps": 8}):
            got, got_grads = jax.value_and_grad(meta.truncation_meta_loss, has_aux=True)(
                phi, fn, task, {}, params, opt_state, {}, start, length, **kwargs
            )
            chex.assert_trees_all_equal(got, expected)
            chex.assert_trees_all_equal(got_grads, expected_grads)
    np.testing.assert_array_equal(meta.step_weights("uniform", 3, 4, None), np.ones(4))


def test_linear_step_weights_weigh_each_global_step_by_2t_over_n_plus_1():
    task = Square()
    phi, fn, params, opt_state = _tiny_truncation()
    unroll_steps, length = 6, 3

    def by_hand(start):
        total = 0.0
        for i in range(params.shape[0]):
            opt = fn(phi)
            x, state = params[i], jax.tree.map(lambda s, i=i: s[i], opt_state)
            for k in range(length):
                grads = jax.grad(task.loss)(x, {}, start + k, {})
                updates, state = opt.update(grads, state, x)
                x = x + updates
                t = start + k + 1  # the global step after which f(theta_t) is taken
                total += 2.0 * t / (unroll_steps + 1) * float(task.loss(x, {}, t, {}))
        return total / params.shape[0]

    @functools.partial(jax.jit, static_argnums=1)
    def jitted(start, weights):  # `start` traced, as in meta_train's meta-step
        return meta.truncation_meta_loss(
            phi, fn, task, {}, params, opt_state, {}, start, length,
            weights=weights, unroll_steps=unroll_steps,
        )[0]  # fmt: skip

    for start in (0, 3):
        expected = by_hand(start)
        eager, _ = meta.truncation_meta_loss(
            phi, fn, task, {}, params, opt_state, {}, start, length,
            weights="linear", unroll_steps=unroll_steps,
        )  # fmt: skip
        np.testing.assert_allclose(float(eager), expected, rtol=1e-5)
        np.testing.assert_allclose(float(jitted(start, "linear")), expected, rtol=1e-5)
        assert float(jitted(start, "linear")) != float(jitted(start, "uniform"))
    # Mean weight 1 over the whole unroll, whatever the truncation.
    weights = [meta.step_weights("linear", s, length, unroll_steps) for s in (0, 3)]
    np.testing.assert_allclose(np.concatenate(weights), 2 * np.arange(1, 7) / 7, rtol=1e-6)
    np.testing.assert_allclose(float(np.mean(np.concatenate(weights))), 1.0, rtol=1e-6)


def test_a_bad_step_weights_value_is_rejected_early(tmp_path):
    match = r"`meta.step_weights` must be one of 'uniform', 'linear', not 'cubic'"
    with pytest.raises(ValueError, match=match):
        meta.check_step_weights("cubic")
    with pytest.raises(ValueError, match=match):  # before anything else is looked at
        meta.meta_train(
            None, optimizer_fn=None, init_meta_params=None, task=None, data=None, seed=0,
            num_epochs=1, num_problems=1, unroll_steps=20, truncation=20,
            meta_optimizer=optax.adam(1e-3), step_weights="cubic",
        )  # fmt: skip
    with pytest.raises(ValueError, match="needs `unroll_steps`"):
        meta.step_weights("linear", 0, 4, None)
    config = l2l_mnist.get_config()
    assert config.meta.step_weights == "uniform"  # the paper's, inherited from l2l_quadratic
    config.meta.step_weights = "cubic"
    config.data.mnist_dir = str(tmp_path / "absent")  # the check precedes loading the data
    config.data.download = False
    with pytest.raises(ValueError, match=match):
        main.make_experiment(config).run(str(tmp_path / "workdir"))
