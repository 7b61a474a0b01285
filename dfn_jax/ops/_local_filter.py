"""Dynamic local filtering: one generated filter per sample and per pixel.

Contract (De Brabandere et al. 2016, Sec. 3.2, and the authors' Theano code):

* ``inputs``: ``[B, H, W, C]`` (or ``[H, W, C]`` unbatched), any floating dtype.
* ``filters``: ``[B, H, W, kh*kw]``, one filter per pixel shared by all channels (the paper), or
  ``[B, H, W, C, kh*kw]``, one filter per pixel and channel.
* Tap ``t = i * kw + j`` reads ``inputs[y + i - kh//2, x + j - kw//2]`` (row-major over the window,
  cross-correlation), with zeros outside the image.
* Returns ``[B, H, W, C]``: ``out[b, y, x, c] = sum_t filters[b, y, x, (c,) t] * window_t``.

Implementations, selected by ``implementation=``:

* ``"reference"``: vmapped per-pixel patch extraction (``lax.dynamic_slice`` of a ``kh x kw`` window
  at every pixel, then a dot with that pixel's filter). Short and obviously correct; it materialises
  the ``[B, H, W, kh*kw, C]`` patch tensor, so use it for tests, not training.
* ``"fast"`` (default): three ops closed under differentiation (below), each a C++ kernel (an XLA
  FFI custom call, ``dfn_jax/ops/_cpu_kernels``, compiled on first use) when the computation runs
  on CPU, and the fused XLA code of ``"xla"`` otherwise: on GPU/TPU, for kernels larger than 64 in
  either direction, or when the C++ library cannot be built (no compiler, or
  ``DFN_JAX_CPU_KERNEL=0``: then a warning says so, once).
* ``"xla"``: the same three ops written as fused XLA code on every backend.

The three ops, with offsets ``o_t = (i - kh//2, j - kw//2)``, zero padding and pixels ``p, q``:

* ``F(x, f)[p, c] = sum_t f[p, (c,) t] * x[p + o_t, c]``: the filter itself;
* ``G(g, f)[q, c] = sum_t f[q - o_t, (c,) t] * g[q - o_t, c]``: its adjoint in ``x`` (the input
  gradient);
* ``H(g, x)[p, (c,) t] = g[p, c] * x[p + o_t, c]``, summed over ``c`` for shared filters: the filter
  gradient. Shared filters stay ``[B, H, W, T]`` throughout, never broadcast over channels.

Each is a ``jax.custom_vjp`` whose backward pass calls the other two, so gradients of any order
stay on the fast path: ``F``: ``dx = G(ct, f)``, ``df = H(ct, x)``; ``G``: ``dg = F(ct, f)``,
``df = H(g, ct)``; ``H``: ``dg = F(x, ct)``, ``dx = G(g, ct)``. None of them keeps a patch tensor.
The backward passes compute only the cotangents of the differentiated arguments (JAX's symbolic
zeros tell them which): filters applied to data never pay for the input gradient. When ``F``
needs both, one C++ kernel computes ``G`` and ``H`` in a single pass over memory.
Forward-mode differentiation (``jax.jvp``) is not supported, as for any ``custom_vjp``.

The XLA versions: ``F`` and ``G`` are sums over the ``kh*kw`` statically shifted windows, which
XLA fuses into one loop that reads every operand once; ``H`` is written one window row (``kw``
taps) at a time in a ``fori_loop`` on the CPU (stacking all taps made XLA keep ``kh*kw`` separate
buffers and, inside a recurrent model, made compile times explode); on other backends ``H`` is the
reference's transpose in the filters, one gather of the windows (8x faster than the rows on an
H200: docs/BENCHMARKS.md). The C++ kernels read or write the large
per-pixel-tap operand once, in memory order, vectorised over the taps of a window row (or over
the channels, for filters shared by many channels), on the intra-op thread pool; see the
source's header. Which one runs is decided when the function is traced
(``jax.default_backend() == "cpu"``). The kernels support ``jax.vmap`` (extra leading axes are
batch axes). The SPMD partitioner knows nothing about custom calls and would replicate them over
a sharded batch (correct, but every device computing everything); when a context mesh is set
(``jax.set_mesh``, as the trainer does), each kernel call runs under ``shard_map`` on its device's
rows of the batch instead.

Arithmetic happens in float32 whatever the input dtype (the kernels get float32 copies of other
dtypes; the XLA code upcasts inside its fused loop); the output has the promoted dtype of
``inputs`` and ``filters``, and gradients have the dtypes of the arguments.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero
from jax.sharding import PartitionSpec as P

from dfn_jax._src import checks as _checks
from dfn_jax.ops import _cpu_kernels

IMPLEMENTATIONS = _checks.FILTER_IMPLEMENTATIONS

# Largest kernel height and width the C++ kernels take (see kMaxRows, kMaxChunks there).
_MAX_KERNEL_SIZE = 64


def dynamic_local_filter(
    inputs: jax.Array,
    filters: jax.Array,
    *,
    kernel_size: int | Sequence[int],
    implementation: str = "fast",
) -> jax.Array:
    """Applies a different ``kh x kw`` filter at every pixel of every sample.

    Args:
      inputs: ``[B, H, W, C]`` or ``[H, W, C]`` floating array.
      filters: ``[B, H, W, kh*kw]`` (shared over channels) or ``[B, H, W, C, kh*kw]`` (per
        channel); without the leading ``B`` when ``inputs`` is unbatched.
      kernel_size: odd ``k`` or ``(kh, kw)``, e.g. ``9``, ``(11, 11)`` or ``(1, 13)``.
      implementation: ``"fast"`` (default: C++ kernels on CPU, fused XLA elsewhere), ``"xla"``
        (fused XLA everywhere) or ``"reference"`` (per-pixel patches, for tests).

    Returns:
      ``[B, H, W, C]`` (``[H, W, C]`` if unbatched) filtered image.
    """
    x, f, kh, kw, unbatched = _canonical_local_filter_args(inputs, filters, kernel_size)
    _checks.choice(implementation, IMPLEMENTATIONS, name="implementation")
    out = _apply(x, f, kh=kh, kw=kw, implementation=implementation)
    return out[0] if unbatched else out


@functools.partial(jax.jit, static_argnames=("kh", "kw", "implementation"))
def _apply(x, f, *, kh, kw, implementation):
    # Jitted here so that eager calls compile one program, not one per tap.
    if implementation == "reference":
        out = _local_filter_reference(x, f, kh, kw)
    else:
        out = _filter(x, f, kh, kw, implementation, f.ndim == 5)
    return out.astype(jnp.result_type(x.dtype, f.dtype))


def _canonical_local_filter_args(inputs, filters, kernel_size):
    """Validates; returns ``x [B,H,W,C]``, ``f [B,H,W,T]`` or ``[B,H,W,C,T]``, kh, kw, unbatched."""
    kh, kw = _checks.kernel_size_pair(kernel_size)
    taps = kh * kw
    x = _checks.floating_array(inputs, name="inputs")
    f = _checks.floating_array(filters, name="filters")
    _checks.rank(x, (3, 4), name="inputs", layout="[B, H, W, C] or [H, W, C]")
    unbatched = x.ndim == 3
    lead = "" if unbatched else "B, "
    expected = f"[{lead}H, W, {taps}] or [{lead}H, W, C, {taps}] (kh*kw = {kh}*{kw} = {taps} taps)"
    _checks.rank(f, (x.ndim, x.ndim + 1), name="filters", layout=expected)
    if unbatched:
        x, f = x[None], f[None]
    b, h, w, c = x.shape
    per_channel = f.ndim == 5
    if f.shape[-1] != taps:
        raise ValueError(
            f"`filters` must have kh*kw = {taps} taps in its last axis for kernel_size "
            f"{(kh, kw)}, got shape {tuple(filters.shape)}; expected {expected}."
        )
    want = (b, h, w, c, taps) if per_channel else (b, h, w, taps)
    if f.shape != want:
        shown_want = want[1:] if unbatched else want
        raise ValueError(
            f"`filters` shape {tuple(filters.shape)} does not match `inputs` shape "
            f"{tuple(inputs.shape)}: expected {shown_want} (same batch, height, width"
            f"{', channels' if per_channel else ''} as `inputs`)."
        )
    return x, f, kh, kw, unbatched


# --------------------------------------------------------------------------------------------
# Reference: vmapped per-pixel patch extraction.


def _local_filter_reference(x, f, kh, kw):
    b, h, w, c = x.shape
    xp = jnp.pad(x.astype(jnp.float32), ((0, 0), (kh // 2,) * 2, (kw // 2,) * 2, (0, 0)))
    f = f.astype(jnp.float32)

    def pixel(image, pixel_filter, y, x_):
        # The kh x kw window whose top-left corner in padded coordinates is (y, x_).
        patch = lax.dynamic_slice(image, (y, x_, 0), (kh, kw, c)).reshape(kh * kw, c)
        if pixel_filter.ndim == 1:  # One filter for all channels.
            # [T] @ [T, C] -> [C], exact in float32 on every backend (no TF32 on GPUs).
            return jnp.matmul(pixel_filter, patch, precision=lax.Precision.HIGHEST)
        return jnp.sum(pixel_filter.T * patch, axis=0)  # [T, C] * [T, C] -> [C]

    per_column = jax.vmap(pixel, in_axes=(None, 0, None, 0))
    per_row = jax.vmap(per_column, in_axes=(None, 0, 0, None))
    per_sample = jax.vmap(per_row, in_axes=(0, 0, None, None))
    return per_sample(xp, f, jnp.arange(h), jnp.arange(w))


# --------------------------------------------------------------------------------------------
# Fast: the ops F, G and H, each differentiated by the other two. Every op returns float32;
# cotangents are cast back to the dtypes of the arguments.


def _use_cpu_kernel(implementation, kh, kw):
    """Trace-time dispatch: the C++ kernels for ``"fast"`` on CPU, when they could be built."""
    return (
        implementation == "fast"
        and max(kh, kw) <= _MAX_KERNEL_SIZE
        and jax.default_backend() == "cpu"
        and _cpu_kernels.available()
    )


def _per_device(call, *arrays):
    """``call(*arrays)`` on each device's rows of the batch when a context mesh is set
    (``jax.set_mesh``, as the trainer does) and the batch divides over it.

    The SPMD partitioner knows nothing about custom calls and would replicate them (every device
    gathering and computing the whole batch); ``shard_map`` over all mesh axes on the batch axis
    keeps the work split. Inputs sharded otherwise are resharded to match, so the result is the
    same either way.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1 or arrays[0].shape[0] % mesh.size:
        return call(*arrays)
    spec = P(mesh.axis_names)
    return jax.shard_map(call, in_specs=(spec,) * len(arrays), out_specs=spec)(*arrays)


def _call_kernel(target, out_shapes, arrays, kh, kw):
    """The C++ kernel ``target`` on float32 copies of ``arrays``; ``out_shapes(*arrays)`` gives
    the result shape, or a tuple of them, from the arrays as each device sees them."""

    def kernel(*arrays):
        shapes = out_shapes(*arrays)
        if isinstance(shapes[0], int):
            result = jax.ShapeDtypeStruct(shapes, jnp.float32)
        else:
            result = tuple(jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes)
        call = jax.ffi.ffi_call(target, result, vmap_method="broadcast_all")
        return call(*arrays, kh=np.int64(kh), kw=np.int64(kw))

    return _per_device(kernel, *(a.astype(jnp.float32) for a in arrays))


def _outer_shape(g, taps, per_channel):
    return g.shape + (taps,) if per_channel else g.shape[:-1] + (taps,)


def _op(target, xla_impl, out_shape, vjp):
    """One of F, G, H: ``op(a, b, kh, kw, implementation, per_channel) -> float32``.

    ``target``: the C++ kernel's FFI name; ``xla_impl(a, b, kh, kw, per_channel)``: the XLA
    version; ``out_shape(a, taps, per_channel)``; ``vjp(a, b, ct, static, need_a, need_b) ->
    (da, db)`` in terms of the other ops, with ``static = (kh, kw, implementation,
    per_channel)``, computing only the cotangents asked for (``None`` for the others).
    """

    @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
    def op(a, b, kh, kw, implementation, per_channel):
        if _use_cpu_kernel(implementation, kh, kw):
            shape = lambda a, b: out_shape(a, kh * kw, per_channel)
            return _call_kernel(target, shape, (a, b), kh, kw)
        return xla_impl(a, b, kh, kw, per_channel)

    def fwd(a, b, *static):
        # With symbolic zeros, JAX says which arguments are differentiated (e.g. not the data
        # that a network filters), so the backward pass computes only their cotangents. The two
        # flags travel to it as the static shape of an empty array.
        needs = jnp.zeros((0, int(a.perturbed), int(b.perturbed)), jnp.bool_)
        return op(a.value, b.value, *static), (a.value, b.value, needs)

    def bwd(kh, kw, implementation, per_channel, residuals, ct):
        a, b, needs = residuals
        if isinstance(ct, SymbolicZero):
            return None, None
        _, need_a, need_b = needs.shape
        static = (kh, kw, implementation, per_channel)
        da, db = vjp(a, b, ct, static, bool(need_a), bool(need_b))
        return (
            None if da is None else da.astype(a.dtype),
            None if db is None else db.astype(b.dtype),
        )

    op.defvjp(fwd, bwd, symbolic_zeros=True)
    return op


def _pair(need_a, make_a, need_b, make_b):
    """``(make_a(), make_b())``, with ``None`` for the one not needed."""
    return (make_a() if need_a else None), (make_b() if need_b else None)


def _filter_vjp(x, f, ct, static, need_x, need_f):
    if need_x and need_f:
        return _backward(ct, x, f, *static)
    return _pair(need_x, lambda: _adjoint(ct, f, *static), need_f, lambda: _outer(ct, x, *static))


# F(x, f): the forward pass.
_filter = _op(
    "dfn_jax_local_filter",
    lambda x, f, kh, kw, _: _xla_filter(x, f, kh, kw),
    lambda x, taps, per_channel: x.shape,
    _filter_vjp,
)
# G(g, f): the adjoint of F in x (its input gradient).
_adjoint = _op(
    "dfn_jax_local_filter_adjoint",
    lambda g, f, kh, kw, _: _xla_adjoint(g, f, kh, kw),
    lambda g, taps, per_channel: g.shape,
    lambda g, f, ct, static, need_g, need_f: _pair(
        need_g, lambda: _filter(ct, f, *static), need_f, lambda: _outer(g, ct, *static)
    ),
)
# H(g, x): the filter gradient, [B, H, W, T] (summed over channels) or [B, H, W, C, T].
_outer = _op(
    "dfn_jax_local_filter_outer",
    lambda g, x, kh, kw, per_channel: _xla_outer(g, x, kh, kw, per_channel),
    _outer_shape,
    lambda g, x, ct, static, need_g, need_x: _pair(
        need_g, lambda: _filter(x, ct, *static), need_x, lambda: _adjoint(g, ct, *static)
    ),
)


def _separate_backward(ct, x, f, *static):
    return _adjoint(ct, f, *static), _outer(ct, x, *static)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _backward(ct, x, f, kh, kw, implementation, per_channel):
    """Both gradients of F, ``(G(ct, f), H(ct, x))``: one C++ kernel on CPU, which streams the
    filter gradient out while it reads the filters; the two ops elsewhere. Differentiated as the
    two ops."""
    if _use_cpu_kernel(implementation, kh, kw):
        shapes = lambda ct, x, f: (ct.shape, f.shape)
        return _call_kernel("dfn_jax_local_filter_backward", shapes, (ct, x, f), kh, kw)
    return _separate_backward(ct, x, f, kh, kw, implementation, per_channel)


def _backward_fwd(ct, x, f, *static):
    return _backward(ct, x, f, *static), (ct, x, f)


def _backward_bwd(kh, kw, implementation, per_channel, residuals, cts):
    static = (kh, kw, implementation, per_channel)
    _, vjp = jax.vjp(lambda *args: _separate_backward(*args, *static), *residuals)
    return vjp(cts)


_backward.defvjp(_backward_fwd, _backward_bwd)


# --------------------------------------------------------------------------------------------
# The XLA versions, chosen by measurement on XLA CPU (benchmarks/dynamic_filter.py): see the
# module docstring.


def _pad_hw(a, ph, pw):
    pads = [(0, 0)] * a.ndim
    pads[1], pads[2] = (ph, ph), (pw, pw)
    return jnp.pad(a, pads)


def _window(a, top, left, h, w):
    """``a[:, top:top+h, left:left+w]`` with static bounds."""
    return lax.slice_in_dim(lax.slice_in_dim(a, top, top + h, axis=1), left, left + w, axis=2)


def _tap(f, t):
    """Tap ``t`` of ``f [B, H, W, T]`` (as ``[B, H, W, 1]``) or of ``f [B, H, W, C, T]``."""
    return f[..., t, None] if f.ndim == 4 else f[..., t]


def _xla_filter(x, f, kh, kw):
    """``F``: the sum of the ``kh*kw`` shifted windows times their taps."""
    _, h, w, _ = x.shape
    xp = _pad_hw(x.astype(jnp.float32), kh // 2, kw // 2)
    f = f.astype(jnp.float32)
    out = None
    for i in range(kh):
        for j in range(kw):
            term = _tap(f, i * kw + j) * _window(xp, i, j, h, w)
            out = term if out is None else out + term
    return out


def _xla_adjoint(g, f, kh, kw):
    """``G``: ``gx[y'] = sum_t (f_t * g)[y' - (i - ph)]``, each product shifted back, zero padded.

    Pads one tap's filter slice at a time: padding the whole filter tensor would materialise it.
    """
    _, h, w, _ = g.shape
    ph, pw = kh // 2, kw // 2
    gp = _pad_hw(g.astype(jnp.float32), ph, pw)
    gx = None
    for i in range(kh):
        for j in range(kw):
            top, left = 2 * ph - i, 2 * pw - j
            f_tap = _pad_hw(_tap(f, i * kw + j).astype(jnp.float32), ph, pw)
            term = _window(f_tap, top, left, h, w) * _window(gp, top, left, h, w)
            gx = term if gx is None else gx + term
    return gx


def _xla_outer(g, x, kh, kw, per_channel):
    """``H``, in the form measured fastest on the backend (benchmarks/local_filter_forms.py):
    ``_xla_outer_rows`` on CPU, ``_xla_outer_gather`` elsewhere (on an H200 at 256x64x64x1 9x9:
    0.29 ms against 2.43 ms, 2.0x and 16.5x the copy roofline; docs/BENCHMARKS.md)."""
    return _xla_outer_form()(g, x, kh, kw, per_channel)


def _xla_outer_form():
    """The XLA form of ``H`` used on the default backend (read by the benchmark too)."""
    return _xla_outer_rows if jax.default_backend() == "cpu" else _xla_outer_gather


def _xla_outer_gather(g, x, kh, kw, per_channel):
    """``H`` as the transpose, in the filters, of the reference's per-pixel product with its
    window: XLA lowers the windows to one gather and multiplies each by ``g`` as it reads it.
    The filters only give the transpose its shape (their values do not enter it)."""
    f_shape = _outer_shape(g, kh * kw, per_channel)
    f = jnp.zeros(f_shape, jnp.float32)
    _, vjp = jax.vjp(lambda f: _local_filter_reference(x, f, kh, kw), f)
    return vjp(g.astype(jnp.float32))[0]


def _xla_outer_rows(g, x, kh, kw, per_channel):
    """``H``: ``gf[..., t] = g * window_t(x)`` (summed over channels if shared), one window row of
    ``kw`` taps per ``fori_loop`` step."""
    _, h, w, _ = g.shape
    g = g.astype(jnp.float32)
    xp = _pad_hw(x.astype(jnp.float32), kh // 2, kw // 2)
    shape = _outer_shape(g, kh * kw, per_channel)

    def row(i, gf):
        x_row = lax.dynamic_slice_in_dim(xp, i, h, axis=1)  # [B, H, W + 2pw, C]
        taps = []
        for j in range(kw):
            prod = g * x_row[:, :, j : j + w]
            taps.append(prod if per_channel else jnp.sum(prod, axis=-1))
        return lax.dynamic_update_slice_in_dim(gf, jnp.stack(taps, -1), i * kw, axis=len(shape) - 1)

    return lax.fori_loop(0, kh, row, jnp.zeros(shape, jnp.float32))
