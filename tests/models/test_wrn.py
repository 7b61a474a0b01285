"""Wide residual networks and Hyper Residual Networks (HyperNetworks v4 Sec. 4.2, Table 2)."""

import jax
import numpy as np
import pytest
from flax import nnx

from dfn_jax.layers.hyper import GeneratedKernel, StaticHyperNetwork
from dfn_jax.models import count_params
from dfn_jax.models.hypernet import WideResNet, WRNConfig, wide_resnet

# (depth, width, hypernetwork): (our exact count, Table 2's rounded count, allowed difference)
TABLE_2 = {
    (40, 1, False): (563_930, 563_000, 0.002),
    (40, 2, False): (2_243_546, 2_236_000, 0.004),
    (28, 10, False): (36_479_194, 36_480_000, 0.0001),
    (40, 1, True): (97_770, 97_000, 0.01),
    (40, 2, True): (155_626, 148_000, 0.06),  # about 7,500 more in the non-generated layers
}


@pytest.mark.parametrize("depth,width,hyper", list(TABLE_2))
def test_parameter_counts_against_table_2(depth, width, hyper):
    ours, paper, tolerance = TABLE_2[depth, width, hyper]
    config = WRNConfig(depth=depth, width=width, hypernetwork=hyper)
    model = nnx.eval_shape(lambda: wide_resnet(config, rngs=nnx.Rngs(0)))  # shapes only
    assert count_params(model) == ours
    assert abs(ours - paper) / paper < tolerance


def test_hyper_wrn_is_the_plain_network_minus_its_kernels_plus_the_hypernetwork():
    plain = nnx.eval_shape(lambda: WideResNet(WRNConfig(width=1), rngs=nnx.Rngs(0)))
    config = WRNConfig(width=1, hypernetwork=True)
    hyper = nnx.eval_shape(lambda: wide_resnet(config, rngs=nnx.Rngs(0)))
    assert isinstance(hyper, StaticHyperNetwork) and len(hyper.layers) == 36
    assert hyper.tile == (16, 16) and hyper.z_dim == 64
    kernels = sum(np.prod(hyper._placeholder(name).shape) for name in hyper.layers)
    hypernetwork = 16 * 64 * 64 + 16 * 64 + 64 * 144 + 144  # W_i, B_i, W_out, B_out: 75,920
    # 12 layers of 1 tile, 2 + 11 x 4, 8 + 11 x 16: 242 embeddings of 64.
    assert hyper.num_embeddings == 242
    assert count_params(plain) - kernels + hypernetwork + 242 * 64 == count_params(hyper)
    for name in hyper.layers:
        assert isinstance(hyper._placeholder(name), GeneratedKernel)


@pytest.mark.parametrize("hyper", [False, True])
def test_forward_under_jit_and_grad_updates_batch_statistics(hyper):
    model = wide_resnet(WRNConfig(depth=10, width=2, hypernetwork=hyper), rngs=nnx.Rngs(0))
    images = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    @jax.jit
    def loss(params, rest):
        module = nnx.merge(graphdef, params, rest)
        logits = module(images)
        return jax.numpy.mean(logits**2), nnx.state(module, nnx.Not(nnx.Param))

    (value, new_rest), grads = jax.value_and_grad(loss, has_aux=True)(params, rest)
    assert np.isfinite(value)
    leaves = [np.asarray(g) for g in jax.tree.leaves(grads)]
    assert all(np.all(np.isfinite(g)) for g in leaves) and any(np.any(g != 0) for g in leaves)
    norm = "main" if hyper else None
    before = nnx.to_pure_dict(rest)
    after = nnx.to_pure_dict(new_rest)
    path = (lambda d: d[norm]) if norm else (lambda d: d)
    assert not np.allclose(path(before)["bn"]["mean"], path(after)["bn"]["mean"])
    model.eval()
    assert model(images).shape == (4, 10)


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="`depth` must be 6n"):
        WRNConfig(depth=28 + 1)
    with pytest.raises(ValueError, match="`kernel_norm`"):
        WRNConfig(kernel_norm="batch")
    with pytest.raises(ValueError, match="`batch_norm_momentum`"):
        WRNConfig(batch_norm_momentum=1.0)
    with pytest.raises(ValueError, match=r"`images` must have shape \[B, H, W, 3\]"):
        WideResNet(WRNConfig(depth=10), rngs=nnx.Rngs(0))(np.zeros((1, 8, 8, 1), np.float32))
