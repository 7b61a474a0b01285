"""Benchmark of the 2-D convolutions of the paper's Moving MNIST model, layer by layer, for each
implementation of ``dfn_jax.ops.conv_general_dilated`` side by side in one run.

For every convolution shape of the ``paper`` model (``LAYERS``: input side, channels, kernel,
stride, and how many times one train step calls it) at ``--batch-size`` images, times the jitted
forward and the jitted forward+backward (``jax.vjp`` with respect to the input and the kernel,
given an output cotangent) of

* ``xla``: XLA's convolution and its own gradients (``DFN_JAX_CONV=xla``);
* ``matmul``: the kernel gradient as one matrix product of im2col patches at every size
  (``min_patch_rows=0``), and 1x1 convolutions as ``dot``;
* ``dot``: one ``jnp.dot`` with the forward's FLOPs (``[B*Ho*Wo, kh*kw*Cin] @ [kh*kw*Cin, Cout]``),
  forward only: what a matrix product of that size reaches on this machine;
* ``torch`` (``--torch``, when PyTorch is installed): ``F.conv2d`` in NCHW, forward under
  ``no_grad`` and forward+backward with ``autograd.grad``.

Each layer's ``default`` says which of ``xla`` and ``matmul`` the library's default
(``DFN_JAX_CONV=matmul``, the CPU's) computes the kernel gradient with: the im2col product from
``MIN_PATCH_ROWS`` output positions (batch x height x width) and for 1x1 convolutions, XLA's below.
Each timing is a median of ``--runs`` calls after warm-up, with GFLOP/s (forward ``2*B*Ho*Wo*kh*kw
*Cin*Cout``; forward+backward three times that). ``totals`` weighs each layer by its count: the
convolutions' share of one train step (``default``: each layer's default implementation). Usage:
``python -m benchmarks.conv [--batch-size 16] [--runs 7] [--torch] [--small] [--out F]``. Prints one
JSON document to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks._timing import emit, header, median_time
from dfn_jax import ops
from dfn_jax.ops import _conv
from dfn_jax.training.run import host_description

# name, input side, in channels, out channels, kernel, stride, calls per paper train step
LAYERS = [
    ("encoder_0", 64, 1, 32, 3, 1, 19),
    ("encoder_1", 64, 32, 32, 3, 2, 19),
    ("encoder_2", 32, 32, 64, 3, 1, 19),
    ("encoder_3", 32, 64, 64, 3, 1, 19),
    ("encoder_4", 32, 64, 128, 3, 1, 19),
    ("recurrent", 32, 128, 128, 3, 1, 38),
    ("decoder_0", 32, 128, 64, 3, 1, 10),
    ("decoder_1", 32, 64, 64, 3, 1, 10),
    ("decoder_2", 64, 64, 64, 3, 1, 20),
    ("head", 64, 64, 128, 1, 1, 10),
    ("filter_head", 64, 128, 81, 1, 1, 10),
]
SMALL_LAYERS = [("small_3x3", 16, 4, 8, 3, 1, 2), ("small_1x1", 16, 8, 8, 1, 1, 1)]
NHWC = ("NHWC", "HWIO", "NHWC")


def _pads(k: int, stride: int):
    return ((k // 2, k // 2), (k // 2, k // 2)) if k > 1 else ((0, 0), (0, 0))


def jax_functions(implementation: str, stride: int, pads):
    def conv(x, w):
        return ops.conv_general_dilated(
            x, w, (stride, stride), pads, dimension_numbers=NHWC,
            implementation=implementation, min_patch_rows=0,
        )  # fmt: skip

    def forward_backward(x, w, cotangent):
        out, vjp = jax.vjp(conv, x, w)
        return out, *vjp(cotangent)

    return jax.jit(conv), jax.jit(forward_backward)


def bench_torch(x, w, stride, k, runs):
    import torch
    import torch.nn.functional as F

    xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2).copy(), requires_grad=True)
    wt = torch.tensor(np.asarray(w).transpose(3, 2, 0, 1).copy(), requires_grad=True)
    pad = k // 2

    def forward():
        with torch.no_grad():
            return F.conv2d(xt, wt, stride=stride, padding=pad)

    cotangent = torch.randn_like(forward())

    def forward_backward():
        out = F.conv2d(xt, wt, stride=stride, padding=pad)
        return torch.autograd.grad(out, (xt, wt), cotangent)

    def median(fn):
        for _ in range(2):
            fn()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    return {"forward_s": median(forward), "forward_backward_s": median(forward_backward)}


def bench_layer(layer, batch: int, args) -> dict:
    name, side, cin, cout, k, stride, count = layer
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, side, side, cin)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin), jnp.float32)
    pads = _pads(k, stride)
    out_side = (side + sum(pads[0]) - k) // stride + 1
    flops = 2 * batch * out_side * out_side * k * k * cin * cout
    cotangent = jnp.asarray(rng.standard_normal((batch, out_side, out_side, cout)), jnp.float32)
    record = {
        "layer": name,
        "input": [batch, side, side, cin],
        "kernel": [k, k, cin, cout],
        "stride": stride,
        "calls_per_step": count,
        "output_positions": batch * out_side * out_side,
        "default": "matmul" if _conv.uses_matmul(x.shape, w.shape, (stride,) * 2, pads) else "xla",
        "forward_gflop": flops / 1e9,
        "implementations": {},
    }
    results = record["implementations"]
    for implementation in ("xla", "matmul"):
        forward, forward_backward = jax_functions(implementation, stride, pads)
        fwd = median_time(forward, x, w, runs=args.runs)["median_s"]
        fb = median_time(forward_backward, x, w, cotangent, runs=args.runs)["median_s"]
        results[implementation] = {"forward_s": fwd, "forward_backward_s": fb}
    patches = jnp.ones((batch * out_side * out_side, k * k * cin), jnp.float32)
    kernel = w.reshape(k * k * cin, cout)
    results["dot"] = {
        "forward_s": median_time(jax.jit(jnp.dot), patches, kernel, runs=args.runs)["median_s"]
    }
    if args.torch:
        results["torch"] = bench_torch(x, w, stride, k, args.runs)
    for res in results.values():
        res["forward_gflops"] = flops / res["forward_s"] / 1e9
        if "forward_backward_s" in res:
            res["forward_backward_gflops"] = 3 * flops / res["forward_backward_s"] / 1e9
            res["backward_vs_forward"] = res["forward_backward_s"] / res["forward_s"] - 1
    record["matmul_speedup_forward_backward"] = (
        results["xla"]["forward_backward_s"] / results["matmul"]["forward_backward_s"]
    )
    shown = ", ".join(
        f"{impl} {res.get('forward_backward_s', res['forward_s']) * 1e3:.1f} ms"
        for impl, res in results.items()
    )
    print(f"  {name}: {shown}", file=sys.stderr)
    return record


def totals(records: list[dict]) -> dict:
    """Per train step: each implementation's time summed over the layers, weighted by calls."""
    out = {}
    for impl in records[0]["implementations"]:
        row = {}
        for key in ("forward_s", "forward_backward_s"):
            if key in records[0]["implementations"][impl]:
                row[key] = sum(
                    r["implementations"][impl][key] * r["calls_per_step"] for r in records
                )
        out[impl] = row
    out["default"] = {
        key: sum(r["implementations"][r["default"]][key] * r["calls_per_step"] for r in records)
        for key in ("forward_s", "forward_backward_s")
    }
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=16, help="images per call (16)")
    p.add_argument("--runs", type=int, default=7, help="timed calls per median")
    p.add_argument("--torch", action="store_true", help="also time PyTorch's conv2d")
    p.add_argument("--small", action="store_true", help="two tiny layers: a smoke test")
    p.add_argument("--out", help="also write the JSON document to this file")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.runs < 1:
        p.error("--batch-size and --runs must be >= 1")
    if args.torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            p.error("--torch needs PyTorch (pip install -e '.[torch]')")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.torch:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
    layers = SMALL_LAYERS if args.small else LAYERS
    doc = {
        **header("conv"),
        "load_average_start": list(os.getloadavg()),
        "host": host_description(),
        "batch_size": args.batch_size,
        "runs": args.runs,
        "small": args.small,
        "default_implementation": _conv.default_implementation(),
        "min_patch_rows": _conv.MIN_PATCH_ROWS,
        "layers": [],
    }
    print(f"convolutions at batch {args.batch_size}", file=sys.stderr)
    for layer in layers:
        doc["layers"].append(bench_layer(layer, args.batch_size, args))
    doc["totals"] = totals(doc["layers"])
    doc["load_average_end"] = list(os.getloadavg())
    emit(doc, args.out)


if __name__ == "__main__":
    main()
