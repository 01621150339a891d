"""Shared test helpers: Hypothesis profiles and an independent brute-force enumerator."""

from __future__ import annotations

import itertools
import os
import signal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from nasgen.space.definition import Architecture, SearchSpace


@pytest.fixture
def terminal_sigint():
    """Python's own Ctrl-C handler for one test, as a terminal's Ctrl-C finds it.

    Started from a script in the background (``pytest &``), the tests
    inherit SIGINT ignored, and so would every process they start (an
    ignored signal survives exec, a handled one does not).
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def run_cli(*args, stdin: bytes | None = None) -> tuple[int, str, str]:
    """``nasgen ARGS`` in this process through ``main(argv)``: (exit code, stdout, stderr).

    argparse's SystemExit (errors, --help, --version) becomes its code; any
    other exception propagates and fails the test. ``stdin`` feeds ``-``.
    """
    import contextlib
    import io
    import sys

    from nasgen.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()

settings.register_profile("dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def brute_force_chains(space: SearchSpace, dim: int, size: int, layers: int):
    """Every per-dimension chain (list of (k, s)) of exactly ``layers`` layers from ``size`` to O_dim.

    Written from the definition only: try every allowed pair, apply conv then pool.
    """
    if layers == 0:
        return [[]] if size == space.output_shape[dim] else []
    out = []
    for k, s in space.layer_pairs(size):
        nxt = space.apply_layer(size, k, s, dim)
        if nxt is None:
            continue
        for rest in brute_force_chains(space, dim, nxt, layers - 1):
            out.append([(k, s)] + rest)
    return out


def brute_force_space(space: SearchSpace) -> set[Architecture]:
    """The whole space by brute force (small spaces only)."""
    archs = set()
    for L in range(space.min_layers, space.max_layers + 1):
        if space.square:
            for layers in _square_chains(space, tuple(space.input_shape), L):
                archs.add(Architecture(kernel=[[k] * space.dims for k, _ in layers],
                                       stride=[[s] * space.dims for _, s in layers]))
            continue
        per_dim = [brute_force_chains(space, d, space.input_shape[d], L) for d in range(space.dims)]
        for combo in itertools.product(*per_dim):
            archs.add(Architecture(kernel=[[combo[d][l][0] for d in range(space.dims)] for l in range(L)],
                                   stride=[[combo[d][l][1] for d in range(space.dims)] for l in range(L)]))
    return archs


def _square_chains(space: SearchSpace, sizes: tuple, layers: int):
    if layers == 0:
        return [[]] if sizes == space.output_shape else []
    out = []
    for k, s in space.layer_pairs(min(sizes)):
        nxt = tuple(space.apply_layer(x, k, s, d) for d, x in enumerate(sizes))
        if None in nxt:
            continue
        for rest in _square_chains(space, nxt, layers - 1):
            out.append([(k, s)] + rest)
    return out


@st.composite
def small_spaces(draw, max_dims=3, max_size=14, max_layers=3, allow_square=True):
    """Random small search spaces covering every option."""
    dims = draw(st.integers(1, max_dims))
    inp = [draw(st.integers(2, max_size)) for _ in range(dims)]
    out = [draw(st.integers(1, i)) for i in inp]
    n = draw(st.integers(1, max_layers))
    big_n = draw(st.integers(n, max_layers))
    pool = draw(st.sampled_from([None, (2, 1), (1, 1), (2, 2)]))
    if pool is not None and pool[0] > min(inp):
        pool = None
    kernel_range = draw(st.sampled_from([None, (1, 3), (2, 5)]))
    stride_range = draw(st.sampled_from([None, (1, 1), (1, 2), (2, 3)]))
    return SearchSpace(
        input_shape=inp,
        output_shape=out,
        min_layers=n,
        max_layers=big_n,
        pool=pool,
        rounding=draw(st.sampled_from(["exact", "floor"])),
        relation=draw(st.sampled_from(["gt", "ge", "any"])),
        kernel_range=kernel_range,
        stride_range=stride_range,
        square=allow_square and dims > 1 and draw(st.booleans()),
    )

