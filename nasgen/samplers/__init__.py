"""The samplers tier: the method registry and every sampler (exact, z3, CNF hashing), the uniformity check, sweeps.

z3 and the hashing packages are imported only by the methods that need them (the ``solver`` and ``samplers``
extras).
"""
