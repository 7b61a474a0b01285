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
#    function of the gradient;
# 4. loads the shipped MNIST optimizer and trains a new MLP with it, in a plain optax loop.

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
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
import optax

from dfn_jax import optim
from dfn_jax.data.mnist import MNISTNotFoundError, load_mnist
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


# %% [markdown]
# ## 4. The shipped MNIST optimizer trains a new MLP
#
# `load_learned_optimizer("mnist_mixed")` was meta-trained on one-hidden-layer MLPs (20 sigmoid
# units, minibatches of 128) each optimized for 100 or 200 steps
# (`experiments/configs/l2l_mnist.py:mixed`, seed 2). Below it trains an MLP it never saw, from a
# new seed, in a plain optax loop with a jitted step, next to Adam at its tuned learning rate
# (0.032 for this task, docs/RESULTS.md). On 100 test MLPs its mean loss after 100 steps is 0.310
# against Adam's 0.339; on this one MLP the last 10 minibatch losses average 0.351 against 0.383
# (the 100-step `"mnist"` optimizer: 0.390).
# Without MNIST files (set `DFN_MNIST_DIR`), random stand-in images keep the code running, and the
# curves then mean nothing.

# %%
candidates = [
    os.environ.get("DFN_MNIST_DIR", ""),
    "../../shared/data/mnist",
    "../shared/data/mnist",
]
MNIST_DIR = next((c for c in candidates if c and pathlib.Path(c).is_dir()), "")
try:
    images, labels = load_mnist("train", mnist_dir=MNIST_DIR or None, download=not SMALL)
    images = images.reshape(len(images), -1).astype(np.float32) / 255.0
except MNISTNotFoundError:
    print("No MNIST files found: random stand-in images.")
    rng = np.random.default_rng(0)
    images = rng.random((1000, 784), dtype=np.float32)
    labels = rng.integers(0, 10, 1000)


def mlp_loss(params, x, y):
    hidden = jax.nn.sigmoid(x @ params["w1"] + params["b1"])
    logits = hidden @ params["w2"] + params["b2"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def train_mlp(optimizer, steps=100, seed=7):
    """Minibatch losses of a fresh MLP (weights N(0, 1/fan_in), biases 0) trained by ``optimizer``."""
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = {
        "w1": jax.random.normal(k1, (784, 20)) / np.sqrt(784.0),
        "b1": jnp.zeros(20),
        "w2": jax.random.normal(k2, (20, 10)) / np.sqrt(20.0),
        "b2": jnp.zeros(10),
    }

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(mlp_loss)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state, batches, losses = optimizer.init(params), np.random.default_rng(seed), []
    for _ in range(steps):
        index = batches.integers(0, len(images), 128)
        params, opt_state, loss = step(params, opt_state, images[index], labels[index])
        losses.append(float(loss))
    return losses


mnist_steps = 20 if SMALL else 100
mlp_curves = {
    "learned ('mnist_mixed')": train_mlp(optim.load_learned_optimizer("mnist_mixed"), mnist_steps),
    "Adam lr 0.032": train_mlp(optax.adam(10**-1.5), mnist_steps),
}
fig, ax = plt.subplots(figsize=(5.5, 3.5))
for label, losses in mlp_curves.items():
    ax.plot(losses, label=f"{label}: last 10 steps {np.mean(losses[-10:]):.3f}")
ax.set(
    yscale="log", xlabel="step", ylabel="minibatch loss", title="a new MNIST MLP (20 sigmoid units)"
)
ax.legend()
plt.show()
assert all(np.isfinite(v).all() for v in mlp_curves.values())
