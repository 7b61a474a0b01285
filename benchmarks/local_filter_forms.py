"""The XLA formulations of ``dynamic_local_filter``'s two gradient ops, timed side by side.

``ops.dynamic_local_filter`` (``dfn_jax/ops/_local_filter.py``) differentiates through two ops:
``G`` (the input gradient, the filter's adjoint) and ``H`` (the filter gradient, one product per
pixel and tap). Off the CPU's C++ kernels they are XLA code, and the best way to write them differs
by backend; this script times each formulation, jitted alone, on the default backend:

* ``G``: ``taps`` (each tap's filter slice padded and shifted back, then summed; every backend)
  and ``reference`` (JAX's transpose, in the inputs, of the reference implementation's per-pixel
  windows);
* ``H``: ``rows`` (one window row of taps per ``fori_loop`` step, written into the gradient; the
  CPU's), ``gather`` (the reference's transpose in the filters, as the library writes it for
  other backends) and ``reference`` (the same transpose taken from the reference's full VJP).

Two more forms were measured on an H200 and removed (docs/BENCHMARKS.md): ``G`` as the product
``f * g`` padded once, and ``H`` as one stack of all taps' products.

Each row gives the median time, its ratio to the copy roofline (bytes the op must move, at the
bandwidth of a jitted elementwise pass measured in the same run) and which form the library
picks on this backend (``chosen``). Every form is checked against ``reference`` first.

Usage: ``python -m benchmarks.local_filter_forms [--shapes 256,64,64,1,9,9] [--out F]``.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _timing
from benchmarks.dynamic_filter import copy_bandwidth
from dfn_jax.ops import _local_filter as lf


def _reference_vjp(x, f, kh, kw):
    return jax.vjp(lambda x, f: lf._local_filter_reference(x, f, kh, kw), x, f)[1]


def forms(kh, kw):
    """``{(op, form): (library function or None, function of (g, x, f))}``: every formulation of
    ``G`` and ``H``; the library function is what the library's dispatch can return."""
    return {
        ("G", "taps"): (lf._xla_adjoint, lambda g, x, f: lf._xla_adjoint(g, f, kh, kw)),
        ("G", "reference"): (None, lambda g, x, f: _reference_vjp(x, f, kh, kw)(g)[0]),
        ("H", "rows"): (
            lf._xla_outer_rows,
            lambda g, x, f: lf._xla_outer_rows(g, x, kh, kw, f.ndim == 5),
        ),
        ("H", "gather"): (
            lf._xla_outer_gather,
            lambda g, x, f: lf._xla_outer_gather(g, x, kh, kw, f.ndim == 5),
        ),
        ("H", "reference"): (None, lambda g, x, f: _reference_vjp(x, f, kh, kw)(g)[1]),
    }


def bench_shape(shape, runs):
    b, h, w, c, kh, kw = shape
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (b, h, w, c), jnp.float32)
    f = jax.random.normal(keys[1], (b, h, w, kh * kw), jnp.float32)
    g = jax.random.normal(keys[2], (b, h, w, c), jnp.float32)
    pixels, taps = b * h * w, kh * kw
    # Bytes each op must move: G reads g and f and writes gx; H reads g and x and writes the
    # filter gradient: the same count for both.
    nbytes = 4 * pixels * (2 * c + taps)
    copy = copy_bandwidth(4 * pixels * taps, runs, 2, None)
    bandwidth = copy["bandwidth_Bps"]
    expected = {}
    rows = []
    library = {"G": lf._xla_adjoint, "H": lf._xla_outer_form()}
    for (op, form), (impl, fn) in forms(kh, kw).items():
        compile_s, compiled = _timing.compile_time(jax.jit(fn), g, x, f)
        out = compiled(g, x, f)
        if form == "reference":
            expected[op] = np.asarray(out)
        t = _timing.median_time(compiled, g, x, f, runs=runs)
        rows.append(
            {
                "op": op,
                "form": form,
                "chosen": impl is library[op],
                "compile_s": compile_s,
                **t,
                "vs_roofline": t["median_s"] / (nbytes / bandwidth),
                "_out": out,
            }
        )
    for row in rows:  # Checked after timing: the reference of each op is timed last.
        out = np.asarray(row.pop("_out"))
        np.testing.assert_allclose(out, expected[row["op"]], rtol=1e-4, atol=1e-3)
    return {
        "shape": dict(zip(("B", "H", "W", "C", "kh", "kw"), shape, strict=True)),
        "bytes": nbytes,
        "copy": copy,
        "results": rows,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="256,64,64,1,9,9", help="B,H,W,C,kh,kw;...")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")]
    for shape in shapes:
        if len(shape) != 6:
            parser.error(f"--shapes: each shape is B,H,W,C,kh,kw, got {shape}")
    doc = {
        **_timing.header("local_filter_forms"),
        "shapes": [],
    }
    for shape in shapes:
        print(f"shape {shape}", file=sys.stderr)
        record = bench_shape(shape, args.runs)
        for row in record["results"]:
            print(
                f"  {row['op']} {row['form']:9s} {1e3 * row['median_s']:8.3f} ms "
                f"{row['vs_roofline']:6.2f}x roofline{'  (chosen)' if row['chosen'] else ''}",
                file=sys.stderr,
            )
        doc["shapes"].append(record)
    _timing.emit(doc, args.out)


if __name__ == "__main__":
    main()
