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
# # Video prediction on Moving MNIST with a Dynamic Filter Network
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dfn-jax/dfn_jax/blob/main/notebooks/moving_mnist.ipynb)
#
# The first video experiment of *Dynamic Filter Networks* (De Brabandere, Jia, Tuytelaars and Van
# Gool, NIPS 2016, Sec. 4.1): a recurrent network watches 10 frames of two handwritten digits
# bouncing around a 64x64 canvas and predicts the next 10. It never paints a pixel itself. At every
# step its filter-generating network outputs one `9 x 9` softmax filter **per pixel**, and the
# next frame is the current frame filtered with them (dynamic local filtering): each predicted
# pixel is a weighted average of its neighbourhood in the previous frame. To move a digit the
# network only has to learn *where to read from*, and that is an optical flow we can plot.
#
# This notebook goes through the whole experiment with the repository's own pieces:
#
# 1. **the data**: Moving MNIST sequences (or, without MNIST, the embedded bouncing shapes);
# 2. **training** a small model with the shared trainer (`experiments/main.py`), and loading its
#    checkpoint back;
# 3. **predictions**: inputs, ground truth and predictions, and a rollout past the training horizon;
# 4. **the flow** read off the predicted filters;
# 5. **the metrics** the run wrote to `results.json`, per prediction horizon.
#
# The model trained here is small and trained for minutes on a CPU, not the paper's 637,361
# parameters for 20,000 steps: its predictions are blurrier than the paper's. The same code trains
# the paper's model with `get_config("paper")` on a GPU (Runtime > Change runtime type on Colab).

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
import json
import os
import pathlib
import tempfile

import jax
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

import dfn_jax.viz  # noqa: F401  (the trainer's figures; see below)
from dfn_jax import ops
from dfn_jax.data import mnist, moving_mnist, shapes
from dfn_jax.training import Checkpointer, Trainer
from experiments.configs.moving_mnist import get_config
from experiments.main import make_experiment, train_and_evaluate

# dfn_jax.viz, which the trainer uses to write its PNG figures, selects matplotlib's file-only
# "Agg" backend when it is imported; bring the notebook's inline plots back.
# %matplotlib inline

# The test suite sets DFN_NOTEBOOK_SMALL=1 to run every notebook on small sizes.
SMALL = os.environ.get("DFN_NOTEBOOK_SMALL") == "1"
print(f"jax {jax.__version__} on {jax.default_backend()}, {jax.device_count()} device(s)")

# %% [markdown]
# ## 1. The data
#
# Moving MNIST (Srivastava et al. 2015) sequences are generated, not stored: two MNIST digits
# (28x28) start at random positions of a 64x64 canvas, move in a straight line at a fixed speed,
# bounce off the walls, and overlap with a pixel-wise `max`. `dfn_jax.data` generates them on the
# device from one PRNG key per sequence, so a test sequence is fully determined by its key;
# `moving_mnist.test_set_keys` gives the keys of the fixed 10,000-sequence test set that every
# evaluation in this repository uses.
#
# The digits come from the first of these that works:
#
# * the folder in the environment variable `DFN_MNIST_DIR`, holding the four original IDX files
#   (`train-images-idx3-ubyte.gz`, ...);
# * `shared/data/mnist` beside the checkout (how this repository's machines keep their datasets);
# * files downloaded earlier into `~/.cache/dfn_jax/mnist`, or a fresh download (12 MB) when the
#   network is there (not in the test suite's small run, which must not depend on the network).
#
# When none works, the notebook switches to the **bouncing shapes**: squares, discs, crosses and
# triangles the size of a digit that move exactly like Moving MNIST digits, and need no download.
# Everything below runs the same on either.

# %%
candidates = [
    os.environ.get("DFN_MNIST_DIR", ""),
    "../../shared/data/mnist",
    "../shared/data/mnist",
]
MNIST_DIR = next(
    (str(pathlib.Path(c).resolve()) for c in candidates if c and pathlib.Path(c).is_dir()), ""
)
DOWNLOAD = not SMALL
try:
    test_digits = mnist.load_mnist_digits("test", mnist_dir=MNIST_DIR or None, download=DOWNLOAD)
    SOURCE = "mnist"
    print(
        f"MNIST test digits {test_digits.shape} {test_digits.dtype}",
        f"from {MNIST_DIR or 'the download cache'}",
    )
except mnist.MNISTNotFoundError:
    test_digits = None
    SOURCE = "shapes"
    print(
        "No MNIST digits found (set DFN_MNIST_DIR to a folder with the IDX files to use them); "
        "using the embedded bouncing shapes."
    )


def make_sequences(keys, *, num_frames, image_size):
    """``float32 [B, T, H, W, 1]`` in [0, 1]: one sequence per key, of MNIST digits or (without
    them) of two 28-pixel bouncing shapes at the paper's speed."""
    if SOURCE == "mnist":
        return moving_mnist.moving_mnist_sequences(
            keys, test_digits, num_frames=num_frames, image_size=image_size
        )
    return shapes.bouncing_shapes_sequences(keys, num_frames=num_frames, image_size=image_size)


def plot_strips(rows, labels, *, title="", divider=None, size=0.85):
    """One row of frames per ``[T, H, W, 1]`` array; a red line after frame ``divider``."""
    cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(cols * size, len(rows) * size + 0.4), squeeze=False
    )
    for r, (frames, label) in enumerate(zip(rows, labels, strict=True)):
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(frames):
                ax.imshow(np.asarray(frames[c])[..., 0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.axis("off")
            if divider is not None and c == divider:
                ax.axvline(-0.5, color="red", lw=3)
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    for c in range(cols):
        axes[0, c].set_title(str(c), fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.3)
    plt.show()


# The first three sequences of the fixed test set, at the paper's size: 20 frames of 64x64.
examples = np.asarray(make_sequences(moving_mnist.test_set_keys(3), num_frames=20, image_size=64))
print(
    "sequences", examples.shape, examples.dtype, f"values in [{examples.min()}, {examples.max()}]"
)
plot_strips(
    list(examples),
    [f"sequence {i}" for i in range(len(examples))],
    title=f"{SOURCE}: frames 0-9 are observed, frames 10-19 (after the red line) are predicted",
    divider=10,
)

# %% [markdown]
# ## 2. Training a small model with the shared trainer
#
# The experiment is `experiments/dfn/moving_mnist.py`, the model `dfn_jax.models.VideoDFN`, the loss
# the paper's binary cross-entropy on the 10 predicted frames, and the trainer
# `dfn_jax.training` (jitted steps, Adam, Orbax checkpoints, logs). The command line
# `python -m experiments.main --config=experiments/configs/moving_mnist.py:quick --workdir=DIR`
# calls the same `train_and_evaluate(config, workdir)` as this cell.
#
# The configs are `ml_collections.ConfigDict`s, so fields can be changed before the run:
# `get_config("quick")` (MNIST, 64x64, ten frames read) and `get_config("shapes")` (the README's
# quick start: one sprite on 32x32 frames, five frames read, 1,600 steps) are CPU-sized variants
# of the paper's setup (narrower layers, batch 8). Here MNIST runs 300 steps (about 20 minutes on
# a 2-core CPU, much less on a GPU) and the shapes their own schedule (under 5 minutes). With
# `DFN_NOTEBOOK_SMALL=1` (the test suite) the model and data shrink much further, only to check
# that everything runs: that run predicts blurs.

# %%
config = get_config("quick" if SOURCE == "mnist" else "shapes")
config.data.mnist_dir = MNIST_DIR
config.data.download = DOWNLOAD
if SOURCE == "mnist":
    config.num_train_steps = 300
    config.lr_halve_every_steps = 150
config.eval_every_steps = 0  # evaluate once, at the end
config.checkpoint_every_steps = 100
if SMALL:
    config.model.encoder_features = (4, 4, 4, 4, 4)
    config.model.decoder_features = (4, 4, 4, 4)
    config.model.hidden_features = 4  # the additive recurrence needs encoder_features[-1]
    config.model.head_features = 4
    config.model.num_input_frames = 3
    config.model.num_output_frames = 3
    config.data.image_size = 32
    config.batch_size = 2
    config.num_train_steps = 3
    config.log_every_steps = 1
    config.checkpoint_every_steps = 3
    config.num_eval_sequences = 4
    config.eval_batch_size = 2
    config.num_figure_sequences = 2
    config.mesh.data = 1  # one device

N_IN, N_OUT = config.model.num_input_frames, config.model.num_output_frames
K = config.model.filter_size
print(
    f"{config.data.source}: {config.num_train_steps} steps of batch {config.batch_size}, "
    f"{config.data.image_size}x{config.data.image_size} frames, {N_IN} in -> {N_OUT} out, "
    f"encoder widths {tuple(config.model.encoder_features)}"
)

# %% [markdown]
# The **work directory** receives everything the run produces: `checkpoints/` (Orbax), the config,
# `metrics.jsonl` and TensorBoard logs, `figures/*.png` and `results.json`. By default it is a
# temporary folder that disappears with the kernel; set `WORKDIR` to a folder of your own (on
# Colab, a Google Drive folder after `from google.colab import drive; drive.mount(...)`) to keep it.

# %%
WORKDIR = ""  # a folder of your own, or "" for a temporary one
if not WORKDIR:
    _tmp = tempfile.TemporaryDirectory(prefix="dfn_moving_mnist_")  # removed with the kernel
    WORKDIR = _tmp.name
print("work directory:", WORKDIR)

# %% [markdown]
# Training prints a progress line with the loss (the BCE divided by the number of pixels) and
# the speed. **Re-running the next cell resumes** from the latest checkpoint in `WORKDIR` instead
# of starting over: raise `config.num_train_steps` and run it again to train longer, or interrupt
# it and run it again to continue. A finished run is only evaluated again.

# %%
results = train_and_evaluate(config, WORKDIR)
print(
    f"{results['steps']} steps, {results['num_params']:,} parameters, "
    f"{results['train_wall_time_s']:.1f} s of training, "
    f"test BCE {results['test']['bce']:.1f} nats/frame, SSIM {results['test']['ssim']:.3f}"
)
print("in the work directory:", sorted(p.name for p in pathlib.Path(WORKDIR).iterdir()))

# %% [markdown]
# ### Loading a trained model from its checkpoint
#
# A finished run's model lives in its checkpoints, and the same three steps load it in any later
# session (with the config the run was trained with): build a `Trainer` for the experiment, which
# makes the model and a train state of the right structure, restore the checkpoint into that
# template, and bind the restored parameters to the model. The train state is a plain dict with
# `step`, `params`, `model_state` (the model's other variables), `opt_state` (Adam's moments),
# `carry`, `key` and `train_time_s`.

# %%
trainer = Trainer(make_experiment(config))
checkpointer = Checkpointer(WORKDIR)
step = checkpointer.latest_step()
print("checkpoints at steps", checkpointer.all_steps(), "-> restoring step", step)
state = checkpointer.restore(step, trainer.init_state())
checkpointer.close()
# A VideoDFN (an nnx.Module) holding the trained weights:
model = trainer.bind(state["params"], state["model_state"])
print(
    type(model).__name__,
    f"restored at step {int(state['step'])}, {trainer.num_params:,} parameters",
)

# %% [markdown]
# ## 3. Predictions
#
# `model.rollout(context, num_output_frames)` reads the `num_input_frames` context frames of a
# clip and predicts the next `num_output_frames` in **closed loop**: after the first prediction
# every step reads the model's own previous prediction, never the truth. It returns a
# `VideoPrediction(frames, filters)`. (`model(frames)` is the training forward pass: with
# `model.teacher_forcing`, as in the shapes config, it reads the true frames.) Two test
# sequences, at the size the model was trained on:

# %%
forward = nnx.jit(lambda model, context: model.rollout(context, N_OUT))  # once per shape

clips = trainer.experiment.test_examples(2)  # drawn as the evaluation draws them
prediction = forward(model, clips[:, :N_IN])
print("predicted frames", prediction.frames.shape, "filters", prediction.filters.shape)

clips, predicted = np.asarray(clips), np.asarray(prediction.frames)
for i in range(len(clips)):
    plot_strips(
        [clips[i, :N_IN], clips[i, N_IN:], predicted[i]],
        ["input", "ground truth", "prediction"],
        title=f"test sequence {i}",
    )

# %% [markdown]
# `model.predict(context, num_future)` runs the same closed loop from any number of context frames
# for any number of steps, also past the horizon the model was trained on. Here it predicts twice as
# many frames as in training; the red line marks the end of the training horizon. Errors compound
# as the model keeps reading its own predictions, so the predictions get blurrier the further they
# go.

# %%
num_future = 2 * N_OUT
rollout = nnx.jit(lambda model, context: model.predict(context, num_future))

long_clips = trainer.experiment.test_examples(2, num_frames=N_IN + num_future)
future = rollout(model, long_clips[:, :N_IN])
bce = ops.binary_cross_entropy_per_frame(future, long_clips[:, N_IN:])  # [B, num_future]
print("context", long_clips[:, :N_IN].shape, "-> predicted", future.shape)
print("BCE per predicted frame (nats), sequence 0:", np.round(np.asarray(bce[0]), 1))

long_clips, future = np.asarray(long_clips), np.asarray(future)
plot_strips(
    [long_clips[0, N_IN:], future[0]],
    ["ground truth", "prediction"],
    title=f"test sequence 0: {num_future} frames predicted from {N_IN}",
    divider=N_OUT,
)

# %% [markdown]
# ## 4. The flow in the filters
#
# Every predicted pixel is `sum_t f_t * previous[y + dy_t, x + dx_t]` over the 81 taps of its
# softmax filter `f`. The filter's expected offset, `sum_t f_t * (dx_t, dy_t)`, is where the pixel
# reads from on average: `ops.filter_flow` computes it for every pixel, and `ops.flow_to_rgb`
# renders it with hue for the direction (see the colour wheel), saturation for the length and
# white for none. This is how the paper shows what its video model learned.
#
# It is a **backward flow**: it points from each pixel of the new frame *to where it samples the
# previous frame*. The motion of the content is its negative: a digit moving right is predicted
# by filters that read from the left. The arrows on the prediction show the motion, `-flow`
# (drawn at twice its length), at the brighter pixels. In the black background the direction of
# a filter does not change the prediction (every neighbour is black), so only the flow on and
# around the digits means something. The last panel is the 9x9 filter of the brightest predicted
# pixel, its centre tap marked with a cross: a peak away from the centre is a shift.


# %%
def colour_wheel(radius, n=101):
    """``flow_to_rgb`` of the offsets in ``[-radius, radius]^2``: the legend of the colours."""
    d = np.linspace(-radius, radius, n, dtype=np.float32)
    dx, dy = np.meshgrid(d, d)
    wheel = np.array(ops.flow_to_rgb(np.stack([dx, dy], axis=-1), max_magnitude=radius))
    wheel[np.hypot(dx, dy) > radius] = 1.0
    return wheel


first_filters = prediction.filters[:, 0]  # [B, H, W, K*K]: the filters of the first prediction
flow = np.asarray(ops.filter_flow(first_filters, kernel_size=K))  # [B, H, W, 2], (dx, dy)
radius = K // 2  # the reach of a filter, and the flow shown fully saturated
flow_rgb = np.asarray(ops.flow_to_rgb(flow, max_magnitude=radius))
print("flow", flow.shape, f"largest |flow| {np.max(np.hypot(flow[..., 0], flow[..., 1])):.2f} px")

fig, axes = plt.subplots(len(clips), 5, figsize=(12, 2.6 * len(clips)), squeeze=False)
for i, row in enumerate(axes):
    first = predicted[i, 0, ..., 0]
    row[0].imshow(clips[i, N_IN - 1, ..., 0], cmap="gray", vmin=0, vmax=1)
    row[0].set_title(f"sequence {i}: last input", fontsize=9)
    row[1].imshow(first, cmap="gray", vmin=0, vmax=1)
    stride = max(1, first.shape[0] // 16)
    ys, xs = np.mgrid[0 : first.shape[0] : stride, 0 : first.shape[1] : stride]
    bright = first[ys, xs] > 0.3
    motion = -flow[i, ys, xs]  # the motion is the negative of the backward flow
    row[1].quiver(
        xs[bright],
        ys[bright],
        motion[bright, 0],
        motion[bright, 1],
        color="orange",
        angles="xy",
        scale_units="xy",
        scale=0.5,
        width=0.012,
    )
    row[1].set_title("first prediction, motion", fontsize=9)
    row[2].imshow(flow_rgb[i])
    row[2].set_title("filter flow (backward)", fontsize=9)
    row[3].imshow(colour_wheel(radius), extent=(-radius, radius, radius, -radius))
    row[3].set(xlabel="dx (px)", ylabel="dy (px)")
    row[3].set_title("legend of the colours", fontsize=9)
    y, x = np.unravel_index(np.argmax(first), first.shape)
    row[4].imshow(
        np.asarray(first_filters[i, y, x]).reshape(K, K),
        cmap="magma",
        extent=(-radius - 0.5, radius + 0.5, radius + 0.5, -radius - 0.5),
    )
    row[4].plot(0, 0, "c+", ms=10)
    row[4].set_title(f"filter at (y={y}, x={x})", fontsize=9)
    for ax in row[:3]:
        ax.set_xticks([])
        ax.set_yticks([])
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 5. Metrics per prediction horizon
#
# At the end of the run the trainer evaluated the model on the first `num_eval_sequences` test
# sequences and wrote `results.json`: the parameter count, steps, wall times, and the test metrics,
# each averaged over the predicted frames and, as `<name>_per_horizon`, for each predicted frame
# separately.
#
# The paper's metric is the **binary cross-entropy in nats per frame**:
# `-sum over the pixels of [t log p + (1 - t) log(1 - p)]` with the natural logarithm, summed over
# the 64 x 64 pixels of one frame (not averaged over them), then averaged over the 10 predicted
# frames and the 10,000 test sequences. The paper reports **285.2** for the DFN (and 432.5 for its
# baseline without dynamic filters). Because it is a sum over pixels, the number depends on the
# frame size: a 32x32 frame has a quarter of the pixels. It cannot reach 0 either: the digits'
# anti-aliased edges are grey, and the entropy of those grey targets (86.3 nats per frame on the
# test set) is the BCE of a perfect prediction; it is drawn below, computed on the same test
# sequences. **SSIM** (structural similarity, 1 for a perfect prediction) is more familiar from
# the later video-prediction literature.
#
# Both curves get worse with the horizon: the further a frame is from the observed ones, the more
# the errors of the frames in between have accumulated.

# %%
results = json.loads((pathlib.Path(WORKDIR) / "results.json").read_text())
test = results["test"]
print(
    f"{results['experiment']} on {results['data_source']}: {results['steps']} steps, "
    f"{results['num_params']:,} parameters, {results['num_eval_sequences']} test sequences"
)
print("  ".join(f"{name} {test[name]:.4g}" for name in ("bce", "ssim", "mse", "mae", "psnr")))

eval_clips = trainer.experiment.test_examples(config.num_eval_sequences)
floor = np.asarray(ops.target_entropy_per_frame(eval_clips[:, N_IN:])).mean(axis=0)  # [N_OUT]

horizon = np.arange(1, N_OUT + 1)
fig, (ax_bce, ax_ssim) = plt.subplots(1, 2, figsize=(10, 3.4))
ax_bce.plot(horizon, test["bce_per_horizon"], "o-", label="this run")
ax_bce.plot(horizon, floor, "k:", label="lower bound: entropy of the targets")
if config.data.image_size == 64 and SOURCE == "mnist":
    ax_bce.axhline(285.2, color="tab:green", ls="--", label="paper, DFN (mean of 10 frames)")
ax_bce.set(
    xlabel="predicted frame (steps after the last input)",
    ylabel="BCE (nats per frame)",
    title="binary cross-entropy",
    ylim=(0, None),
)
ax_bce.legend(fontsize=8)
ax_ssim.plot(horizon, test["ssim_per_horizon"], "o-", color="tab:orange")
ax_ssim.set(xlabel="predicted frame (steps after the last input)", ylabel="SSIM", title="SSIM")
for ax in (ax_bce, ax_ssim):
    ax.set_xticks(horizon)
fig.tight_layout()
plt.show()

# %% [markdown]
# The trainer also left figures of its own in `WORKDIR/figures` (predictions, flow, loss curve)
# and TensorBoard logs (`tensorboard --logdir WORKDIR`). To get near the paper, train the paper's
# model (`get_config("paper")`: batch 16, 20,000 steps, about 1.7 TFLOP per step, a GPU job) and
# evaluate it on all 10,000 test sequences; `docs/RESULTS.md` lists the runs of this repository
# and their numbers.
