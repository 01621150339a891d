"""The space tier (numpy only): the data model, the exact tables and their kernel, encoding and Adj_T, files.

Nothing here imports z3 or jax; every other tier builds on it.
"""
