"""Benchmark of the Moving MNIST training and evaluation steps through the real trainer code path.

Builds ``Trainer(make_experiment(config))`` for the ``paper`` config (batch 16, 20 frames of
64x64x1, the 637,361-parameter DFN) or ``--variant baseline`` (637,443 parameters), and for each
setting, side by side in one process (every combination of ``--unroll``, handed to the model's
two ``lax.scan`` loops; ``--dtype``, the computation dtype, ``bfloat16`` being mixed precision
with float32 parameters and loss; and ``--remat``, recomputing each recurrent step in the
backward pass; and ``--conv``, the convolutions' implementation, ``DFN_JAX_CONV``: ``xla`` or
``matmul``, the kernel gradient as a matrix product, see ``dfn_jax.ops.conv_general_dilated``),
measures:

* the jitted train step (``Trainer.train_step``: loss, gradients, Adam update; state donated):
  lower and compile times, then the median wall time of ``--runs`` steps after ``--warmup``
  steps, each blocked until ready, with the state threaded from one step to the next;
* the jitted evaluation step (``Trainer.eval_step``: forward pass and the test metrics) at
  ``--eval-batch`` sequences (the config's 100 by default): compile and median time;
* memory: ``compiled.memory_analysis()`` (temp, argument, output, alias bytes), the process's
  peak device memory (``memory_stats()["peak_bytes_in_use"]``, GPU only; a process-wide high-water
  mark, so later entries include earlier ones) and the host's peak RSS (also process-wide);
* FLOPs and bytes accessed from ``compiled.cost_analysis()``. XLA counts the body of a rolled loop
  once, not once per iteration, so these are only whole-step figures for ``unroll=true``.

The batches are synthetic (uniform in [0, 1)): no MNIST files are read; the step's cost does not
depend on the pixel values. One device is used (``mesh.data = 1``).

On CPU the default is ``--unroll true`` only: a rolled scan (``unroll=1``) of convolution
gradients is extremely slow there (jax issue 12868; about 750 s per paper train step,
reported in the project brief for this model; not re-measured here),
so ``unroll=1`` runs only when asked for explicitly. Elsewhere the default is ``true,1``.

``--cli`` also runs the first setting's config through the command line's loop
(``experiments.main.train_and_evaluate``, batches generated from the embedded shapes) for
``runs + 10`` steps and reports its steady-state time per step beside the bare step's median
(``cli.vs_benchmark``): what the host work around the compiled step costs.

Usage: ``python -m benchmarks.train_step [--variant paper|baseline] [--cli] [--runs 5] [--unroll
true,1] [--dtype float32,bfloat16] [--remat false,true] [--conv xla,matmul] [--batch-size 16]
[--eval-batch 100] [--compile-only] [--small] [--out F]``. ``--compile-only`` reports compile times,
compiled memory and FLOPs without running a step: how the rolled loop's memory responds to
``--remat`` can be read on CPU, where running it is too slow. ``--small`` is a seconds-long smoke
configuration (widths 4, batch 2, 32x32 frames, 3 + 3 frames). Prints one JSON document to stdout;
progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from unittest import mock

import jax
import numpy as np

from benchmarks import _timing
from dfn_jax.ops import _conv
from dfn_jax.training import trainer as trainer_module
from dfn_jax.training.run import Run, host_description
from dfn_jax.training.trainer import Trainer
from experiments.configs import moving_mnist as mm_config
from experiments.main import make_experiment, train_and_evaluate

try:
    from benchmarks._timing import emit, lower_and_compile, median_time, memory_of
except ImportError:  # run as a script: ``python benchmarks/train_step.py``
    from _timing import emit, lower_and_compile, median_time, memory_of

CPU_ROLLED_NOTE = (
    "unroll=1 not run by default on CPU: convolution gradients inside a rolled lax.scan are "
    "extremely slow on the CPU backend (jax issue 12868; the project brief reports about 750 s "
    "per paper-config train step, not re-measured here, versus about 20-27 s fully unrolled). "
    "Pass --unroll true,1 to run it anyway."
)
ROLLED_FLOPS_NOTE = (
    "XLA's cost analysis counts the body of a rolled loop once, not once per iteration: with "
    "unroll != true, flops and bytes_accessed cover only part of the step."
)


def parse_unroll(text: str):
    text = text.strip().lower()
    if text in ("true", "full"):
        return True
    if text == "false":
        return False
    value = int(text)
    if value < 1:
        raise ValueError(f"unroll must be true, false or an int >= 1, got {text!r}")
    return value


def parse_bool(text: str) -> bool:
    text = text.strip().lower()
    if text not in ("true", "false"):
        raise ValueError(f"expected true or false, got {text!r}")
    return text == "true"


def parse_dtype(text: str) -> str:
    text = text.strip()
    if text not in ("float32", "bfloat16", "float16"):
        raise ValueError(f"expected float32, bfloat16 or float16, got {text!r}")
    return text


def parse_conv(text: str) -> str:
    text = text.strip().lower()
    if text not in ("xla", "matmul"):
        raise ValueError(f"expected xla or matmul, got {text!r}")
    return text


def build_config(args, setting):
    config = mm_config.get_config(args.variant)
    config.mesh.data = 1  # one device: a per-device benchmark
    config.data.source = "shapes"  # never read (synthetic batches); needs no files in any case
    if args.small:
        config.batch_size = 2
        config.eval_batch_size = 4
        config.data.image_size = 32
        config.model.encoder_features = (4, 4, 4, 4, 4)
        config.model.decoder_features = (4, 4, 4, 4)
        config.model.hidden_features = 4
        config.model.head_features = 4
        config.model.num_input_frames = 3
        config.model.num_output_frames = 3
    if args.batch_size:
        config.batch_size = args.batch_size
    if args.eval_batch is not None and args.eval_batch > 0:
        config.eval_batch_size = args.eval_batch
    config.num_eval_sequences = config.eval_batch_size  # only has to be a multiple of it
    with config.ignore_type():  # the config holds "auto"; the benchmark sets it explicitly
        config.model.unroll = setting["unroll"]
    config.model.dtype = setting["dtype"]
    config.model.remat = setting["remat"]
    return config


def synthetic_batch(seed, batch_size, experiment):
    """``[B, T, H, W, C]`` float32 frames, uniform in [0, 1)."""
    size = experiment.config.data.image_size
    shape = (batch_size, experiment.num_frames, size, size, experiment.model_config.channels)
    return jax.random.uniform(jax.random.key(seed), shape, jax.numpy.float32)


def costs_of(compiled) -> dict:
    try:
        cost = compiled.cost_analysis()
    except Exception:
        return {}
    if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
        cost = cost[0] if cost else {}
    if not cost:
        return {}
    out = {}
    if cost.get("flops") is not None:
        out["flops"] = float(cost["flops"])
    if cost.get("bytes accessed") is not None:
        out["bytes_accessed"] = float(cost["bytes accessed"])
    return out


def device_peak_bytes():
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return int(stats["peak_bytes_in_use"])


def host_peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


def add_rates(res, batch_size):
    median = res["median_s"]
    res["steps_per_s"] = 1.0 / median
    res["sequences_per_s"] = batch_size / median
    if "flops" in res:
        res["flops_per_s"] = res["flops"] / median


def bench_train(trainer, batch, args) -> tuple[dict, dict]:
    state = trainer.init_state()
    res, compiled = lower_and_compile(trainer.train_step, state, batch)
    print(f"  train: lower+compile {res['lower_compile_s']:.1f} s", file=sys.stderr)
    res["memory"] = memory_of(compiled)
    res.update(costs_of(compiled))
    if args.compile_only:
        return res, state["params"]
    losses = []
    for i in range(args.warmup):
        start = time.perf_counter()
        state, metrics = compiled(state, batch)  # the state is donated: thread it through
        losses.append(float(jax.block_until_ready(metrics)["loss"]))
        print(f"  train warm-up {i}: {time.perf_counter() - start:.2f} s", file=sys.stderr)
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(args.runs):
        start = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
        losses.append(float(metrics["loss"]))
        print(f"  train step {i}: {times[-1]:.4g} s", file=sys.stderr)
    if not np.all(np.isfinite(losses)):
        raise FloatingPointError(f"non-finite training loss: {losses}")
    res.update(median_s=statistics.median(times), min_s=min(times), runs=args.runs, times_s=times)
    res["page_faults_per_step"] = (
        resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    ) / args.runs
    res["losses"] = losses
    add_rates(res, batch.shape[0])
    res["device_peak_bytes_in_use"] = device_peak_bytes()
    return res, state


def bench_eval(trainer, state, batch, args) -> dict:
    params, model_state = state["params"], state["model_state"]
    res, compiled = lower_and_compile(trainer.eval_step, params, model_state, batch)
    print(f"  eval: lower+compile {res['lower_compile_s']:.1f} s", file=sys.stderr)
    res["memory"] = memory_of(compiled)
    res.update(costs_of(compiled))
    res.update(
        median_time(compiled, params, model_state, batch, runs=args.runs, warmup=args.warmup)
    )
    print(f"  eval step: {res['median_s']:.2f} s (median)", file=sys.stderr)
    add_rates(res, batch.shape[0])
    res["device_peak_bytes_in_use"] = device_peak_bytes()
    return res


def conv_implementation(value: str):
    """Sets ``DFN_JAX_CONV`` (read when a step is traced) for the duration of one setting."""
    return mock.patch.dict(os.environ, {_conv.CONV_ENV: value})


def bench_setting(args, setting) -> tuple[dict, object]:
    with conv_implementation(setting["conv"]):
        return _bench_setting(args, setting)


def _bench_setting(args, setting) -> tuple[dict, object]:
    config = build_config(args, setting)
    experiment = make_experiment(config)
    trainer = Trainer(experiment)
    train_batch = trainer.shard_batch(synthetic_batch(0, config.batch_size, experiment))
    record = {
        **setting,
        "num_params": trainer.num_params,
        "batch_shape": list(train_batch.shape),
    }
    record["train"], state = bench_train(trainer, train_batch, args)
    if args.eval_batch == 0 or args.compile_only:
        record["eval"] = {"skipped": "--compile-only" if args.compile_only else "--eval-batch 0"}
    else:
        eval_batch = trainer.shard_batch(synthetic_batch(1, config.eval_batch_size, experiment))
        record["eval_batch_shape"] = list(eval_batch.shape)
        record["eval"] = bench_eval(trainer, state, eval_batch, args)
    record["host_peak_rss_bytes"] = host_peak_rss_bytes()
    return record, config


class _TimedRun(Run):
    """The real :class:`Run`, recording when the loop reaches the end of each step."""

    stamps: list[float] = []

    def after_step(self, done, state, metrics, **kwargs):
        _TimedRun.stamps.append(time.perf_counter())
        return super().after_step(done, state, metrics, **kwargs)


def bench_cli(args, setting, benchmark_step_s: float) -> dict:
    """The command line's time per step for the same config, in steady state.

    Runs ``train_and_evaluate`` (what ``experiments.main`` runs: batches generated from the
    embedded shapes, logging, checkpoint checks, the progress bar) for ``runs + 10`` steps and
    records when the loop finishes each step. The loop dispatches steps ahead of the device until
    JAX's queue of computations is full (a few steps), then waits for one step per iteration: the
    mean interval after the first such wait (which also covers the queued steps) is the loop's
    time per step, the device's step plus whatever the host adds between steps."""
    config = build_config(args, setting)
    config.num_eval_sequences = config.eval_batch_size = 2 * config.batch_size
    config.num_figure_sequences = 1
    config.eval_every_steps = 0
    config.checkpoint_every_steps = 10**6  # the final step's save only
    config.num_train_steps = args.runs + 10
    _TimedRun.stamps = []
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(trainer_module, "Run", _TimedRun):
        train_and_evaluate(config, tmp)
    intervals = np.diff(_TimedRun.stamps)
    waits = np.flatnonzero(intervals > 0.5 * benchmark_step_s)
    # The first wait also covers the steps the device had queued: steady state starts after it.
    steady = (
        intervals[waits[0] + 1 :] if len(waits) and waits[0] + 1 < len(intervals) else intervals
    )
    per_step = float(np.mean(steady))
    print(f"  command line: {per_step:.3f} s per step", file=sys.stderr)
    return {
        "steps": config.num_train_steps,
        "intervals_s": intervals.tolist(),
        "steady_steps": len(steady),
        "per_step_s": per_step,
        "benchmark_step_s": benchmark_step_s,
        "vs_benchmark": per_step / benchmark_step_s,
        "log_every_steps": config.log_every_steps,
    }


def compare(results: list[dict]) -> list[dict]:
    """Each setting's train step time and compiled memory relative to the first setting."""
    base = results[0]["train"]
    base_temp = base.get("memory", {}).get("temp_bytes")
    rows = []
    for record in results:
        train = record["train"]
        temp = train.get("memory", {}).get("temp_bytes")
        rows.append(
            {
                "unroll": record["unroll"],
                "dtype": record["dtype"],
                "remat": record["remat"],
                "conv": record["conv"],
                "train_median_s": train.get("median_s"),
                "time_vs_first": train["median_s"] / base["median_s"]
                if "median_s" in train
                else None,
                "temp_bytes": temp,
                "temp_vs_first": temp / base_temp if temp and base_temp else None,
                "device_peak_bytes_in_use": train.get("device_peak_bytes_in_use"),
                "compile_s": train["lower_compile_s"],
            }
        )
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", choices=("paper", "baseline"), default="paper")
    p.add_argument("--batch-size", type=int, default=0, help="training batch (config: 16)")
    p.add_argument(
        "--eval-batch", type=int, default=None, help="evaluation batch (config: 100); 0: skip"
    )
    p.add_argument("--runs", type=int, default=None, help="timed steps (5 on CPU, else 20)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps after compiling")
    p.add_argument(
        "--unroll",
        default=None,
        help="comma-separated scan unroll values: true, false or ints (CPU: true; else true,1)",
    )
    p.add_argument(
        "--dtype", default="float32", help="comma-separated computation dtypes (float32,bfloat16)"
    )
    p.add_argument("--remat", default="false", help="comma-separated: false, true or both")
    p.add_argument(
        "--conv",
        default=None,
        help="comma-separated convolution implementations (xla, matmul; default: DFN_JAX_CONV "
        "or the backend's, what a user gets)",
    )
    p.add_argument(
        "--compile-only",
        action="store_true",
        help="compile and report memory and FLOPs without running steps (e.g. rolled on CPU)",
    )
    p.add_argument("--small", action="store_true", help="tiny smoke-test configuration")
    p.add_argument(
        "--cli",
        action="store_true",
        help="also time the first setting's step through the command line's training loop",
    )
    p.add_argument("--out", help="also write the JSON document to this file")
    args = p.parse_args(argv)
    on_cpu = jax.default_backend() == "cpu"
    if args.runs is None:
        args.runs = 5 if on_cpu else 20
    if args.runs < 1 or args.warmup < 0 or args.batch_size < 0:
        p.error("--runs must be >= 1, --warmup and --batch-size >= 0")
    if args.eval_batch is not None and args.eval_batch < 0:
        p.error("--eval-batch must be >= 0")
    args.unroll_note = None
    if args.unroll is None:
        args.unroll = "true" if on_cpu else "true,1"
        if on_cpu:
            args.unroll_note = CPU_ROLLED_NOTE
    if args.conv is None:
        try:
            args.conv = _conv.default_implementation()
        except ValueError as e:
            p.error(str(e))
    parsers = (
        ("unroll", parse_unroll),
        ("dtype", parse_dtype),
        ("remat", parse_bool),
        ("conv", parse_conv),
    )
    for name, parse in parsers:
        try:
            values = [parse(v) for v in getattr(args, name).split(",") if v.strip()]
        except ValueError as e:
            p.error(f"--{name}: {e}")
        if not values:
            p.error(f"--{name} needs at least one value")
        setattr(args, name, values)
    args.settings = [
        {"unroll": u, "dtype": d, "remat": r, "conv": c}
        for u in args.unroll
        for d in args.dtype
        for r in args.remat
        for c in args.conv
    ]
    return args


def main(argv=None):
    args = parse_args(argv)
    wall_start = time.perf_counter()
    doc = {
        **_timing.header("train_step"),
        "devices_used": 1,
        "load_average_start": list(os.getloadavg()),
        "host": host_description(),
        "experiment": "moving_mnist",
        "variant": args.variant,
        "small": args.small,
        "data": "synthetic, uniform in [0, 1) (no MNIST files read)",
        "runs": args.runs,
        "warmup": args.warmup,
        "unroll_values": args.unroll,
        "dtype_values": args.dtype,
        "remat_values": args.remat,
        "conv_values": args.conv,
        "unroll_note": args.unroll_note,
        "flops_note": ROLLED_FLOPS_NOTE,
        "results": [],
    }
    config = None
    for setting in args.settings:
        shown = ", ".join(f"{k}={v}" for k, v in setting.items())
        print(f"{args.variant}{' (small)' if args.small else ''}: {shown}", file=sys.stderr)
        record, config = bench_setting(args, setting)
        doc["results"].append(record)
    doc["comparison"] = compare(doc["results"])
    if args.cli and not args.compile_only:
        print("the same step through the command line's loop", file=sys.stderr)
        first = doc["results"][0]
        with conv_implementation(args.settings[0]["conv"]):
            doc["cli"] = bench_cli(args, args.settings[0], first["train"]["median_s"])
    model = config.model
    doc["num_params"] = doc["results"][0]["num_params"]
    doc["config"] = {
        "batch_size": config.batch_size,
        "eval_batch_size": config.eval_batch_size if args.eval_batch != 0 else None,
        "image_size": config.data.image_size,
        "num_input_frames": model.num_input_frames,
        "num_output_frames": model.num_output_frames,
        "filter_size": model.filter_size,
        "dynamic_filter": model.dynamic_filter,
        "encoder_features": list(model.encoder_features),
        "decoder_features": list(model.decoder_features),
        "hidden_features": model.hidden_features,
        "head_features": model.head_features,
        "learning_rate": config.learning_rate,
    }
    doc["load_average_end"] = list(os.getloadavg())
    doc["total_wall_s"] = time.perf_counter() - wall_start
    emit(doc, args.out)


if __name__ == "__main__":
    main()
