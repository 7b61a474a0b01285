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
# # Dynamic filtering, by hand
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/dfn-jax/dfn_jax/blob/main/notebooks/dynamic_filtering.ipynb)
#
# *"In a traditional convolutional layer, the learned filters stay fixed after training. In contrast,
# we introduce a new framework, the Dynamic Filter Network, where filters are generated dynamically
# conditioned on an input."* (De Brabandere, Jia, Tuytelaars and Van Gool, *Dynamic Filter Networks*,
# NIPS 2016.)
#
# A Dynamic Filter Network has two parts: a **filter-generating network** maps an input A to filter
# parameters, and a **dynamic filtering layer** applies those filters to an input B. The layer comes in
# two kinds:
#
# * **dynamic convolution**: one generated filter bank per sample, applied at every position
#   (translation invariant), and
# * **dynamic local filtering**: one generated filter per sample *and per pixel*, like a locally
#   connected layer whose weights are generated. Dynamic convolution is the special case where the
#   filters are shared over space.
#
# This notebook leaves the filter-generating network out and writes the filters by hand, to show what
# the two layers can express: per-pixel shifts, a blur that changes across the image, rotations and
# swirls, oriented edge detectors chosen per sample, and different filters for each colour channel. In
# the paper's words, *"a wide variety of filtering operations can be learned this way, including local
# spatial transformations, but also others like selective (de)blurring or adaptive feature
# extraction."* Everything runs on a CPU in seconds.

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

import jax
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.path import Path
from matplotlib.textpath import TextPath
from matplotlib.transforms import Affine2D

from dfn_jax import ops

# The test suite sets DFN_NOTEBOOK_SMALL=1 to run every notebook on small sizes.
SMALL = os.environ.get("DFN_NOTEBOOK_SMALL") == "1"
SIZE = 64 if SMALL else 96  # image height and width in pixels
print(f"jax {jax.__version__} on {jax.default_backend()}, images {SIZE}x{SIZE}")


def jitted(op, *static_argnames):
    """``op`` compiled once per input shape, returning a NumPy array (for plotting).

    Called eagerly, JAX would compile and dispatch each of the ``k*k`` shifted windows of a filter
    as its own small program; under ``jax.jit`` they fuse into one.
    """
    compiled = jax.jit(op, static_argnames=static_argnames)
    return lambda *args, **kwargs: np.array(compiled(*args, **kwargs))


dynamic_local_filter = jitted(ops.dynamic_local_filter, "kernel_size")
dynamic_convolution = jitted(ops.dynamic_convolution)
filter_flow = jitted(ops.filter_flow, "kernel_size")
flow_to_rgb = jitted(ops.flow_to_rgb, "max_magnitude")

# %% [markdown]
# ## A test image that needs no download
#
# A checkerboard with a disk, a ring, a stroke and some letters: sharp edges in every direction make
# shifts, blurs and rotations easy to see. It is drawn at twice the resolution and averaged down, so
# the edges are anti-aliased. The ops use channels-last layout, a batch `[B, H, W, C]`.
#
# All filters in this notebook are plain NumPy arrays written by hand: they stand in for what a
# filter-generating network would output.


# %%
def make_test_image(size: int) -> np.ndarray:
    """A procedural RGB image ``[size, size, 3]`` in ``[0, 1]``."""
    n = 2 * size  # supersampled
    yy, xx = np.mgrid[0:n, 0:n] + 0.5
    u, v = xx / n, yy / n  # coordinates in [0, 1]
    checker = (np.floor(8 * u) + np.floor(8 * v)) % 2
    image = np.where(checker[..., None] == 1, 0.85, 0.6) * np.ones(3)
    image[(u - 0.3) ** 2 + (v - 0.72) ** 2 < 0.15**2] = (0.9, 0.2, 0.1)  # red disk
    image[np.abs(np.hypot(u - 0.74, v - 0.7) - 0.14) < 0.035] = (0.1, 0.6, 0.25)  # green ring
    image[(np.abs(u + v - 1.05) < 0.03) & (u > 0.45) & (u < 0.95)] = (0.15, 0.3, 0.9)  # blue stroke
    # Letters: glyph outlines filled with the even-odd rule, so that holes (in the D) stay open.
    text = TextPath((0, 0), "DFN", size=1)
    box = text.get_extents()
    to_pixels = (
        Affine2D()
        .translate(-box.x0, -box.y1)
        .scale(0.5 * n / box.width, -0.5 * n / box.width)
        .translate(0.08 * n, 0.1 * n)
    )
    points = np.stack([xx.ravel(), yy.ravel()], axis=-1)
    inside = np.zeros(len(points), bool)
    for polygon in to_pixels.transform_path(text).to_polygons():
        inside ^= Path(polygon).contains_points(points)
    image[inside.reshape(n, n)] = (0.1, 0.1, 0.3)
    return image.reshape(size, 2, size, 2, 3).mean(axis=(1, 3)).astype(np.float32)


rgb = make_test_image(SIZE)  # [H, W, 3]
gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)  # [H, W]
image = gray[None, :, :, None]  # [1, H, W, 1]: a batch of one grayscale image
print("rgb", rgb.shape, "grayscale batch", image.shape)

# %% [markdown]
# Two small helpers: one draws a row of panels, one draws the **colour wheel** that decodes flow
# images. `ops.filter_flow` reads a flow off any set of per-pixel filters: the expected tap offset
# `sum_t f_t * (dx_t, dy_t)` of each pixel's filter, which is how the paper visualises what its video
# model learned. It is a *backward* flow: where each output pixel reads the input from, so it points
# the opposite way to the motion you see. `ops.flow_to_rgb` renders it as HSV: hue is the direction,
# saturation the length, white means no flow. The wheel is `flow_to_rgb` itself applied to a grid of
# offsets; `dy` grows downwards, as image rows do.


# %%
def plot_row(*panels, size=2.6):
    """Draws ``(title, image)`` or ``(title, image, imshow_kwargs)`` panels side by side."""
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels), size + 0.3))
    for ax, (title, img, *kwargs) in zip(np.atleast_1d(axes), panels, strict=True):
        img = np.asarray(img)
        if img.ndim == 3 and img.shape[-1] == 1:
            img = img[..., 0]
        style = dict(cmap="gray", vmin=0.0, vmax=1.0) if img.ndim == 2 else {}
        style.update(*kwargs)
        ax.imshow(np.clip(img, 0, 1) if img.ndim == 3 else img, **style)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    plt.show()


def colour_wheel(radius: float, n: int = 101) -> np.ndarray:
    """``flow_to_rgb`` of a grid of offsets in ``[-radius, radius]^2``, white outside the disk."""
    d = np.linspace(-1.05 * radius, 1.05 * radius, n, dtype=np.float32)
    dx, dy = np.meshgrid(d, d)
    wheel = flow_to_rgb(np.stack([dx, dy], axis=-1), max_magnitude=radius)
    wheel[np.hypot(dx, dy) > radius] = 1.0
    return wheel


def plot_filters(named_filters: dict, kernel_size: int, **style):
    """Draws ``{title: filter [k*k]}`` as ``k x k`` images."""
    style = dict(cmap="magma", vmin=None, vmax=None) | style
    shape = (kernel_size, kernel_size)
    plot_row(*[(t, np.reshape(f, shape), style) for t, f in named_filters.items()], size=2.0)


def wheel_panel(radius: float):
    extent = (-1.05 * radius, 1.05 * radius, 1.05 * radius, -1.05 * radius)
    return (f"legend: (dx, dy), |d| <= {radius:g} px", colour_wheel(radius), dict(extent=extent))


plot_row(("test image", rgb), ("grayscale", gray), wheel_panel(5.0))

# %% [markdown]
# ## 1. Per-pixel shifts: one-hot filters
#
# With dynamic local filtering every pixel gets its own `kh x kw` filter. Tap `t = i*kw + j` of the
# filter at `(y, x)` reads `input[y + i - kh//2, x + j - kw//2]` (zeros outside the image), so a
# **one-hot** filter copies a single neighbour: the output pixel is the input pixel at that offset.
# Different one-hot filters in different regions move different parts of the image in different
# directions, which no convolution can do.
#
# A helper builds per-pixel filters that read the input at `(x + dx, y + dy)` with **bilinear
# interpolation**: four taps around the sampling point, weighted by how close they are. For integer
# offsets the filter is one-hot; the same helper makes the rotations below. Here the image is split
# into four quadrants that move right, down, left and up by 4 pixels: a pinwheel.

# %%
K = 11  # window of the warping filters: offsets up to K // 2 = 5 pixels
RADIUS = K // 2


def bilinear_filters(dx: np.ndarray, dy: np.ndarray, kernel_size: int) -> np.ndarray:
    """Per-pixel filters ``[..., k*k]`` that sample the input at ``(x + dx, y + dy)`` bilinearly."""
    r = kernel_size // 2
    if max(np.max(np.abs(dx)), np.max(np.abs(dy))) > r:
        raise ValueError(
            f"offsets must stay in the {kernel_size}x{kernel_size} window (|d| <= {r})"
        )
    x0, y0 = np.floor(dx), np.floor(dy)
    fx, fy = dx - x0, dy - y0
    taps = np.arange(kernel_size**2)
    filters = np.zeros(np.shape(dx) + (kernel_size**2,), np.float32)
    for oy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
        for ox, wx in ((x0, 1 - fx), (x0 + 1, fx)):
            inside = (np.abs(ox) <= r) & (np.abs(oy) <= r)  # a corner of weight 0 may fall outside
            tap = (oy + r) * kernel_size + (ox + r)
            filters += np.where(inside, wy * wx, 0.0)[..., None] * (taps == tap[..., None])
    return filters


# Motion per quadrant (right, down, left, up); each filter reads from the opposite side.
rows, cols = np.mgrid[0:SIZE, 0:SIZE]
top, left = rows < SIZE // 2, cols < SIZE // 2
quadrant = np.select([top & left, top & ~left, ~top & ~left], [0, 1, 2], default=3)
motion = np.array([[4, 0], [0, 4], [-4, 0], [0, -4]], np.float32)[quadrant]  # [H, W, 2]
shift_filters = bilinear_filters(-motion[..., 0], -motion[..., 1], K)[None]  # [1, H, W, K*K]

shifted = dynamic_local_filter(image, shift_filters, kernel_size=K)
shift_flow = filter_flow(shift_filters, kernel_size=K)  # [1, H, W, 2], equal to -motion
print("filters", shift_filters.shape, "-> output", shifted.shape)
print("every filter is one-hot:", bool(np.all(shift_filters.max(axis=-1) == 1.0)))
plot_row(
    ("input", image[0]),
    ("output: a pinwheel of shifts", shifted[0]),
    ("filter_flow (backward)", flow_to_rgb(shift_flow[0], max_magnitude=RADIUS)),
    wheel_panel(RADIUS),
)

# %% [markdown]
# Read the flow with the wheel: in the top-left quadrant the filters read 4 pixels to the **left**
# (`dx = -4`, cyan), so the content there moves **right**. Along the quadrant borders the output shows
# seams, and black bands where a filter reads from outside the image (zero padding): each pixel only
# looks where its own filter tells it to.
#
# The filters are small images too. The `11 x 11` filters of one pixel in each quadrant:

# %%
quarter = SIZE // 4
centres = [
    (quarter, quarter),
    (quarter, 3 * quarter),
    (3 * quarter, 3 * quarter),
    (3 * quarter, quarter),
]
plot_filters({f"filter at y={y}, x={x}": shift_filters[0, y, x] for y, x in centres}, K)

# %% [markdown]
# ## 2. A blur that changes across the image
#
# The *"selective (de)blurring"* of the abstract: Gaussian filters whose width grows from left to
# right, `sigma` from 0.3 pixels (no blur) to 2.5 pixels, each normalised to sum to one so that the
# brightness is kept. One `9 x 9` filter per pixel.
#
# Their flow is zero everywhere (a white image): a symmetric filter's expected offset is its centre,
# so a blur moves nothing. The flow says *where* a filter reads from, not *how widely*.

# %%
KB = 9
dx_taps, dy_taps = ops.tap_offsets(KB)  # the (dx, dy) offset of every tap, [KB*KB] each
sigma = np.broadcast_to(np.linspace(0.3, 2.5, SIZE, dtype=np.float32), (SIZE, SIZE))  # grows with x
logits = -(dx_taps**2 + dy_taps**2) / (2 * sigma[..., None] ** 2)  # [H, W, KB*KB]
blur_filters = np.exp(logits - logits.max(axis=-1, keepdims=True))
blur_filters = (blur_filters / blur_filters.sum(axis=-1, keepdims=True))[None]  # softmax over taps

blurred = dynamic_local_filter(image, blur_filters, kernel_size=KB)
blur_flow = filter_flow(blur_filters, kernel_size=KB)
print(f"largest flow of a symmetric filter: {np.max(np.abs(blur_flow)):.1e} pixels")
plot_row(
    ("input", image[0]),
    ("output: sigma 0.3 -> 2.5 px", blurred[0]),
    ("filter_flow: zero", flow_to_rgb(blur_flow[0], max_magnitude=RADIUS)),
    wheel_panel(RADIUS),
)
columns = (2, SIZE // 3, 2 * SIZE // 3, SIZE - 3)
plot_filters(
    {f"x={x}, sigma={sigma[0, x]:.1f}": blur_filters[0, SIZE // 2, x] for x in columns}, KB
)

# %% [markdown]
# Writing the Gaussian as a **softmax over the taps** is how the paper normalises the filters of its
# video and stereo models: each output pixel becomes a convex combination of its neighbourhood, and
# the filter flow is the mean of that distribution.
#
# ## 3. Rotation and swirl: smooth warps as local filters
#
# Any warp that moves each pixel by less than the filter radius is a dynamic local filter: work out
# where each output pixel comes from in the input, and put the bilinear weights of that source point
# into the pixel's window. For a **rotation** by `theta` about the centre `c`, output pixel `p` reads
# input point `c + R(-theta)(p - c)`. Pixels far from the centre move the most, so with an `11 x 11`
# window (5 pixels of reach) the angle is small: we take the largest that fits at the corners.
#
# A **swirl** rotates by an angle that decays away from the centre,
# `theta(r) = theta_0 exp(-r^2 / 2 s^2)`; its displacement peaks at `r = s`, so `theta_0` can be
# much larger.


# %%
def rotation_offsets(angle) -> tuple[np.ndarray, np.ndarray]:
    """Offsets ``(dx, dy)`` to the source point of a counter-clockwise rotation by ``angle``
    (radians, a scalar or an ``[H, W]`` map) about the image centre."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) - (SIZE - 1) / 2
    cos, sin = np.cos(angle), np.sin(angle)
    # Rows grow downwards, so turning the content counter-clockwise on screen reads from R(-angle).
    return cos * x - sin * y - x, sin * x + cos * y - y


reach = RADIUS - 0.5  # leave room for the bilinear neighbours
corner = np.sqrt(2) * (SIZE - 1) / 2  # distance from the centre to a corner pixel
theta = 2 * np.arcsin(reach / (2 * corner))  # the largest rotation whose corners stay in reach
s = SIZE / 5
r = np.hypot(*(np.mgrid[0:SIZE, 0:SIZE] - (SIZE - 1) / 2))
theta_0 = reach / (s * np.exp(-0.5))  # r * theta(r) <= reach everywhere
swirl = theta_0 * np.exp(-(r**2) / (2 * s**2))

warps = {}
warp_angles = {
    f"rotation by {np.degrees(theta):.1f} deg": theta,
    f"swirl, theta_0 = {np.degrees(theta_0):.0f} deg": swirl,
}
for name, angle in warp_angles.items():
    dx, dy = rotation_offsets(angle)
    filters = bilinear_filters(dx, dy, K)[None]  # [1, H, W, K*K]
    warps[name] = (dx, dy, filters, dynamic_local_filter(image, filters, kernel_size=K))

for name, (_, _, filters, warped) in warps.items():
    flow = filter_flow(filters, kernel_size=K)[0]
    plot_row(
        ("input", image[0]),
        (f"output: {name}", warped[0]),
        ("filter_flow (backward)", flow_to_rgb(flow, max_magnitude=RADIUS)),
        wheel_panel(RADIUS),
    )

# %% [markdown]
# The rotation's flow runs through every hue around the centre and fades to white there, where pixels
# barely move. Two checks: the expected offset of a bilinear filter is exactly the sampling offset we
# asked for, so `filter_flow` gives back `(dx, dy)`; and the filtered image equals bilinear resampling
# with `jax.scipy.ndimage.map_coordinates`, what a spatial-transformer layer computes, here done with
# nothing but per-pixel filters.

# %%
resample = jitted(jax.scipy.ndimage.map_coordinates, "order", "mode")
y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
for name, (dx, dy, filters, warped) in warps.items():
    flow = filter_flow(filters, kernel_size=K)[0]
    flow_error = np.max(np.abs(flow - np.stack([dx, dy], axis=-1)))
    resampled = resample(gray, [y + dy, x + dx], order=1, mode="constant")
    image_error = np.max(np.abs(resampled - warped[0, ..., 0]))
    print(f"{name}:")
    print(f"  |filter_flow - (dx, dy)|   <= {flow_error:.1e} px")
    print(f"  |output - map_coordinates| <= {image_error:.1e}")

# %% [markdown]
# ## 4. Dynamic convolution: one kernel per sample
#
# Dynamic convolution generates one kernel bank per sample and slides it over the whole image, like an
# ordinary convolution whose weights depend on the input. The paper's first experiment is the
# **steerable filter** toy: a filter-generating network reads an angle `theta` and must output the
# oriented edge detector `cos(theta) G_x + sin(theta) G_y`, built from first-order Gaussian derivative
# filters (`sigma = 1`, `9 x 9`).
#
# Here we build those kernels directly, one angle per sample, for a batch of eight copies of the
# grayscale image (angles go from the x axis towards the y axis, which points down, so 90 degrees
# looks down the image). `ops.dynamic_convolution` takes `kernels [B, kh, kw, C_in, C_out]` and convolves
# every sample with its own kernel in one call (a grouped convolution, no Python loop over the batch).

# %%
KS = 9
dx_taps, dy_taps = ops.tap_offsets(KS)
gaussian = np.exp(-(dx_taps**2 + dy_taps**2) / 2.0)  # sigma = 1
# Derivative-of-Gaussian kernels, scaled to respond with 1 to a ramp of slope 1.
g_x = (dx_taps * gaussian / np.sum(dx_taps**2 * gaussian)).reshape(KS, KS)
g_y = (dy_taps * gaussian / np.sum(dy_taps**2 * gaussian)).reshape(KS, KS)

B = 8
angles = np.arange(B) * np.pi / 4  # one angle per sample
kernels = np.cos(angles)[:, None, None] * g_x + np.sin(angles)[:, None, None] * g_y  # [B, KS, KS]
kernels = kernels[..., None, None].astype(np.float32)  # [B, KS, KS, C_in=1, C_out=1]
batch = np.broadcast_to(image, (B, SIZE, SIZE, 1))  # [B, H, W, 1]

edges = dynamic_convolution(batch, kernels)  # [B, H, W, 1]
print("kernels", kernels.shape, "-> output", edges.shape)

degrees = [f"{np.degrees(a):.0f} deg" for a in angles]
k_max = np.max(np.abs(kernels))
e_max = np.max(np.abs(edges[:, KS:-KS, KS:-KS]))  # the zero-padded border would dominate the scale
plot_filters(
    {f"kernel, {d}": kernels[b] for b, d in enumerate(degrees[:4])},
    KS,
    cmap="RdBu_r",
    vmin=-k_max,
    vmax=k_max,
)
signed = dict(cmap="RdBu_r", vmin=-e_max, vmax=e_max)
plot_row(*[(f"output, {d}", edges[b], signed) for b, d in enumerate(degrees[:4])], size=2.0)

# %% [markdown]
# Each output responds to the edges across its own direction: red where the image gets brighter along
# `theta`, blue where it gets darker. The kernels at 180 to 315 degrees (samples 4 to 7) give the same
# maps with the sign flipped. Because a kernel is linear in `(cos theta, sin theta)`, any angle's
# response is a blend of the two basis responses, which is what makes these filters *steerable*.
#
# Dynamic convolution is dynamic local filtering with the same filter at every pixel: broadcasting
# each sample's kernel to all of its pixels and calling `dynamic_local_filter` gives the same numbers.

# %%
steered = (
    np.cos(angles)[:, None, None, None] * edges[0] + np.sin(angles)[:, None, None, None] * edges[2]
)
print(f"|steered blend - direct response| <= {np.max(np.abs(steered - edges)):.1e}")

per_pixel = np.broadcast_to(kernels.reshape(B, 1, 1, KS * KS), (B, SIZE, SIZE, KS * KS))
local = dynamic_local_filter(batch, per_pixel, kernel_size=KS)
print(f"|dynamic_convolution - dynamic_local_filter| <= {np.max(np.abs(local - edges)):.1e}")

# %% [markdown]
# ## 5. A different filter for every colour channel
#
# The paper applies each pixel's filter to all channels of the input, and its original code only
# handled up to three channels. `ops.dynamic_local_filter` also takes **per-channel** filters,
# `filters [B, H, W, C, kh*kw]`, so each channel of each pixel can be filtered differently.
#
# An example a camera lens produces: **lateral chromatic aberration**. The lens magnifies red a little
# more than green, and blue a little less, so colour fringes appear at edges and grow towards the
# corners. As per-channel filters: red reads from a point slightly closer to the centre (magnified),
# blue from a point slightly further out, green stays put. Then we undo it with the opposite filters.

# %%
KC = 7
y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) - (SIZE - 1) / 2
scale = (KC // 2 - 0.5) / corner  # the radial offset reaches KC // 2 - 0.5 pixels at the corners
magnify = np.array([-scale, 0.0, scale])  # red, green, blue: read inwards, in place, outwards


def aberration_filters(sign: float) -> np.ndarray:
    """Per-channel filters ``[1, H, W, 3, KC*KC]`` moving each channel radially by ``sign * magnify``."""
    per_channel = [bilinear_filters(sign * m * x, sign * m * y, KC) for m in magnify]
    return np.stack(per_channel, axis=-2)[None]


lens = aberration_filters(+1.0)
aberrated = dynamic_local_filter(rgb[None], lens, kernel_size=KC)
restored = dynamic_local_filter(aberrated, aberration_filters(-1.0), kernel_size=KC)
flows = filter_flow(lens, kernel_size=KC)[0]  # [H, W, 3, 2]: one flow per channel
print("filters", lens.shape, "-> output", aberrated.shape)

crop = slice(SIZE // 2, SIZE)  # the bottom-right quarter, where the fringes are widest
plot_row(
    ("input", rgb),
    ("output: chromatic aberration", aberrated[0]),
    ("output, bottom-right quarter", aberrated[0, crop, crop]),
    ("undone by the opposite filters", restored[0, crop, crop]),
)
plot_row(
    ("red channel's flow (inwards)", flow_to_rgb(flows[:, :, 0], max_magnitude=KC // 2)),
    ("green channel's flow (none)", flow_to_rgb(flows[:, :, 1], max_magnitude=KC // 2)),
    ("blue channel's flow (outwards)", flow_to_rgb(flows[:, :, 2], max_magnitude=KC // 2)),
    wheel_panel(KC // 2),
)
inner = (slice(KC, SIZE - KC), slice(KC, SIZE - KC))  # away from the zero padding
print(f"mean |aberrated - input| = {np.mean(np.abs(aberrated[0] - rgb)[inner]):.4f}")
print(f"mean |restored - input|  = {np.mean(np.abs(restored[0] - rgb)[inner]):.4f}")

# %% [markdown]
# The coloured bands along the border are the zero padding: a channel whose filter reads from
# outside the image gets zeros there. Inside, the restoration is close but not exact: sampling
# bilinearly twice blurs sharp edges a little. A trained filter-generating network would output
# whatever filters undo the lens best.
#
# ## Where the filters come from
#
# Here every filter was written by hand. In a Dynamic Filter Network a filter-generating network
# outputs them from its own input (previous video frames, an angle, a left stereo image), usually with
# a softmax over the taps, and the whole model is trained end to end through `dynamic_local_filter` or
# `dynamic_convolution`: both ops are differentiable in their inputs and in their filters. The paper's
# video model, for example, predicts a `9 x 9` softmax filter for every pixel of the next Moving MNIST
# frame, and its filter flow shows how the digits move.
