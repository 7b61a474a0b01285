"""The procedural road scene behind the driving stand-ins: random scene parameters from a key and
a renderer that draws the scene from any camera position, 2x2 supersampled.

The scene is a perspective ground plane (textured asphalt with solid edge lines and a dashed centre
line on a slightly curved road, textured verges), a sky with clouds and a tree line on the horizon,
roadside posts and one or two cars, all fading into haze with distance. :func:`render` also
returns the inverse depth, from which the stereo stand-in gets its exact disparity. The stand-ins
themselves (:func:`dfn_jax.data.driving.highway_standin_sequences` and
:func:`dfn_jax.data.driving.stereo_standin_pairs`) are in :mod:`dfn_jax.data.driving`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_SUPERSAMPLE = 2
_NUM_POSTS = 6  # per side of the road
_POST_SPACING = 12.0  # metres between posts
_NUM_CARS = 2
_NEAREST = 1.0  # objects closer than this (metres) are culled


def _value_noise(grid: jax.Array, u: jax.Array, v: jax.Array) -> jax.Array:
    """Periodic smooth value noise: ``grid [G, G]`` interpolated (smoothstep) at ``(u, v)``."""
    g = grid.shape[0]
    u0, v0 = jnp.floor(u), jnp.floor(v)
    fu, fv = u - u0, v - v0
    fu, fv = fu * fu * (3.0 - 2.0 * fu), fv * fv * (3.0 - 2.0 * fv)
    i0 = jnp.mod(u0.astype(jnp.int32), g)
    j0 = jnp.mod(v0.astype(jnp.int32), g)
    i1, j1 = jnp.mod(i0 + 1, g), jnp.mod(j0 + 1, g)
    top = grid[j0, i0] * (1.0 - fu) + grid[j0, i1] * fu
    bottom = grid[j1, i0] * (1.0 - fu) + grid[j1, i1] * fu
    return top * (1.0 - fv) + bottom * fv - 0.5


def _fractal(grid, u, v, octaves: int = 3):
    return sum(
        _value_noise(grid, u * 2.0**o + 7.3 * o, v * 2.0**o + 3.1 * o) / 2.0**o
        for o in range(octaves)
    )


def _ground_texture(grid, lateral, along, footprint, cell: float, octaves: int = 4):
    """Fractal value noise on the ground plane, octave ``o`` of cell ``cell / 2**o`` metres,
    each faded out where it gets finer than the pixel footprint (no aliasing shimmer)."""
    total = 0.0
    for o in range(octaves):
        size = cell / 2.0**o
        weight = jnp.clip(size / footprint - 1.0, 0.0, 1.0)
        total = total + weight * _value_noise(grid, lateral / size + 5.1 * o, along / size) / (
            1.0 + 0.5 * o
        )
    return total


def scene(key: jax.Array, image_size: int) -> dict:
    """Random parameters of one road scene (all scalars/arrays, so it vmaps)."""
    # One draw sliced into every parameter: each jax.random call compiles its own threefry, and
    # thirty of them took seconds to compile on CPU.
    draws = jax.random.uniform(key, (64 + 4 * 32 * 32,))
    used = [0]

    def u(lo, hi, shape=()):
        n = int(np.prod(shape))
        start = used[0]
        used[0] += n
        assert used[0] <= 64
        return lo + (hi - lo) * draws[start : start + n].reshape(shape)

    s = float(image_size)
    side = jnp.array([-1.0] * _NUM_POSTS + [1.0] * _NUM_POSTS)
    return {
        "horizon": u(0.32, 0.40) * s,
        "focal": u(0.65, 0.8) * s,
        "height": u(1.2, 1.6),
        "half_road": u(3.6, 4.4),
        "curvature": u(-0.004, 0.004),
        "asphalt": u(0.3, 0.5),
        "verge": u(0.15, 0.4),
        "marking": u(0.75, 0.95),
        "haze": u(0.6, 0.85),
        "sky_top": u(0.45, 0.9),
        "fog": u(25.0, 60.0),
        "dash_phase": u(0.0, 10.0),
        "nearest": jnp.float32(_NEAREST),
        "grids": draws[64:].reshape(4, 32, 32),
        "motion": u(0.0, 1.0, (6,)),  # for the caller: camera motion, exposure
        "tree_line": u(1.0, 5.0) * s / 64.0,
        "tree_grey": u(0.1, 0.3),
        # Roadside posts: lateral position, phase along the road, size and grey.
        "post_x": side * (u(5.0, 7.0) + u(-0.3, 0.3, (2 * _NUM_POSTS,))),
        "post_phase": u(0.0, _POST_SPACING, (2,)),
        "post_width": u(0.15, 0.4, (2,)),
        "post_height": u(1.0, 3.0, (2,)),
        "post_grey": u(0.6, 0.95, (2,)),
        # Cars ahead: lane (-1 or +1), distance, speed relative to the camera, size, grey.
        "car_lane": jnp.where(u(0.0, 1.0, (_NUM_CARS,)) < 0.5, -1.0, 1.0),
        "car_z": u(6.0, 30.0, (_NUM_CARS,)),
        "car_speed": u(-0.15, 0.15, (_NUM_CARS,)),
        "car_visible": jnp.concatenate([jnp.ones(1), (u(0.0, 1.0, (_NUM_CARS - 1,)) < 0.6)]),
        "car_width": u(1.6, 2.0, (_NUM_CARS,)),
        "car_height": u(1.3, 1.9, (_NUM_CARS,)),
        "car_grey": u(0.05, 0.95, (_NUM_CARS,)),
    }


def render(p: dict, x, y, *, cam_x, cam_z, t):
    """Renders scene ``p`` at continuous pixel coordinates ``(x, y)`` (pixel ``i`` spans
    ``[i, i+1)``) from a camera at lateral ``cam_x`` and forward ``cam_z`` (metres), at time
    ``t`` (frames; moves the cars). Returns ``(grey, inverse depth 1/z; 0 at infinity)``."""
    width = x.shape[-1] / _SUPERSAMPLE
    cx = width / 2.0
    f, h, yh = p["focal"], p["height"], p["horizon"]
    haze = p["haze"]
    grids = p["grids"]

    # Sky, clouds and a tree line at infinity (no parallax, no motion).
    sky_t = jnp.clip(y / yh, 0.0, 1.0)
    sky = p["sky_top"] * (1.0 - sky_t) + haze * sky_t
    sky = sky + 0.12 * (1.0 - sky_t) * _fractal(grids[3], x / 12.0, y / 5.0, 2)
    tree_top = yh - p["tree_line"] * (1.0 + 1.6 * _value_noise(grids[3], x / 3.0 + 50.0, 0.0))
    trees = p["tree_grey"] + 0.1 * _value_noise(grids[2], x / 1.5, y / 1.5)
    grey = jnp.where(y >= tree_top, trees, sky)
    inv_z = jnp.zeros_like(grey)

    # Ground plane below the horizon.
    dy = jnp.maximum(y - yh, 1e-3)
    z = f * h / dy  # distance ahead
    lateral = (x - cx) * z / f + cam_x - p["curvature"] * z * z
    along = z + cam_z
    # Metres per pixel on the ground; octaves finer than about a pixel are faded out (LOD).
    footprint = jnp.maximum(z * z / (f * h), z / f)
    on_road = jnp.abs(lateral) < p["half_road"]
    asphalt = p["asphalt"] + 0.16 * _ground_texture(grids[0], lateral, along, footprint, 0.8)
    verge = p["verge"] + 0.3 * _ground_texture(grids[1], lateral, along, footprint, 1.2)
    ground = jnp.where(on_road, asphalt, verge)
    edge = jnp.abs(jnp.abs(lateral) - (p["half_road"] - 0.25)) < 0.1
    dash = (jnp.abs(lateral) < 0.08) & (jnp.mod(along + p["dash_phase"], 9.0) < 3.0)
    ground = jnp.where(edge | dash, p["marking"], ground)
    below = y > yh
    grey = jnp.where(below, ground, grey)
    inv_z = jnp.where(below, 1.0 / z, inv_z)
    depth = jnp.where(below, z, jnp.inf)

    # Upright objects, painted far to near: posts (periodic along the road) and cars.
    period = _NUM_POSTS * _POST_SPACING
    n = jnp.arange(2 * _NUM_POSTS) % _NUM_POSTS
    post_side = jnp.arange(2 * _NUM_POSTS) // _NUM_POSTS
    post_z = _NEAREST + jnp.mod(
        n * _POST_SPACING + p["post_phase"][post_side] - cam_z - _NEAREST, period
    )
    car_z = p["car_z"] + p["car_speed"] * t
    obj_z = jnp.concatenate([post_z, jnp.where(p["car_visible"] > 0, car_z, -1.0)])
    obj_x = jnp.concatenate([p["post_x"], p["car_lane"] * 1.8 + p["curvature"] * car_z * car_z])
    obj_w = jnp.concatenate([p["post_width"][post_side], p["car_width"]])
    obj_h = jnp.concatenate([p["post_height"][post_side], p["car_height"]])
    obj_grey = jnp.concatenate([p["post_grey"][post_side], p["car_grey"]])
    # A dark band on each object: the cars' rear window, the posts' reflector strip.
    band = jnp.concatenate(
        [
            jnp.full((2 * _NUM_POSTS, 2), jnp.array([0.8, 0.9])),
            jnp.tile(jnp.array([[0.55, 0.85]]), (_NUM_CARS, 1)),
        ]
    )
    objects = jnp.stack([obj_z, obj_x, obj_w, obj_h, obj_grey, band[:, 0], band[:, 1]], axis=1)
    objects = objects[jnp.argsort(-obj_z)]

    def paint(i, canvas):
        grey, inv_z, depth = canvas
        zo, xo, wo, ho, go, b0, b1 = (objects[i, c] for c in range(7))
        valid = zo > p["nearest"]
        zo = jnp.maximum(zo, _NEAREST)
        u_obj = (x - cx) * zo / f + cam_x - xo  # metres from the object's centre
        v_obj = h - (y - yh) * zo / f  # metres above the ground
        inside = valid & (jnp.abs(u_obj) < wo / 2) & (v_obj > 0) & (v_obj < ho)
        rel = v_obj / ho
        tone = jnp.where((rel > b0) & (rel < b1), 0.15, go)
        tone = tone + 0.06 * _value_noise(grids[2], u_obj / 0.15 + 3.7 * xo, v_obj / 0.15)
        return (
            jnp.where(inside, tone, grey),
            jnp.where(inside, 1.0 / zo, inv_z),
            jnp.where(inside, zo, depth),
        )

    grey, inv_z, depth = jax.lax.fori_loop(0, objects.shape[0], paint, (grey, inv_z, depth))

    fade = jnp.exp(-jnp.where(jnp.isfinite(depth), depth, 1e3) / p["fog"])
    grey = jnp.where(jnp.isfinite(depth), haze + (grey - haze) * fade, grey)
    return grey, inv_z


def pixel_grid(image_size: int):
    """Supersampled pixel-centre coordinates ``x, y`` of an ``image_size`` square image."""
    offsets = (jnp.arange(image_size * _SUPERSAMPLE) + 0.5) / _SUPERSAMPLE
    return jnp.meshgrid(offsets, offsets)  # x, y: [S*H, S*W]


def downsample(image: jax.Array, image_size: int) -> jax.Array:
    """Averages a supersampled image back down to ``image_size`` square."""
    s = _SUPERSAMPLE
    return image.reshape(image_size, s, image_size, s).mean(axis=(1, 3))
