"""Dynamic Filter Network experiments (De Brabandere et al. 2016): the binding files that pair
each model of :mod:`dfn_jax.models.dfn` with its data and loss for the shared trainer."""
