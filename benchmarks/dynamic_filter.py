"""Benchmark of ``ops.dynamic_local_filter`` against an unfold baseline and a memory roofline.

For each shape ``(B, H, W, C, kh, kw)`` (shared filters ``[B, H, W, kh*kw]``) and implementation
("fast": the C++ kernels on CPU, "xla": the fused XLA ops, "reference": per-pixel patches, all three
the op's keyword; "patches": ``lax.conv_general_dilated_patches`` + einsum, differentiated by JAX),
times the jitted forward and forward+backward after warm-up, and records compile times and
compiled temp memory. Forward+backward is the op's own: ``jax.vjp`` with respect to inputs and
filters, returning the output and both cotangents for a given output cotangent (what a layer's
forward and backward passes compute). For "fast" and "xla" the run also times
``loss_forward_backward``: ``jax.value_and_grad`` of the scalar ``sum(out * cotangent)``, which
adds XLA's product, reduction and scalar output to the same work. Every implementation is checked
against "fast" first.

Memory roofline, with ``s`` the dtype's item size (4 for float32) and ``F = kh*kw``:
  forward bytes = s*B*H*W*(2C + F): read the inputs and the filters once, write the output;
  forward+backward bytes = forward + s*B*H*W*(4C + 2F) (REFERENCE section 5).
``roofline_s = bytes / bandwidth``, where the bandwidth is measured in the same run by a jitted
``x * 1.0001`` over a float32 array the size of the filter tensor (``2 * bytes / time``).

Every timing is taken twice: back to back (``median_s``; the keys ``roofline_s`` and
``ratios``) and with cold caches (``cold``; ``roofline_cold_s``, ``ratios_cold``), where
``--flush-bytes`` (256 MiB) are rewritten on the device, untimed, before each call. The two
differ where the data fit the last-level cache: back to back, the forward re-reads its filters
(21 MB at 16x64x64x81) from a 32 MB L3 and beats the memory roofline, while forward+backward,
which also writes a filter-sized gradient, evicts them; with cold caches every timing, the copy
included, starts from memory, so the ratios between them compare like with like.

The header records whether "fast" ran the C++ kernels (``cpu_kernel``: built or loaded from the
cache, compile seconds, or why not), the host allocator setting and the load average before and
after the run. Each timing records its page faults per call. By default glibc gives large freed
blocks back to the OS, and a large output (the forward+backward's filter gradient) then gets
fresh pages the OS must zero on every call (thousands of faults, several ms); ``import dfn_jax``
sets malloc to reuse freed memory when JAX computes on the CPU (``dfn_jax.host_allocator()``). The
run measures the process as a user gets it (no setting of its own), then, unless
``--no-system-allocator``, the same timings in a child process with
``DFN_JAX_HOST_ALLOCATOR=system`` (glibc's defaults), under ``system_allocator``, with both
forward+backward / forward ratios side by side in ``allocator_comparison``.

Usage: ``python -m benchmarks.dynamic_filter [--shapes 256,64,64,1,9,9;16,64,64,1,9,9] [--out F]``.
Prints one JSON document to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import dfn_jax
from dfn_jax import ops
from dfn_jax._src.host_memory import ENV_VAR
from dfn_jax.ops import _cpu_kernels

try:
    from benchmarks import _timing
except ImportError:  # run as a script: ``python benchmarks/dynamic_filter.py``
    import _timing

DEFAULT_SHAPES = "16,64,64,1,9,9;16,64,64,3,9,9;8,64,64,32,5,5;16,64,64,1,11,11;16,64,64,1,1,13"


def patches_local_filter(x, f, *, kernel_size):
    """Unfold baseline: materialise ``[B, H, W, C*kh*kw]`` patches, contract with the filters."""
    kh, kw = kernel_size
    b, h, w, c = x.shape
    patches = lax.conv_general_dilated_patches(
        x,
        (kh, kw),
        (1, 1),
        ((kh // 2, kh // 2), (kw // 2, kw // 2)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST,  # a one-hot conv: keep it exact (no TF32 on GPU)
    )
    patches = patches.reshape(b, h, w, c, kh * kw)  # feature index is channel-major: c*T + t
    out = jnp.einsum("bhwct,bhwt->bhwc", patches, f, precision=lax.Precision.HIGHEST)
    return out.astype(x.dtype)


def make_fns(impl, kernel_size):
    if impl == "patches":
        fwd = lambda x, f: patches_local_filter(x, f, kernel_size=kernel_size)
    else:
        fwd = lambda x, f: ops.dynamic_local_filter(
            x, f, kernel_size=kernel_size, implementation=impl
        )

    def forward_backward(x, f, g):
        out, vjp = jax.vjp(fwd, x, f)
        return out, vjp(g.astype(out.dtype))

    loss = lambda x, f, g: jnp.sum(fwd(x, f).astype(jnp.float32) * g)
    fns = {
        "forward": jax.jit(fwd),
        "forward_backward": jax.jit(forward_backward),
        "loss_forward_backward": jax.jit(jax.value_and_grad(loss, argnums=(0, 1))),
    }
    if impl in ("reference", "patches"):  # slow: the op's own forward+backward is enough
        del fns["loss_forward_backward"]
    return fns


def _bandwidth(t, nbytes):
    # The roofline uses the median (like the op timings); the best run is kept for reference.
    return {
        **t,
        "bandwidth_Bps": 2 * nbytes / t["median_s"],
        "bandwidth_best_Bps": 2 * nbytes / t["min_s"],
    }


def copy_bandwidth(nbytes, runs, warmup, flush):
    """Bytes per second of a jitted elementwise pass (read + write) over a float32 array, timed
    back to back and, with ``flush``, from cold caches (``"cold"``)."""
    a = jnp.ones((max(nbytes // 4, 1),), jnp.float32)
    _, scale = _timing.compile_time(jax.jit(lambda v: v * 1.0001), a)
    nbytes = a.size * 4
    record = {
        "bytes": nbytes,
        **_bandwidth(_timing.median_time(scale, a, runs=runs, warmup=warmup), nbytes),
    }
    if flush is not None:
        # Warmed up just above: no more untimed runs before the cold ones.
        cold = _timing.median_time(scale, a, runs=runs, warmup=0, flush=flush)
        record["cold"] = _bandwidth(cold, nbytes)
    return record


def _ratios(times, roofline):
    """The headline ratios from ``times[(implementation, name)]`` (median seconds)."""
    ratios = {}
    if ("fast", "forward") not in times:
        return ratios
    ratios["fast_forward_vs_roofline"] = times["fast", "forward"] / roofline["forward"]
    ratios["fast_fb_vs_roofline"] = times["fast", "forward_backward"] / roofline["forward_backward"]
    ratios["fast_fb_vs_fast_forward"] = times["fast", "forward_backward"] / times["fast", "forward"]
    ratios["fast_loss_fb_vs_fast_forward"] = (
        times["fast", "loss_forward_backward"] / times["fast", "forward"]
    )
    for other in ("xla", "reference", "patches"):
        if (other, "forward_backward") in times:
            ratios[f"{other}_fb_vs_fast_fb"] = (
                times[other, "forward_backward"] / times["fast", "forward_backward"]
            )
            ratios[f"{other}_forward_vs_fast_forward"] = (
                times[other, "forward"] / times["fast", "forward"]
            )
    return ratios


def bench_shape(shape, args, dtype, flush):
    b, h, w, c, kh, kw = shape
    taps, pixels, item = kh * kw, b * h * w, jnp.dtype(dtype).itemsize
    kx, kf, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (b, h, w, c), jnp.float32).astype(dtype)
    f = jax.nn.softmax(jax.random.normal(kf, (b, h, w, taps)), axis=-1).astype(dtype)
    g = jax.random.normal(kg, (b, h, w, c), jnp.float32)
    fwd_bytes = item * pixels * (2 * c + taps)
    fb_bytes = fwd_bytes + item * pixels * (4 * c + 2 * taps)
    # The copy is cheap: more runs.
    copy = copy_bandwidth(4 * pixels * taps, max(args.runs, 50), args.warmup, flush)
    rooflines = {"": copy} | ({"_cold": copy["cold"]} if flush is not None else {})
    record = {
        "shape": dict(zip("B H W C kh kw".split(), shape, strict=True)),
        "bytes": {"forward": fwd_bytes, "forward_backward": fb_bytes},
        "copy": copy,
        **{
            f"roofline{suffix}_s": {
                "forward": fwd_bytes / c["bandwidth_Bps"],
                "forward_backward": fb_bytes / c["bandwidth_Bps"],
            }
            for suffix, c in rooflines.items()
        },
        "implementations": {},
    }
    tol = 1e-4 if dtype == jnp.float32 else 3e-2
    expected = None
    ref_bytes = 4 * pixels * taps * c  # reference's float32 [B, H, W, T, C] patch tensor
    for impl in args.implementations:
        if impl == "reference" and ref_bytes > args.max_reference_bytes:
            reason = (
                f"patch tensor {ref_bytes} B > --max-reference-bytes {args.max_reference_bytes}"
            )
            record["implementations"][impl] = {"skipped": reason}
            print(f"  {impl}: skipped ({reason})", file=sys.stderr)
            continue
        res = {"compile_s": {}, "temp_bytes": {}}
        outs = {}
        for name, fn in make_fns(impl, (kh, kw)).items():
            fn_args = (x, f) if name == "forward" else (x, f, g)
            res["compile_s"][name], compiled = _timing.compile_time(fn, *fn_args)
            res["temp_bytes"][name] = _timing.temp_bytes(compiled)
            outs[name] = jax.tree.map(lambda a: np.asarray(a, np.float32), compiled(*fn_args))
            res[name] = _timing.median_time(compiled, *fn_args, runs=args.runs, warmup=args.warmup)
            cold = ""
            if flush is not None:
                res[name]["cold"] = _timing.median_time(  # warmed up just above
                    compiled, *fn_args, runs=args.runs, warmup=0, flush=flush
                )
                cold = f", cold caches {res[name]['cold']['median_s'] * 1e3:.3f} ms"
            print(f"  {impl} {name}: {res[name]['median_s'] * 1e3:.3f} ms{cold}", file=sys.stderr)
        if expected is None:
            expected = outs  # "fast" comes first
        for name in outs.keys() & expected.keys():  # each must agree with the first one
            pairs = zip(jax.tree.leaves(outs[name]), jax.tree.leaves(expected[name]), strict=True)
            for got, want in pairs:
                scale = float(np.max(np.abs(want))) or 1.0
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=impl)
        record["implementations"][impl] = res

    timed = [
        (k, n, v[n])
        for k, v in record["implementations"].items()
        if "skipped" not in v
        for n in ("forward", "forward_backward", "loss_forward_backward")
        if n in v
    ]
    for suffix in rooflines:
        times = {(k, n): (t["cold"] if suffix else t)["median_s"] for k, n, t in timed}
        record[f"ratios{suffix}"] = _ratios(times, record[f"roofline{suffix}_s"])
    return record


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default=DEFAULT_SHAPES, help="B,H,W,C,kh,kw;B,H,W,C,kh,kw;...")
    p.add_argument("--runs", type=int, default=20, help="timed runs after the warm-up runs")
    p.add_argument(
        "--warmup",
        type=int,
        default=5,
        help="untimed runs after the correctness check (the allocator's heap grows in the first)",
    )
    p.add_argument("--implementations", default="fast,xla,reference,patches")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--max-reference-bytes", type=lambda s: int(float(s)), default=2 * 10**9)
    p.add_argument(
        "--flush-bytes",
        type=lambda v: int(float(v)),
        default=_timing.FLUSH_BYTES,
        help="bytes written between cold-cache runs (0: time back to back only)",
    )
    p.add_argument(
        "--system-allocator",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the shapes in a child process with glibc's default malloc "
        "(DFN_JAX_HOST_ALLOCATOR=system)",
    )
    p.add_argument("--out", help="also write the JSON document to this file")
    args = p.parse_args(argv)
    args.shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";") if s]
    if any(len(s) != 6 for s in args.shapes):
        p.error("each shape needs six integers B,H,W,C,kh,kw")
    impls = [s for s in args.implementations.split(",") if s]
    if not set(impls) <= {"fast", "xla", "reference", "patches"}:
        p.error(f"unknown implementation in {impls}")
    args.implementations = ["fast"] + [i for i in impls if i != "fast"]  # fast is the baseline
    return args


def _child_with_system_allocator(argv) -> dict:
    """This benchmark's document from a child process that leaves glibc's malloc as it is."""
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = [a for a in argv if a != "--system-allocator"]
    if "--out" in argv:
        index = argv.index("--out")
        del argv[index : index + 2]
    env = dict(os.environ, **{ENV_VAR: "system"})
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.dynamic_filter", *argv, "--no-system-allocator"],
        cwd=pathlib.Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout)


def _allocator_comparison(doc: dict, system: dict) -> list[dict]:
    """Per shape, the fast forward+backward / forward ratios with both allocator settings."""
    rows = []
    for mine, theirs in zip(doc["results"], system.get("results", []), strict=False):
        row = {"shape": mine["shape"]}
        for name, record in (("library", mine), ("system", theirs)):
            fast = record["implementations"]["fast"]
            row[f"{name}_forward_s"] = fast["forward"]["median_s"]
            row[f"{name}_forward_backward_s"] = fast["forward_backward"]["median_s"]
            row[f"{name}_fb_vs_forward"] = record["ratios"]["fast_fb_vs_fast_forward"]
            row[f"{name}_fb_page_faults"] = fast["forward_backward"]["page_faults_per_run"]
        rows.append(row)
    return rows


def _load_average():
    try:
        return list(os.getloadavg())
    except OSError:  # not available on this platform
        return None


def main(argv=None):
    args = parse_args(argv)
    dtype = jnp.dtype(args.dtype)
    doc = {
        **_timing.header("dynamic_local_filter"),
        "dtype": args.dtype,
        "runs": args.runs,
        "filters": "shared over channels, [B, H, W, kh*kw]",
        # Builds (or loads) the kernels now, so that their compile time is recorded here.
        "cpu_kernel": _cpu_kernels.status() if jax.default_backend() == "cpu" else None,
        "host_allocator": dfn_jax.host_allocator(),
        "flush_bytes": args.flush_bytes,
        "load_average_start": _load_average(),
        "results": [],
    }
    start = time.perf_counter()
    flush = _timing.cache_flusher(args.flush_bytes) if args.flush_bytes > 0 else None
    for shape in args.shapes:
        print(f"shape B,H,W,C,kh,kw = {shape}", file=sys.stderr)
        doc["results"].append(bench_shape(shape, args, dtype, flush))
    doc["load_average_end"] = _load_average()
    doc["total_wall_s"] = time.perf_counter() - start
    if args.system_allocator and os.environ.get(ENV_VAR) != "system":
        print("the same with glibc's default malloc (child process)", file=sys.stderr)
        doc["system_allocator"] = _child_with_system_allocator(argv)
        doc["allocator_comparison"] = _allocator_comparison(doc, doc["system_allocator"])
    _timing.emit(doc, args.out)


if __name__ == "__main__":
    main()
