"""Package-private helpers every floor of dfn_jax may use (argument checks); imports nothing of
ours, so ops, layers, models, data and training can all depend on it."""
