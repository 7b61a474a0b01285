"""The static hypernetwork (HyperNetworks v4 Sec. 3.1) against a hand-computed factorisation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dfn_jax.layers.hyper import GeneratedKernel, StaticHyperNetwork
from dfn_jax.models import count_params
from dfn_jax.models.hypernet import MNISTConvNet, MNISTNetConfig, mnist_net


class _Dense(nnx.Module):
    """Dense layers of different widths (4 -> 8 -> 4), a BatchNorm and a conv-free head."""

    def __init__(self, rngs):
        self.a = nnx.Linear(4, 8, rngs=rngs)
        self.norm = nnx.BatchNorm(8, rngs=rngs)
        self.b = nnx.Linear(8, 4, rngs=rngs)

    def __call__(self, x):
        return self.b(jax.nn.relu(self.norm(self.a(x))))


def _by_hand(hyper, z):
    """K[kh, kw, i, o] tile by tile, slice by slice, with explicit loops (the paper's equations:
    a_i = W_i z + B_i, K_i = <W_out, a_i> + B_out)."""
    w_in, b_in = np.asarray(hyper.w_in[...]), np.asarray(hyper.b_in[...])
    w_out, b_out = np.asarray(hyper.w_out[...]), np.asarray(hyper.b_out[...])
    kh, kw = hyper.kernel_size
    tile_in, tile_out = hyper.tile
    kernels, t = {}, 0
    for name in hyper.layers:
        shape = hyper.generate()[name].shape
        n_in, n_out = shape[-2:]
        full = np.zeros((kh, kw, n_in, n_out), np.float32)
        for r in range(n_in // tile_in):
            for c in range(n_out // tile_out):
                for i in range(tile_in):
                    a = w_in[i] @ z[t] + b_in[i]  # [d]
                    k_i = (a @ w_out + b_out).reshape(kh, kw, tile_out)
                    full[:, :, r * tile_in + i, c * tile_out : (c + 1) * tile_out] = k_i
                t += 1
        kernels[name] = full.reshape(shape)
    return kernels


def test_mnist_parameter_counts_match_the_paper():
    conventional = mnist_net(MNISTNetConfig(hypernetwork=False), rngs=nnx.Rngs(0))
    hyper = mnist_net(MNISTNetConfig(), rngs=nnx.Rngs(0))
    assert count_params(conventional) == 21_210
    assert count_params(hyper) == 12_910
    own = sum(
        v.size for k, v in nnx.to_pure_dict(nnx.state(hyper, nnx.Param)).items() if k != "main"
    )
    assert own == 4_240 + 4  # the hypernetwork (W_i 4x64, B_i 64, W_out 4x784, B_out 784) + z
    assert hyper.generate()["conv2"].shape == (7, 7, 16, 16)


def test_generated_conv_kernel_equals_the_factorisation_by_hand():
    hyper = mnist_net(MNISTNetConfig(features=4, kernel_size=3, z_dim=3), rngs=nnx.Rngs(1))
    z = np.asarray(jax.random.normal(jax.random.key(2), (1, 3)))
    hyper.b_in[...] = jax.random.normal(jax.random.key(3), hyper.b_in[...].shape)
    hyper.b_out[...] = jax.random.normal(jax.random.key(4), hyper.b_out[...].shape)
    np.testing.assert_allclose(
        hyper.generate(z)["conv2"], _by_hand(hyper, z)["conv2"], rtol=1e-5, atol=1e-6
    )


def test_tiles_of_a_basic_kernel_build_layers_of_different_widths():
    hyper = StaticHyperNetwork(_Dense(nnx.Rngs(0)), ["a", "b"], z_dim=2, tile=4, rngs=nnx.Rngs(1))
    assert hyper.num_embeddings == 2 + 2  # 4x8 = 1x2 tiles, 8x4 = 2x1 tiles
    kernels = hyper.generate()
    assert kernels["a"].shape == (4, 8) and kernels["b"].shape == (8, 4)
    z = np.asarray(hyper.embeddings[...])
    for name, expected in _by_hand(hyper, z).items():
        np.testing.assert_allclose(kernels[name], expected, rtol=1e-5, atol=1e-6)
    # Only the hypernetwork's parameters and the biases/norm of the main network are trained.
    assert isinstance(hyper.main.a.kernel, GeneratedKernel)
    # biases 8 + 4, norm 8 + 8; W_i 4x2x2, B_i 4x2, W_out 2x4, B_out 4; 4 embeddings of 2.
    assert count_params(hyper) == (8 + 4) + (8 + 8) + (4 * 2 * 2 + 4 * 2 + 2 * 4 + 4) + 4 * 2


def test_runs_under_jit_grad_and_vmap_and_as_plain_main_params():
    model = mnist_net(MNISTNetConfig(), rngs=nnx.Rngs(0))
    images = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(p):
        return jnp.sum(nnx.merge(graphdef, p, rest)(images) ** 2)

    eager = model(images)
    chex.assert_trees_all_close(
        jax.jit(lambda p: nnx.merge(graphdef, p, rest)(images))(params), eager, rtol=1e-5, atol=1e-5
    )
    grads = nnx.to_pure_dict(jax.grad(loss)(params))
    for name in ("embeddings", "w_in", "b_in", "w_out", "b_out"):
        assert np.any(np.asarray(grads[name]) != 0), name
    assert "kernel" not in grads["main"]["conv2"]  # generated, not a parameter
    # Several networks at once: one embedding each.
    zs = jax.random.normal(jax.random.key(1), (5, 1, 4))
    outs = jax.vmap(lambda z: model(images, embeddings=z))(zs)
    assert outs.shape == (5, 3, 10) and not np.allclose(outs[0], outs[1])
    assert jax.vmap(model.generate)(zs)["conv2"].shape == (5, 7, 7, 16, 16)
    # The parameter pytree runs the original, unmodified network.
    plain = MNISTConvNet(MNISTNetConfig(), rngs=nnx.Rngs(7))
    plain_def, _, plain_rest = nnx.split(plain, nnx.Param, ...)
    chex.assert_trees_all_close(
        nnx.merge(plain_def, model.main_params(), plain_rest)(images), eager, rtol=1e-5, atol=1e-5
    )


def test_batch_statistics_of_the_main_network_update_through_the_wrapper():
    hyper = StaticHyperNetwork(_Dense(nnx.Rngs(0)), ["a", "b"], tile=4, rngs=nnx.Rngs(1))
    before = np.asarray(hyper.main.norm.mean[...])
    hyper(jax.random.normal(jax.random.key(0), (16, 4)))
    assert not np.allclose(before, hyper.main.norm.mean[...])
    assert isinstance(hyper.main.a.kernel, GeneratedKernel)
    np.testing.assert_array_equal(hyper.main.a.kernel[...], 0.0)  # placeholders stay constant


@pytest.mark.parametrize(
    "layers,kwargs,match",
    [
        (["nope"], {}, "has no layer 'nope'"),
        (["norm"], {}, "has no `kernel` parameter"),
        ([], {}, "non-empty sequence"),
        (["a", "a"], {}, "names a layer twice"),
        (["a", "b"], {}, r"not multiples of the tile \(4, 8\)"),
        (["a"], {"z_dim": 0}, "`z_dim` must be a positive int"),
        (["a"], {"kernel_norm": "batch"}, "`kernel_norm` must be one of"),
    ],
)
def test_bad_arguments_name_what_is_wrong(layers, kwargs, match):
    with pytest.raises(ValueError, match=match):
        StaticHyperNetwork(_Dense(nnx.Rngs(0)), layers, rngs=nnx.Rngs(1), **kwargs)


def test_embeddings_of_the_wrong_shape_are_rejected():
    hyper = mnist_net(MNISTNetConfig(), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"`embeddings` must have shape \(1, 4\)"):
        hyper.generate(jnp.ones((2, 4)))


def test_standardized_kernels_have_he_statistics_per_output_channel():
    main = MNISTConvNet(MNISTNetConfig(), rngs=nnx.Rngs(0))
    hyper = StaticHyperNetwork(main, ["conv2"], kernel_norm="standardize", rngs=nnx.Rngs(1))
    z = jax.random.normal(jax.random.key(2), (1, 4)) * 3.0 + 1.0
    kernel = np.asarray(hyper.generate(z)["conv2"]).reshape(-1, 16)  # [7*7*16, out]
    np.testing.assert_allclose(kernel.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(kernel.std(0), np.sqrt(2.0 / kernel.shape[0]), rtol=1e-3)
    plain = StaticHyperNetwork(_Dense(nnx.Rngs(0)), ["a"], rngs=nnx.Rngs(1))
    assert plain.kernel_norm == "none"
    np.testing.assert_allclose(plain.generate()["a"], _by_hand(plain, plain.embeddings[...])["a"],
                               rtol=1e-5, atol=1e-6)  # fmt: skip
