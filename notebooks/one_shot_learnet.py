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
# # One-shot learning with a learnet: a network that writes another network's filters
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dfn-jax/dfn_jax/blob/main/notebooks/one_shot_learnet.ipynb)
#
# *Learning feed-forward one-shot learners* (Bertinetto, Henriques, Valmadre, Torr and Vedaldi,
# NIPS 2016) lets a **learnet** read a single example of a new class, the *exemplar*, and
# predict the filters of a *pupil* network that then decides, for any other image, whether it
# shows the same class: one forward pass instead of fine-tuning. The predicted layers are
# dynamic convolutions, factorised so that the learnet stays small: a 1x1 projection, a
# per-channel 3x3 filter bank predicted from the exemplar, a 1x1 projection
# (`dfn_jax.layers.factorized`). The paper's own architecture and numbers could not be checked
# here; what dfn_jax uses is a CPU-sized design of its own (`dfn_jax.models.learnet`).
#
# This notebook takes one of Lake et al.'s 20 official Omniglot runs (20 characters of an
# alphabet never seen in training, one drawing each; 20 other drawings to classify), shows the
# learnet's answers, the filters it predicts for two different exemplars, and its error over
# all 20 runs. A trained model ships with the package; where it is missing a fresh one is used
# and the notebook says so.

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

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx
from IPython.display import Image, display

from dfn_jax import pretrained, viz
from dfn_jax.data.omniglot import OmniglotNotFoundError, load_official_runs
from dfn_jax.models import count_params
from dfn_jax.models.learnet import LearnetConfig, learnet_model

# The test suite sets DFN_NOTEBOOK_SMALL=1 (no download there; the Omniglot zips are local).
SMALL = os.environ.get("DFN_NOTEBOOK_SMALL") == "1"

# %% [markdown]
# The official runs (`all_runs.zip`, 350 KB) come from the first of: the folder in
# `DFN_OMNIGLOT_DIR`, `shared/data/omniglot` beside the checkout, or the download cache
# (downloaded from the dataset's GitHub repository when the network is there).

# %%
candidates = [
    os.environ.get("DFN_OMNIGLOT_DIR", ""),
    os.path.join(os.environ.get("DFN_DATA_DIR", ""), "omniglot"),
    "../../shared/data/omniglot",
    "../shared/data/omniglot",
]
OMNIGLOT_DIR = next(
    (str(pathlib.Path(c).resolve()) for c in candidates if c and pathlib.Path(c).is_dir()), None
)
try:
    runs = load_official_runs(omniglot_dir=OMNIGLOT_DIR, download=not SMALL)
except OmniglotNotFoundError as error:
    raise SystemExit(f"This notebook needs the Omniglot runs: {error}") from None
print(f"{len(runs.runs)} runs: exemplars {runs.training.shape}, queries {runs.test.shape}")

# %%
NAME = "learnet_omniglot"
if NAME in pretrained.available():
    meta = pretrained.info(NAME)
    model, TRAINED = pretrained.load(NAME), True
    print(f"trained learnet: {meta['num_params']:,} parameters; {meta['command']}")
    print(f"its official-runs error: {meta['test']['official_runs_error']:.1f}%")
else:
    model, TRAINED = learnet_model("learnet", LearnetConfig(), rngs=nnx.Rngs(0)), False
    print("no trained learnet shipped here: an untrained one (expect chance, 95% error)")
print("parameters:", count_params(model))

# %% [markdown]
# ## 1. One official run
#
# Every query is compared with the 20 exemplars (`score_matrix`: the learnet turns each
# exemplar into filters once, the pupil applies each set to every query) and takes the class
# with the highest score.

# %%
FIGURES = pathlib.Path(tempfile.mkdtemp())
run = 0
scores = model.score_matrix(jnp.asarray(runs.test[run]), jnp.asarray(runs.training[run]))
choices = np.asarray(jnp.argmax(scores, -1))
path = viz.plot_one_shot_run(
    runs.training[run], runs.test[run], choices, runs.answers[run],
    FIGURES / "run.png", title=f"official {runs.runs[run]}",
)  # fmt: skip
display(Image(filename=str(path)))

# %% [markdown]
# ## 2. What the learnet writes
#
# The filters of the pupil's predicted convolution (in the shipped model the last one, whose
# filters the learnet learns to write fastest) come from the exemplar. Two different characters
# give two different filter banks (the first 16 of its per-channel 3x3 filters):

# %%
pair = (0, 1)
exemplars = jnp.asarray(runs.training[run][list(pair)])
filters = np.asarray(model.predict_parameters(exemplars)[0]).reshape(2, 3, 3, -1)
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth")
layer = ORDINALS[model.config.predicted_layers[0]]
fig, axes = plt.subplots(2, 17, figsize=(12, 1.8))
limit = np.abs(filters[..., :16]).max()
for row, index in enumerate(pair):
    axes[row, 0].imshow(runs.training[run][index], cmap="gray")
    for j in range(16):
        axes[row, j + 1].imshow(filters[row, :, :, j], cmap="RdBu_r", vmin=-limit, vmax=limit)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
axes[0, 0].set_title("exemplar", fontsize=7)
fig.suptitle(f"predicted 3x3 filters of the pupil's {layer} convolution", fontsize=9)
plt.show()

# %% [markdown]
# ## 3. All 20 runs
#
# The benchmark's number is the error over the 400 trials. Lake et al.'s Modified Hausdorff
# Distance baseline, a nearest neighbour on the strokes' pixels, gets 38.8%.

# %%
count = 2 if SMALL and not TRAINED else len(runs.runs)
errors = []
for r in range(count):
    s = model.score_matrix(jnp.asarray(runs.test[r]), jnp.asarray(runs.training[r]))
    errors.append(100.0 * np.mean(np.asarray(jnp.argmax(s, -1)) != runs.answers[r]))
print(f"error over {count} runs: {np.mean(errors):.1f}%")
path = viz.plot_run_errors(errors, FIGURES / "runs.png", reference={"Modified Hausdorff": 38.8})
display(Image(filename=str(path)))
