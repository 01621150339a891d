"""The networks tier: the jax-free model spec and analytic statistics (``spec``, ``summary``), then the Flax models.

Only ``nasgen.nn.models`` imports jax and Flax (the ``train`` extra).
"""
