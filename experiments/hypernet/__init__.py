"""HyperNetworks experiments (Ha, Dai, Le, arXiv 1609.09106 v4): the binding files that pair each
model of :mod:`dfn_jax.models.hypernet` with its data and loss for the shared trainer."""
