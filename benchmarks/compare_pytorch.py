"""Our Moving MNIST train step next to the same model's train step in PyTorch 2, in one run.

Answers "is the JAX version as fast as PyTorch on my machine?" for the recurrent video Dynamic
Filter Network of the ``paper`` config (``experiments/configs/moving_mnist.py``; 637,361
parameters, 20 frames of 64x64x1). For each ``--batch-sizes`` entry it times, on the same
synthetic batch (uniform in [0, 1), ``[B, 20, 64, 64, 1]``; no MNIST files are read):

* **JAX**: the real trainer's jitted train step (``Trainer(make_experiment(config))``,
  ``trainer.train_step``: loss, gradients, Adam update, state donated; float32; the config's
  ``unroll="auto"``, i.e. fully unrolled on CPU), measured exactly as ``benchmarks/train_step.py``
  does (its ``bench_train``): lower and compile, ``--warmup`` steps, then the median wall time of
  ``--runs`` steps, the state threaded from one step to the next;
* **PyTorch**: :class:`TorchVideoDFN`, the same layers written in ``torch.nn`` (NCHW): the encoder
  (3x3 convs, the second with stride 2, one pixel of padding on every side), the additive
  recurrence ``h_t = e_t + lrelu(conv(lrelu(conv(h_{t-1}))))``, the decoder with a nearest x2
  upsampling, the 1x1 head and the linear k*k filter head, a softmax over the taps and the dynamic
  local filter (``F.unfold`` of the k x k neighbourhood, tap ``i*k + j`` at offset
  ``(i - k//2, j - k//2)``, zeros outside the frame); leaky ReLU of slope 0.01 after every conv
  but the filter head. 19 unrolled steps: 9 warm-up steps read true frames 0-8, then 10 prediction
  steps, the first reading frame 9 and the others the model's own previous prediction. The loss is
  the experiment's: binary cross-entropy summed per frame (predictions clipped to
  ``[1e-7, 1 - 1e-7]``), averaged over sequences and predicted frames, divided by the pixels per
  frame. ``torch.optim.Adam(lr=1e-3)``; the median of ``--runs`` steps after ``--warmup``
  (``benchmarks/_timing.median_time``).

Every JAX timing runs first, then every PyTorch one (timed after PyTorch in the same process, our
batch-16 step was 11% slower). Both models start from the same parameters: ours, initialised by the
trainer, copied into the PyTorch model (:func:`jax_params_to_torch`: conv kernels HWIO -> OIHW).
Before any timing the **equivalence check** (:func:`equivalence_check`) runs both forward passes on
the same batch and reports the largest absolute difference of the predicted frames and both losses
(``equivalence``: ``max_abs_diff_frames``, ``loss_jax``, ``loss_torch``); float32 rounding leaves
about 1e-6 to 1e-5 (the tests also compare every parameter's gradient). Per batch size the JSON
holds ``jax_step_s``, ``torch_step_s`` and ``ratio_jax_over_torch`` (below 1: JAX is faster), with
each side's full timing record, and the header has both parameter counts, the versions,
``torch.get_num_threads()``, the backend, the CPU model and the date.

Threads: ``--threads N`` sets PyTorch's intra-op threads (``torch.set_num_threads``; default:
PyTorch's own choice, reported). XLA's CPU client sizes its thread pool to the machine and has no
such switch. On a machine busy with other jobs (more runnable threads than cores), PyTorch's
OpenMP threads wait at every parallel region for a thread the OS has descheduled, which can make
its steps many times slower than on an idle machine; run once more with ``--threads 1`` there.
PyTorch runs on the CPU, or on CUDA when JAX's backend is a GPU and PyTorch sees one.

Without PyTorch (``pip install -e ".[torch]"`` installs it) the JAX half still runs and the
document says ``"torch": null`` with the reason; the exit code is 0.

Usage: ``python -m benchmarks.compare_pytorch [--batch-sizes 2,16] [--runs 5] [--warmup 2]
[--small] [--threads N] [--out F]``. ``--small`` is a seconds-long smoke configuration (the
``shapes`` variant's widths, batch 2, 32x32 frames, 3 + 3 frames). Prints one JSON document to
stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import types

import jax
import numpy as np

from benchmarks import _timing
from dfn_jax.layers.rollout import resolve_unroll
from dfn_jax.models import VideoDFNConfig
from dfn_jax.training.mesh import OnMesh
from dfn_jax.training.trainer import Trainer
from experiments.configs import moving_mnist as mm_config
from experiments.main import make_experiment

try:
    from benchmarks._timing import emit, median_time
    from benchmarks.train_step import bench_train, synthetic_batch
except ImportError:  # run as a script: ``python benchmarks/compare_pytorch.py``
    from _timing import emit, median_time
    from train_step import bench_train, synthetic_batch

TORCH_INSTALL_HINT = 'install it with `pip install -e ".[torch]"` (or `pip install torch`)'
try:
    import torch
    import torch.nn.functional as F
    from torch import nn

    TORCH_MISSING_REASON = None
except (ImportError, OSError) as error:  # OSError: a broken install (missing shared library)
    torch = F = nn = None
    TORCH_MISSING_REASON = (
        f"PyTorch is not importable ({type(error).__name__}: {error}); only the JAX half ran: "
        f"{TORCH_INSTALL_HINT}."
    )

BUSY_MACHINE_NOTE = (
    "the 1-minute load average was at least the number of CPUs when the run started: other jobs "
    "compete for the cores, and PyTorch's OpenMP threads (more than one) then wait at every "
    "parallel region for a descheduled thread; compare with --threads 1 too."
)

# The experiment's clipping margin (dfn_jax.ops.binary_cross_entropy_per_frame's default).
BCE_EPS = 1e-7


def _check_supported(cfg: VideoDFNConfig) -> None:
    unsupported = {
        "recurrence": cfg.recurrence != "additive",
        "dynamic_filter": not cfg.dynamic_filter,
        "dynamic_bias": cfg.dynamic_bias,
        "teacher_forcing": cfg.teacher_forcing,
    }
    bad = [name for name, is_bad in unsupported.items() if is_bad]
    if bad:
        raise ValueError(f"TorchVideoDFN covers the paper's DFN only; unsupported fields: {bad}.")


if torch is not None:

    def local_filter(frame: torch.Tensor, filters: torch.Tensor, k: int) -> torch.Tensor:
        """Dynamic local filtering: ``frame [B, C, H, W]``, ``filters [B, k*k, H, W]`` (shared by
        the channels) -> ``[B, C, H, W]``. ``F.unfold`` lists the k x k window row-major, tap
        ``i*k + j`` at offset ``(i - k//2, j - k//2)`` with zero padding: the order of
        :func:`dfn_jax.ops.dynamic_local_filter`."""
        b, c, h, w = frame.shape
        patches = F.unfold(frame, k, padding=k // 2).view(b, c, k * k, h, w)
        return (patches * filters.unsqueeze(1)).sum(dim=2)

    def bce_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The experiment's loss: BCE summed per frame ``[B, T, C, H, W] -> [B, T]``, averaged,
        divided by the pixels per frame; ``p`` and ``1 - p`` each clipped to [eps, 1 - eps]."""
        q = torch.clamp(1.0 - predictions, BCE_EPS, 1.0 - BCE_EPS)
        p = torch.clamp(predictions, BCE_EPS, 1.0 - BCE_EPS)
        bce = -(targets * torch.log(p) + (1.0 - targets) * torch.log(q)).sum(dim=(2, 3, 4))
        return bce.mean() / float(np.prod(targets.shape[2:]))

    class TorchAdditiveConvRNNCell(nn.Module):
        """``h_t = e_t + lrelu(conv_2(lrelu(conv_1(h_{t-1}))))`` (3x3 convs, padding 1)."""

        def __init__(self, features: int, slope: float):
            super().__init__()
            self.conv_1 = nn.Conv2d(features, features, 3, padding=1)
            self.conv_2 = nn.Conv2d(features, features, 3, padding=1)
            self.slope = slope

        def forward(self, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
            recurrent = F.leaky_relu(self.conv_1(state), self.slope)
            return inputs + F.leaky_relu(self.conv_2(recurrent), self.slope)

    class TorchVideoDFN(nn.Module):
        """:class:`dfn_jax.models.VideoDFN` (additive recurrence, dynamic filter) in PyTorch.

        The submodules carry the names of our parameter tree (``encoder.0``, ``recurrence.conv_1``,
        ``decoder.3``, ``head``, ``filter_head``), so :func:`jax_params_to_torch` maps one onto
        the other by name. ``forward(frames [B, T, C, H, W]) -> [B, num_output_frames, C, H, W]``.
        """

        def __init__(self, cfg: VideoDFNConfig):
            super().__init__()
            _check_supported(cfg)
            self.cfg = cfg
            self.slope = cfg.leaky_relu_slope
            widths = (cfg.channels, *cfg.encoder_features)
            self.encoder = nn.ModuleList(
                nn.Conv2d(cin, cout, 3, stride=2 if i == 1 else 1, padding=1)
                for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:], strict=True))
            )
            self.recurrence = TorchAdditiveConvRNNCell(cfg.hidden_features, self.slope)
            widths = (cfg.hidden_features, *cfg.decoder_features)
            self.decoder = nn.ModuleList(
                nn.Conv2d(cin, cout, 3, padding=1)
                for cin, cout in zip(widths[:-1], widths[1:], strict=True)
            )
            self.head = nn.Conv2d(cfg.decoder_features[-1], cfg.head_features, 1)
            self.filter_head = nn.Conv2d(cfg.head_features, cfg.num_taps, 1)

        def encode(self, frame: torch.Tensor) -> torch.Tensor:
            x = frame
            for conv in self.encoder:
                x = F.leaky_relu(conv(x), self.slope)
            return x

        def decode(self, hidden: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
            x = hidden
            upsample_at = len(self.decoder) // 2
            for i, conv in enumerate(self.decoder):
                if i == upsample_at:
                    x = F.interpolate(x, scale_factor=2, mode="nearest")
                x = F.leaky_relu(conv(x), self.slope)
            x = F.leaky_relu(self.head(x), self.slope)
            filters = torch.softmax(self.filter_head(x), dim=1)
            return local_filter(frame, filters, self.cfg.filter_size)

        def forward(self, frames: torch.Tensor) -> torch.Tensor:
            cfg = self.cfg
            b, _, _, h, w = frames.shape
            hidden = frames.new_zeros((b, cfg.hidden_features, h // 2, w // 2))
            for t in range(cfg.num_input_frames - 1):  # warm-up: only the state advances
                hidden = self.recurrence(hidden, self.encode(frames[:, t]))
            frame = frames[:, cfg.num_input_frames - 1]
            predictions = []
            for _ in range(cfg.num_output_frames):  # closed loop after the first prediction
                hidden = self.recurrence(hidden, self.encode(frame))
                frame = self.decode(hidden, frame)
                predictions.append(frame)
            return torch.stack(predictions, dim=1)


def _flat_params(params) -> dict[str, np.ndarray]:
    """``{"encoder.0.kernel": array, ...}`` from a pure parameter dict."""
    flat = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        name = ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        flat[name] = np.asarray(leaf)
    return flat


def torch_name(jax_name: str) -> str:
    """``"encoder.0.kernel"`` -> ``"encoder.0.weight"``; biases keep their name."""
    module, _, leaf = jax_name.rpartition(".")
    return f"{module}.{'weight' if leaf == 'kernel' else leaf}"


def jax_params_to_torch(params) -> dict[str, np.ndarray]:
    """Our pure parameter dict as a :class:`TorchVideoDFN` state dict (numpy arrays): conv
    kernels ``[kh, kw, in, out]`` (HWIO) become ``[out, in, kh, kw]`` (OIHW), biases stay."""
    out = {}
    for name, value in _flat_params(params).items():
        if name.endswith(".kernel"):
            value = value.transpose(3, 2, 0, 1)
        out[torch_name(name)] = np.array(value, dtype=np.float32, order="C")  # a writable copy
    return out


def torch_grad_as_jax(name: str, grad: np.ndarray) -> np.ndarray:
    """A :class:`TorchVideoDFN` gradient in our layout (OIHW -> HWIO for conv weights)."""
    return grad.transpose(2, 3, 1, 0) if name.endswith(".weight") else grad


def load_jax_params(model, params) -> None:
    """Copies our parameters into ``model`` (a :class:`TorchVideoDFN`); every name must match."""
    state = {k: torch.from_numpy(v) for k, v in jax_params_to_torch(params).items()}
    model.load_state_dict(state, strict=True)


def torch_frames(batch) -> torch.Tensor:
    """``[B, T, H, W, C]`` (JAX) -> contiguous ``[B, T, C, H, W]`` float32 tensor."""
    frames = np.asarray(batch).transpose(0, 1, 4, 2, 3)
    return torch.from_numpy(np.array(frames, dtype=np.float32, order="C"))  # a writable copy


def torch_device():
    if jax.default_backend() == "gpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def build_torch_model(trainer: Trainer, params, device=None):
    """A :class:`TorchVideoDFN` of ``trainer``'s model config holding ``params``."""
    model = TorchVideoDFN(trainer.experiment.model_config)
    load_jax_params(model, params)
    return model.to(device or torch.device("cpu"))


def count_torch_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def initial_params(trainer: Trainer) -> dict:
    """Host (numpy) copies of the trainer's initial parameters. Taken before any train step: the
    step donates its state, and on one device ``init_state`` hands out the initial buffers
    themselves, so they are gone after the first step."""
    return jax.tree.map(np.array, trainer.init_state()["params"])


def equivalence_check(trainer: Trainer, batch, *, params=None, gradients: bool = False) -> dict:
    """Copies ``params`` (default: the trainer's initial parameters) into a
    :class:`TorchVideoDFN`, runs both forward passes (and, with ``gradients``, both backward
    passes) on ``batch`` ``[B, T, H, W, C]`` in float32 on the CPU and reports how far apart they
    are.

    Gradients at the initial parameters differ in the recurrence's biases, and only there: the
    state starts at ``h_0 = 0`` and the biases at 0, so the first step's recurrent convs feed
    exact zeros to their leaky ReLUs, whose derivative at 0 is 1 in JAX
    (``where(x >= 0, ...)``) and the slope in PyTorch (``F.leaky_relu``). Both are valid
    subgradients and the forward passes agree; compare gradients at parameters with nonzero
    biases.

    Returns ``{"max_abs_diff_frames", "loss_jax", "loss_torch", "abs_diff_loss",
    "num_params_jax", "num_params_torch", "batch_shape"}``, plus with ``gradients``
    ``"grad_max_abs_diff"`` and ``"grad_max_abs"`` (per parameter, our names) and
    ``"grad_max_rel_diff"`` (the largest of ``max |g_jax - g_torch| / max |g_jax|``).
    """
    experiment = trainer.experiment
    params = initial_params(trainer) if params is None else params

    def forward(params, batch):
        model = trainer.bind(params)
        loss, _ = experiment.loss(model, batch, None)
        return model(batch).frames, loss

    frames_jax, loss_jax = OnMesh(jax.jit(forward), trainer.mesh)(params, batch)
    frames_jax = np.asarray(frames_jax).transpose(0, 1, 4, 2, 3)  # -> [B, T, C, H, W]

    model = build_torch_model(trainer, params)
    frames = torch_frames(batch)
    n_in = experiment.model_config.num_input_frames
    with torch.set_grad_enabled(gradients):
        predictions = model(frames)
        loss_torch = bce_loss(predictions, frames[:, n_in : experiment.num_frames])
    result = {
        "max_abs_diff_frames": float(np.max(np.abs(predictions.detach().numpy() - frames_jax))),
        "loss_jax": float(loss_jax),
        "loss_torch": float(loss_torch.detach()),
        "abs_diff_loss": abs(float(loss_jax) - float(loss_torch.detach())),
        "num_params_jax": int(trainer.num_params),
        "num_params_torch": count_torch_params(model),
        "batch_shape": list(np.shape(batch)),
    }
    if gradients:
        grad_fn = OnMesh(
            jax.jit(jax.grad(lambda p, b: experiment.loss(trainer.bind(p), b, None)[0])),
            trainer.mesh,
        )
        grads_jax = _flat_params(grad_fn(params, batch))
        loss_torch.backward()
        grads_torch = {name: p.grad.numpy() for name, p in model.named_parameters()}
        diffs, scales = {}, {}
        for name, g in grads_jax.items():
            other = torch_grad_as_jax(torch_name(name), grads_torch[torch_name(name)])
            diffs[name] = float(np.max(np.abs(g - other)))
            scales[name] = float(np.max(np.abs(g)))
        result["grad_max_abs_diff"] = diffs
        result["grad_max_abs"] = scales
        result["grad_max_rel_diff"] = max(diffs[n] / max(scales[n], 1e-30) for n in diffs)
    return result


def bench_torch(trainer: Trainer, params, batch, args) -> dict:
    """Median wall time of the PyTorch train step (forward, BCE, backward, Adam) on ``batch``,
    starting from ``params`` (ours, see :func:`initial_params`)."""
    experiment = trainer.experiment
    device = torch_device()
    model = build_torch_model(trainer, params, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    frames = torch_frames(batch).to(device)
    targets = frames[:, experiment.model_config.num_input_frames : experiment.num_frames]
    losses = []

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = bce_loss(model(frames), targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())  # waits for the step (also on CUDA)

    res = median_time(step, runs=args.runs, warmup=args.warmup)
    if not np.all(np.isfinite(losses)):
        raise FloatingPointError(f"non-finite PyTorch training loss: {losses}")
    res["losses"] = losses
    res["device"] = str(device)
    res["optimizer"] = type(optimizer).__name__
    return res


def build_config(batch_size: int, small: bool):
    config = mm_config.get_config("paper")
    config.mesh.data = 1  # one device: a per-device comparison
    config.data.source = "shapes"  # never read (synthetic batches); needs no files in any case
    if small:
        shapes = mm_config.get_config("shapes").model
        for name in ("encoder_features", "decoder_features", "hidden_features", "head_features"):
            config.model[name] = shapes[name]
        config.data.image_size = 32
        config.model.num_input_frames = 3
        config.model.num_output_frames = 3
    config.batch_size = batch_size
    return config


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_jax(batch_size: int, args, doc: dict) -> tuple[dict, Trainer, dict, jax.Array]:
    """Our train step at ``batch_size``; returns the record, the trainer, a copy of the initial
    parameters and the batch (for the PyTorch half)."""
    config = build_config(batch_size, args.small)
    trainer = Trainer(make_experiment(config))
    batch = trainer.shard_batch(synthetic_batch(0, config.batch_size, trainer.experiment))
    record = {"batch_size": batch_size, "batch_shape": list(batch.shape)}
    params = initial_params(trainer)  # for PyTorch: the JAX step below donates the originals
    doc["num_params_jax"] = int(trainer.num_params)
    print(f"  B={batch_size}: JAX train step", file=sys.stderr)
    jax_args = types.SimpleNamespace(runs=args.runs, warmup=args.warmup, compile_only=False)
    record["jax"], _ = bench_train(trainer, batch, jax_args)
    record["jax_step_s"] = record["jax"]["median_s"]
    record["torch_step_s"] = record["ratio_jax_over_torch"] = None
    record_config(doc, config)
    return record, trainer, params, batch


def bench_torch_side(record: dict, trainer: Trainer, params, batch, args, doc: dict) -> None:
    """The PyTorch half for one batch size (the equivalence check first, once)."""
    if doc["equivalence"] is None:
        print("  equivalence check (both forward passes)", file=sys.stderr)
        doc["equivalence"] = equivalence_check(trainer, batch, params=params)
        doc["num_params_torch"] = doc["equivalence"]["num_params_torch"]
        print(
            f"  max |frames_jax - frames_torch| = {doc['equivalence']['max_abs_diff_frames']:.2e}",
            file=sys.stderr,
        )
    print(f"  B={record['batch_size']}: PyTorch train step", file=sys.stderr)
    args.learning_rate = trainer.config.learning_rate
    record["torch"] = bench_torch(trainer, params, batch, args)
    record["torch_step_s"] = record["torch"]["median_s"]
    record["ratio_jax_over_torch"] = record["jax_step_s"] / record["torch_step_s"]
    print(
        f"  B={record['batch_size']}: JAX {record['jax_step_s']:.3f} s, PyTorch "
        f"{record['torch_step_s']:.3f} s, ratio {record['ratio_jax_over_torch']:.2f}",
        file=sys.stderr,
    )


def record_config(doc: dict, config) -> None:
    doc["config"] = {
        "image_size": config.data.image_size,
        "num_input_frames": config.model.num_input_frames,
        "num_output_frames": config.model.num_output_frames,
        "filter_size": config.model.filter_size,
        "encoder_features": list(config.model.encoder_features),
        "decoder_features": list(config.model.decoder_features),
        "hidden_features": config.model.hidden_features,
        "head_features": config.model.head_features,
        "learning_rate": config.learning_rate,
        "unroll": resolve_unroll(config.model.unroll),
        "dtype": "float32",
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--batch-sizes", default=None, help="comma-separated batch sizes (2,16; --small: 2)"
    )
    p.add_argument("--runs", type=int, default=5, help="timed steps per library")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps (after compiling)")
    p.add_argument("--small", action="store_true", help="tiny smoke-test configuration")
    p.add_argument("--threads", type=int, default=None, help="PyTorch intra-op threads")
    p.add_argument("--out", help="also write the JSON document to this file")
    args = p.parse_args(argv)
    if args.batch_sizes is None:
        args.batch_sizes = "2" if args.small else "2,16"
    try:
        args.batch_sizes = [int(v) for v in args.batch_sizes.split(",") if v.strip()]
    except ValueError:
        p.error(f"--batch-sizes must be comma-separated ints, got {args.batch_sizes!r}")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        p.error("--batch-sizes needs at least one size, each >= 1")
    if args.runs < 1 or args.warmup < 0:
        p.error("--runs must be >= 1 and --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    wall_start = time.perf_counter()
    if torch is not None and args.threads is not None:
        torch.set_num_threads(args.threads)
    doc = {
        **_timing.header("compare_pytorch"),
        "cpu_model": cpu_model(),
        "load_average_start": list(os.getloadavg()),
        "torch": None,
        "torch_version": None,
        "torch_num_threads": None,
        "experiment": "moving_mnist",
        "variant": "paper",
        "small": args.small,
        "data": "synthetic, uniform in [0, 1) (no MNIST files read), the same batch for both",
        "runs": args.runs,
        "warmup": args.warmup,
        "batch_sizes": args.batch_sizes,
        "num_params_jax": None,
        "num_params_torch": None,
        "equivalence": None,
        "results": [],
    }
    if doc["load_average_start"][0] >= (os.cpu_count() or 1):
        doc["busy_machine_note"] = BUSY_MACHINE_NOTE
    if torch is None:
        doc["torch_missing_reason"] = TORCH_MISSING_REASON
        print(TORCH_MISSING_REASON, file=sys.stderr)
    else:
        doc["torch"] = {
            "version": torch.__version__,
            "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
            "device": str(torch_device()),
        }
        doc["torch_version"] = torch.__version__
        doc["torch_num_threads"] = torch.get_num_threads()
    # Every JAX timing first, then every PyTorch one: timed after PyTorch in the same process,
    # our batch-16 step took 15.5 s instead of 13.9 s (docs/BENCHMARKS.md).
    print(f"JAX{' (small)' if args.small else ''}", file=sys.stderr)
    prepared = [bench_jax(batch_size, args, doc) for batch_size in args.batch_sizes]
    if torch is not None:
        print("PyTorch", file=sys.stderr)
        for record, trainer, params, batch in prepared:
            bench_torch_side(record, trainer, params, batch, args, doc)
    doc["results"] = [record for record, *_ in prepared]
    doc["summary"] = [
        {
            "batch_size": r["batch_size"],
            "jax_step_s": r["jax_step_s"],
            "torch_step_s": r["torch_step_s"],
            "ratio_jax_over_torch": r["ratio_jax_over_torch"],
        }
        for r in doc["results"]
    ]
    doc["load_average_end"] = list(os.getloadavg())
    doc["total_wall_s"] = time.perf_counter() - wall_start
    emit(doc, args.out)


if __name__ == "__main__":
    main()
