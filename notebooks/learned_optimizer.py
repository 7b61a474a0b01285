# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Learning to learn: an LSTM that is an optax optimizer
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dfn-jax/dfn_jax/blob/main/notebooks/learned_optimizer.ipynb)
#
# *Learning to learn by gradient descent by gradient descent* (Andrychowicz et al., NIPS 2016)
# replaces a hand-designed update rule by a small LSTM that reads each coordinate's gradient and
# writes its update; the LSTM itself is trained by gradient descent on the losses of the problems
# it optimizes. In `dfn_jax` that optimizer **is** an `optax.GradientTransformation`
# (`dfn_jax.optim.lstm_optimizer`), so any optax loop can use it. This notebook:
#
# 1. meta-trains one on 10-dimensional quadratics `||W x - y||^2` for about a minute;
# 2. optimizes a new problem with it and with Adam, in a plain optax loop;
# 3. loads the meta-trained optimizer that ships with the package and draws its update as a
#    function of the gradient.

# %%
# On Colab, install dfn_jax from GitHub first (locally, install the repository with `pip install -e .`).
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/dfn-jax/dfn_jax"],
        check=True,
    )

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
import optax

from dfn_jax import optim
from dfn_jax.data.optimizees import Quadratic
from dfn_jax.training import meta
from dfn_jax.training.run import Run

SMALL = os.environ.get("DFN_NOTEBOOK_SMALL") == "1"  # the test suite runs a shortened version

# %% [markdown]
# ## 1. Meta-train on quadratics
#
# The optimizer has two LSTM layers of 20 units shared by every coordinate. Each meta-epoch draws
# fresh problems, optimizes them for 100 steps in truncations of 20, and after each truncation
# takes an Adam step on the LSTM's weights to lower the sum of the losses along it.
# `meta.meta_train` checkpoints into a work directory, so the same call resumes.

# %%
task = Quadratic(dim=10)
phi0 = optim.init_meta_params(jax.random.key(0), preprocess=False)


def make_optimizer(phi):
    return optim.lstm_optimizer(phi, preprocess=False)  # quadratics: raw gradients in and out


epochs = 4 if SMALL else 150
config = ml_collections.ConfigDict(
    {"log_every_steps": 50, "checkpoint_every_steps": 500, "checkpoints_to_keep": 1}
)
run = Run(tempfile.mkdtemp(), config, total_steps=epochs * 5)
state = meta.meta_train(
    run,
    optimizer_fn=make_optimizer,
    init_meta_params=phi0,
    task=task,
    data={},
    seed=0,
    num_epochs=epochs,
    num_problems=32 if SMALL else 128,
    unroll_steps=100,
    truncation=20,
    meta_optimizer=optax.adam(0.003),
    eval_every_epochs=2 if SMALL else 10,
    num_val_problems=20,
)
print("best validation loss after 100 steps:", float(state["best_val"]))

# %% [markdown]
# ## 2. A new problem, in a plain optax loop
#
# Nothing here is specific to learned optimizers: `init`, `update`, `optax.apply_updates`.

# %%
learned = make_optimizer(state["best_meta_params"])
params, problem = task.sample(jax.random.key(2026))


def run_optimizer(optimizer, params, steps=100):
    opt_state = optimizer.init(params)
    losses = []
    for t in range(steps + 1):
        loss, grads = jax.value_and_grad(task.loss)(params, problem, t, {})
        losses.append(float(loss))
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    return losses


curves = {"learned (LSTM)": run_optimizer(learned, params)}
for lr in (0.03, 0.1, 0.3):
    curves[f"Adam lr {lr}"] = run_optimizer(optax.adam(lr), params)
fig, ax = plt.subplots(figsize=(5.5, 3.5))
for label, losses in curves.items():
    ax.plot(losses, label=label)
ax.set(yscale="log", xlabel="step", ylabel="loss", title="one new 10-d quadratic")
ax.legend()
plt.show()

# %% [markdown]
# ## 3. The shipped optimizer, and its update as a function of the gradient
#
# `load_learned_optimizer` returns the meta-trained optimizer of `experiments/configs/
# l2l_quadratic.py` with its settings. On a fresh state (the first step), the update of a
# coordinate is a function of its gradient only (the paper's appendix B draws these); later
# steps also depend on the coordinate's history.

# %%
print("shipped:", optim.available_learned_optimizers())
name = "quadratic"
shipped = (
    optim.load_learned_optimizer(name) if name in optim.available_learned_optimizers() else learned
)
gradients = jnp.linspace(-3, 3, 301)
first_update, state1 = shipped.update(gradients, shipped.init(gradients))
second_update, _ = shipped.update(gradients, state1)  # the same gradient again
fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot(gradients, first_update, label="first step")
ax.plot(gradients, second_update, label="second step, same gradient")
ax.plot(gradients, -0.1 * gradients, "k:", label="SGD, lr 0.1")
ax.set(xlabel="gradient", ylabel="update", title=f"learned optimizer {name!r}")
ax.axhline(0, color="grey", lw=0.5)
ax.legend()
plt.show()
print("info:", {k: v for k, v in optim.learned_optimizer_info(name).items() if k != "results"}
      if name in optim.available_learned_optimizers() else "none shipped yet")  # fmt: skip
assert np.all(np.isfinite(np.asarray(first_update)))
