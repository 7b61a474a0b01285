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
# # Learning steerable filters with a Dynamic Filter Network
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dfn-jax/dfn_jax/blob/main/notebooks/steerable_filters.ipynb)
#
# The first experiment of *Dynamic Filter Networks* (De Brabandere, Jia, Tuytelaars and Van Gool,
# NIPS 2016, Sec. 4.1) is a toy that shows the idea in its purest form. A small network reads
# **one number, an angle** `theta`, and outputs a `9 x 9` filter; a *dynamic convolution* applies
# that filter to an image. The only training signal is the filtered image it should produce:
# `cos(theta) I_x + sin(theta) I_y`, the image's derivative in the direction `theta` (computed
# with Gaussian-derivative filters). Nobody tells the network what the filter looks like, yet the
# filters it generates become the analytic steerable filters.
#
# This notebook goes through it with the repository's pieces:
#
# 1. **the analytic filters** `G_x`, `G_y` and their steered combinations (`dfn_jax.ops`);
# 2. **the data**: procedural textures generated on the device, and the targets;
# 3. **training** the paper's model with the shared trainer (`experiments/main.py`);
# 4. **the learned filters** beside the analytic ones, at every angle, not only the 8 checked;
# 5. **the baseline**: an ordinary, static filter, which cannot follow `theta`.

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
import numpy as np

from dfn_jax import ops
from dfn_jax.data import textures
from dfn_jax.training import Checkpointer, Trainer
from dfn_jax.training import train_and_evaluate as train_experiment
from experiments.configs.steerable import get_config
from experiments.dfn.steerable import filter_agreement
from experiments.main import make_experiment, train_and_evaluate

# The test suite sets DFN_NOTEBOOK_SMALL=1 to run every notebook on small sizes.
SMALL = os.environ.get("DFN_NOTEBOOK_SMALL") == "1"
print(f"jax {jax.__version__} on {jax.default_backend()}, {jax.device_count()} device(s)")


def show_signed(ax, image, vmax, title=""):
    """A signed map: red positive, blue negative, white zero."""
    ax.imshow(np.asarray(image), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)


# %% [markdown]
# ## 1. The analytic filters
#
# `ops.gaussian_derivative_filters()` returns `G_x` and `G_y` (9 taps, `sigma = 1`): the
# derivatives of a Gaussian, applied by cross-correlation like every filter in `dfn_jax`. The axes
# are those of an image array: **x runs along the columns (to the right), y along the rows
# (downwards)**, so `theta = 0` differentiates to the right and `theta = 90` degrees *down* the
# image. They are scaled to give exactly the slope of a linear ramp (`I = a x + b y` gives `a`
# and `b`).
#
# `ops.steered_filter(theta)` is `cos(theta) G_x + sin(theta) G_y`: the derivative in the
# direction `theta`. Any direction is a mix of two fixed filters; that is what makes them
# *steerable* (Freeman and Adelson 1991).

# %%
gx, gy = ops.gaussian_derivative_filters()
DEGREES = np.arange(0, 360, 45)
ANGLES = np.deg2rad(DEGREES).astype(np.float32)
analytic = np.asarray(ops.steered_filter(ANGLES))  # [8, 9, 9]
print("G_x", gx.shape, f"taps in [{float(gx.min()):.3f}, {float(gx.max()):.3f}]")

vmax = float(np.abs(analytic).max())
fig, axes = plt.subplots(1, 8, figsize=(12, 1.9))
for ax, f, d in zip(axes, analytic, DEGREES, strict=True):
    show_signed(ax, f, vmax, f"{d} deg")
fig.suptitle("cos(theta) G_x + sin(theta) G_y", fontsize=9)
plt.show()

# %% [markdown]
# ## 2. The data
#
# The paper does not say which images it used; any natural-looking grayscale images will do, as
# long as they have structure at every scale and orientation (a smooth image would leave the
# filter's fine detail undetermined). `textures.random_textures(keys)` makes them on the device,
# one per PRNG key, with no download: 1/f noise (the spectrum of natural images), Gabor blobs
# (oriented stripes) and sharp-edged discs and rectangles, mixed at random and stretched to
# [0, 1]. Each training example draws a new image and a new angle `theta ~ U[0, 2 pi)`.
#
# `textures.steerable_targets(images, theta)` filters each image with its steered filter (with
# `ops.dynamic_convolution`, zero padding). The border lights up because the zero padding is an
# edge too; the model sees the same padding, so it is part of the task, not noise.

# %%
keys = jax.random.split(jax.random.key(0), 4)
images = textures.random_textures(keys)  # [4, 64, 64, 1] in [0, 1]
theta = jnp.deg2rad(jnp.asarray([0.0, 45.0, 90.0, 200.0]))
targets = textures.steerable_targets(images, theta)
print("images", images.shape, "targets", targets.shape)

fig, axes = plt.subplots(2, 4, figsize=(9, 4.6))
for i in range(4):
    axes[0, i].imshow(images[i, ..., 0], cmap="gray", vmin=0, vmax=1)
    axes[0, i].set_xticks([])
    axes[0, i].set_yticks([])
    axes[0, i].set_title(f"texture {i}", fontsize=8)
    t = targets[i, ..., 0]
    show_signed(
        axes[1, i], t, float(jnp.abs(t).max()), f"target, theta = {np.degrees(theta[i]):.0f}"
    )
plt.show()

# %% [markdown]
# Steerability in numbers: the response at any angle is the same mix of the responses at 0 and 90
# degrees.

# %%
zeros = jnp.zeros_like(theta)
at_0 = textures.steerable_targets(images, zeros)
at_90 = textures.steerable_targets(images, zeros + jnp.pi / 2)
mixed = jnp.cos(theta)[:, None, None, None] * at_0 + jnp.sin(theta)[:, None, None, None] * at_90
print(
    f"|target(theta) - (cos * target(0) + sin * target(90))| <= {jnp.abs(mixed - targets).max():.1e}"
)

# %% [markdown]
# ## 3. Training the paper's model
#
# `dfn_jax.models.SteerableDFN`: `theta -> Linear 64 -> leaky ReLU -> Linear 128 -> leaky ReLU ->
# Linear 81`, reshaped to `9 x 9` and applied to the image by a dynamic convolution (one filter per
# sample). The angle enters as one number, as in the paper, rescaled from `[0, 2 pi)` to
# `[-1, 1)`; the last layer starts at zero, so the first filters are zero (see the model's
# docstring for why both matter). Loss: mean squared error. The paper's schedule: batch 64, Adam
# with learning rate 1e-3 halved every 1,000 steps, 5,000 steps, which takes 5 to 10 minutes on a
# 2-core CPU. The command line
# `python -m experiments.main --config=experiments/configs/steerable.py --workdir=DIR` runs the
# same thing. With `DFN_NOTEBOOK_SMALL=1` (the test suite) it trains 300 steps on 32x32 images:
# enough to see the filters take shape, not to finish them.

# %%
config = get_config("paper")
config.eval_every_steps = 0  # evaluate once, at the end
if SMALL:
    config.num_train_steps = 300
    config.lr_halve_every_steps = 100
    config.log_every_steps = 100
    config.checkpoint_every_steps = 300
    config.data.image_size = 32
    config.num_eval_examples = 128
    config.eval_batch_size = 64
    config.mesh.data = 1  # one device

_tmp = tempfile.TemporaryDirectory(prefix="dfn_steerable_")  # removed with the kernel
WORKDIR = _tmp.name
# `train_and_evaluate(config, WORKDIR)` from experiments.main does the same; keeping the
# experiment object lets the cells below reuse its compiled data generators.
experiment = make_experiment(config)
results = train_experiment(experiment, WORKDIR)
test = results["test"]
print(
    f"{results['steps']} steps, {results['num_params']:,} parameters, "
    f"{results['train_wall_time_s']:.0f} s of training; test MSE {test['mse']:.2e} "
    f"(predicting zero: {test['target_mean_square']:.2e})"
)
for d, c in zip(DEGREES, test["filter_cosine_similarity"], strict=True):
    print(f"  {d:3d} deg: cosine similarity with the analytic filter {c:.4f}")

# %% [markdown]
# Re-running the cell above resumes from the checkpoint in `WORKDIR` instead of starting over. The
# trained model comes back from its checkpoint with the `Trainer` of the same config:

# %%
trainer = Trainer(experiment)
checkpointer = Checkpointer(WORKDIR)
state = checkpointer.restore(checkpointer.latest_step(), trainer.init_state())
checkpointer.close()
# A SteerableDFN holding the trained weights:
model = trainer.bind(state["params"], state["model_state"])
print(type(model).__name__, "restored at step", int(state["step"]))

# %% [markdown]
# ## 4. The learned filters
#
# The top row is the analytic filter, the bottom row what the network generates for the same angle,
# on the same colour scale.

# %%
learned = np.asarray(model.filters(jnp.asarray(ANGLES)))
cosine = np.asarray(filter_agreement(learned, analytic)["cosine_similarity"])
fig, axes = plt.subplots(2, 8, figsize=(12, 3.4))
for c in range(8):
    show_signed(axes[0, c], analytic[c], vmax, f"{DEGREES[c]} deg")
    show_signed(axes[1, c], learned[c], vmax, f"cos sim {cosine[c]:.3f}")
axes[0, 0].set_ylabel("analytic")
axes[1, 0].set_ylabel("learned")
plt.show()

# %% [markdown]
# The network was never shown these 8 angles in particular; it learned a continuous function of
# `theta`. Its agreement with the analytic filter over the whole circle, on a fine grid:

# %%
grid = jnp.linspace(0.0, 2 * jnp.pi, 361)[:-1]
agreement = filter_agreement(model.filters(grid), ops.steered_filter(grid))
fig, ax = plt.subplots(figsize=(7, 2.8))
ax.plot(np.degrees(grid), agreement["cosine_similarity"], label="cosine similarity")
ax.plot(np.degrees(grid), agreement["relative_error"], label="relative L2 error")
ax.set(xlabel="theta (degrees)", ylim=(0, 1.05), xticks=np.arange(0, 361, 45))
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# And what the model does to a test image it has never seen: its output, the target and the
# difference (on the target's colour scale).

# %%
batch = experiment.test_examples(config.num_figure_examples)  # the first test examples
predictions = model(batch["images"], batch["theta"])
n = config.num_figure_examples
fig, axes = plt.subplots(n, 4, figsize=(8, 2.1 * n), squeeze=False)
for r in range(n):
    t = batch["targets"][r, ..., 0]
    v = float(jnp.abs(t).max())
    axes[r, 0].imshow(batch["images"][r, ..., 0], cmap="gray", vmin=0, vmax=1)
    axes[r, 0].set_xticks([])
    axes[r, 0].set_yticks([])
    axes[r, 0].set_title(f"theta = {np.degrees(batch['theta'][r]):.0f} deg", fontsize=8)
    show_signed(axes[r, 1], t, v, "target")
    show_signed(axes[r, 2], predictions[r, ..., 0], v, "prediction")
    show_signed(axes[r, 3], predictions[r, ..., 0] - t, v, "difference")
plt.show()

# %% [markdown]
# ## 5. The baseline: a static filter
#
# Without a filter-generating network, a convolutional layer has one filter for all angles. The
# `baseline` config trains exactly that on the same data. Averaged over `theta ~ U[0, 2 pi)` the
# target filters cancel out, so the best static filter is zero and the baseline's error is the
# targets' mean square: everything the dynamic filter removes.

# %%
base_config = get_config("baseline")
base_config.eval_every_steps = 0
base_config.num_train_steps = 100 if SMALL else 1000
base_config.log_every_steps = 100
base_config.checkpoint_every_steps = base_config.num_train_steps
if SMALL:
    base_config.data.image_size = 32
    base_config.num_eval_examples = 128
    base_config.eval_batch_size = 64
    base_config.mesh.data = 1
_tmp_base = tempfile.TemporaryDirectory(prefix="dfn_steerable_baseline_")
base = train_and_evaluate(base_config, _tmp_base.name)["test"]
print(f"{'':22s} {'test MSE':>10s} {'/ target mean square':>22s}")
for name, r in [("DFN (dynamic filter)", test), ("baseline (static)", base)]:
    print(f"{name:22s} {r['mse']:10.2e} {r['mse'] / r['target_mean_square']:22.4f}")
