"""The training tier (jax, Flax, optax, orbax; the ``train`` extra): the mixture, its compiled step, runs, data,
checkpoints, reports and the paper's experiments."""
