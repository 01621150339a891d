"""The compiled kernel against its plain-Python twin (nasgen.space.backend, nasgen.space.pykernel), and the switch."""

from __future__ import annotations

import bisect

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nasgen.space import pykernel
from nasgen.space import tables as core
from nasgen.space.definition import SearchSpace
from nasgen.space.tables import SpaceTables

from ..conftest import small_spaces

kernel = pytest.importorskip("nasgen.space._kernel", reason="the compiled kernel must be built (pip install .)")


def _both(fn, *args, **kwargs):
    """``fn`` (a nasgen.space.backend function) run on the compiled kernel, then on the plain-Python twin."""
    from nasgen.space import backend

    saved = backend._impl
    try:
        outs = []
        for impl in (kernel, pykernel):
            backend._impl = impl
            outs.append(fn(*args, **kwargs))
        return outs
    finally:
        backend._impl = saved


def _assert_same(a, b):
    if isinstance(a, tuple):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


@st.composite
def restricted_tables(draw, max_size=12):
    """SpaceTables of a random small space, half the time restricted by an absorbed --where atom."""
    from nasgen.constraints.constrained import ConstrainedSpace

    space = draw(small_spaces(max_size=max_size))
    if draw(st.booleans()):
        layer = draw(st.integers(0, space.max_layers - 1))
        dim = draw(st.integers(0, space.dims - 1))
        bound = draw(st.integers(1, 6))
        return ConstrainedSpace(space, [f"k[{layer}][{dim}] <= {bound} or s[{layer}][{dim}] == 2"]).tables
    return SpaceTables(space)


@given(small_spaces(max_size=12))
@settings(max_examples=30)
def test_twin_build_dimension_graph(space):
    from nasgen.space import backend

    rules = core._rules(space)
    pks, pss = core._pool_arrays(space)
    for d in range(space.dims):
        _assert_same(*_both(backend.build_dimension_graph, space.input_shape[d], space.output_shape[d], pks[d],
                            pss[d], rules))


@given(small_spaces(max_size=12, allow_square=True))
@settings(max_examples=30)
def test_twin_joint_edges(space):
    from nasgen.space import backend

    pks, pss = core._pool_arrays(space)
    a, b = _both(backend.joint_edges, space.input_shape, pks, pss, core._rules(space))
    assert a == b


@given(small_spaces(max_size=9))
@settings(max_examples=30)
def test_twin_pairs(space):
    from nasgen.space import backend

    rules = core._rules(space)
    xs, ys = [], []
    for x in range(1, 9):
        for y in range(1, x + 1):
            n, n2 = _both(backend.pair_count, [x], [y], rules)
            assert n == n2
            for j in range(n):
                a, b = _both(backend.pair_at, [x], [y], rules, j)
                assert a == b
            xs.append([x])
            ys.append([y])
    total = sum(backend.pair_count(x, y, rules) for x, y in zip(xs, ys))
    listed = _both(backend.list_pairs, xs, ys, rules, total)
    _assert_same(*listed)
    expected = [backend.pair_at(x, y, rules, j) for x, y in zip(xs, ys) for j in range(backend.pair_count(x, y, rules))]
    assert list(zip(*[a.tolist() for a in listed[0]])) == expected


@given(restricted_tables())
@settings(max_examples=30)
def test_twin_count_and_cumulative_weights(tables):
    from nasgen.space import backend

    s = tables.structure
    for W in (1, 2):
        g = _both(backend.count_table, s.graph, s.ends, tables.space.max_layers, W)
        _assert_same(*g)
        _assert_same(*_both(backend.cumulative_weights, s.graph, g[0][0]))


@given(restricted_tables(), st.integers(0, 2**63))
@settings(max_examples=30)
def test_twin_sample_batch(tables, seed):
    from nasgen.space import backend

    assume(tables.count > 0)
    values, layer_cum, _ = tables.layer_tables()
    space = tables.space
    outs = _both(backend.sample_batch, tables.graph, tables.rules, tables.components, tables.cum, tables.g, values,
                 layer_cum, seed, 25, space.max_layers, space.dims)
    _assert_same(*outs)
    layers, k, s, _ = outs[0]
    bits = _both(backend.encode_bits, layers, k, s, space.bit_width)
    _assert_same(*bits)
    _assert_same(*_both(backend.adjacent_distance_sum, bits[0]))
    _assert_same(*_both(backend.hamming_matrix, bits[0]))


def _two_prepared_draws(backend, prepared, seed):
    """3 draws, then 4 more from the state the first call returned, joined, with the index of the next draw."""
    first = backend.draw_prepared(prepared, (seed, 0), 3)
    second = backend.draw_prepared(prepared, first[3], 4)
    assert second[3] == (seed, 7)
    return tuple(np.concatenate([a, b]) for a, b in zip(first[:3], second[:3])) + (second[3][1],)


@given(restricted_tables(), st.integers(0, 2**63))
@settings(max_examples=20)
def test_prepared_draws_continue_the_stream_of_one_batch(tables, seed):
    # a prepared draw called twice gives what one sample_batch call of both sizes gives, on both twins
    from nasgen.space import backend

    assume(tables.count > 0)
    values, layer_cum, _ = tables.layer_tables()
    space = tables.space
    whole = _both(backend.sample_batch, tables.graph, tables.rules, tables.components, tables.cum, tables.g, values,
                  layer_cum, seed, 7, space.max_layers, space.dims)
    _assert_same(*whole)
    prepared = backend.prepare_draw(tables.graph, tables.rules, tables.components, tables.cum, tables.g, values,
                                    layer_cum, (space.max_layers, space.dims))
    for impl_output in _both(lambda: _two_prepared_draws(backend, prepared, seed)):
        _assert_same(impl_output, whole[0])
    with pytest.raises(ValueError, match="PreparedDraw"):
        backend.draw_prepared(tuple(prepared), (seed, 0), 1)


# Only the spaces with at most 3,000 members are kept (the test unranks all of
# them); some seeds draw six large ones for every small one, which is intended.
@given(restricted_tables())
@settings(max_examples=20, suppress_health_check=[HealthCheck.filter_too_much])
def test_twin_unrank_batch_and_order(tables):
    from nasgen.space import backend

    assume(0 < tables.count <= 3000)
    ranks = list(range(tables.count))
    L_arr, k1, s1 = tables.unrank(ranks)
    C, W = len(tables.components.start), tables.g.shape[2]
    digits = np.zeros((len(ranks), C, W), dtype=np.uint64)
    values, _, prefix = tables.layer_tables()
    for i, rank in enumerate(ranks):
        li = bisect.bisect_right(prefix, rank)
        rest = rank - (prefix[li - 1] if li else 0)
        for c in range(C - 1, -1, -1):
            rest, digit = divmod(rest, tables.chains[c][int(values[li])])
            digits[i, c] = core._limbs(digit, W)
    outs = _both(backend.unrank_batch, tables.graph, tables.rules, tables.components, tables.cum, L_arr, digits,
                 (tables.space.max_layers, tables.space.dims))
    _assert_same(*outs)
    np.testing.assert_array_equal(outs[0][0], k1)
    np.testing.assert_array_equal(outs[0][1], s1)
    # the documented order: by number of layers first; rank inverts unrank, restricted or not
    assert list(L_arr) == sorted(L_arr)
    assert tables.rank(L_arr, k1, s1) == ranks


@given(restricted_tables())
@settings(max_examples=30)
def test_twin_layer_domain_tables(tables):
    from nasgen.space import backend

    feasible = np.zeros(tables.space.max_layers + 1, dtype=bool)
    for L, c in tables.by_layers.items():
        feasible[L] = c > 0
    for start in tables.components.start.tolist():
        _assert_same(*_both(backend.layer_domain_tables, tables.graph, tables.rules, tables.g, start, feasible))


@given(restricted_tables(), st.integers(1, 9), st.integers(1, 4), st.booleans(), st.booleans(), st.integers(-1, 3))
@settings(max_examples=30)
def test_twin_chain_costs(tables, width, in_channels, batch_norm, logits, pool_cost):
    from nasgen.space import backend

    assume(tables.count > 0)
    space = tables.space
    layers, k, s = tables.sample_arrays(min(tables.count, 40), seed=1)
    pools = core._pool_arrays(space)
    pool_k = [p if p else 1 for p in pools[0]]
    options = [width, in_channels, 7, int(batch_norm), int(logits), pool_cost if space.pool else -1,
               int(np.prod(space.output_shape))]
    _assert_same(*_both(backend.chain_costs, layers, k, s, space.input_shape, pool_k, pools[1], options))


def test_backend_names_bad_arrays():
    from nasgen.space import backend

    tables = SpaceTables(SearchSpace((12,), (3,), 1, 2))
    with pytest.raises(ValueError, match="layer_cum"):
        backend.sample_batch(tables.graph, tables.rules, tables.components, tables.cum, tables.g, [1, 2],
                              np.zeros((3, 1), dtype=np.uint64), 0, 3, 2, 1)
    with pytest.raises(ValueError, match="g must be uint64"):
        backend.sample_batch(tables.graph, tables.rules, tables.components, tables.cum, tables.g.astype(np.int64),
                              [1], np.ones((1, 1), dtype=np.uint64), 0, 3, 2, 1)
    with pytest.raises(ValueError, match="graph must be a ChainGraph"):
        backend.count_table(tuple(tables.graph), tables.structure.ends, 2, 1)
    with pytest.raises(ValueError, match="edge_dst must index"):
        backend.make_graph(tables.graph.sizes, tables.graph.edge_ptr, tables.graph.edge_conv,
                            tables.graph.edge_dst + 100, tables.graph.edge_mult)
    with pytest.raises(ValueError, match="kernel must hold integers"):
        backend.encode_bits([1], np.zeros((1, 2, 1)), np.zeros((1, 2, 1), dtype=np.int64), 4)
    with pytest.raises(ValueError, match="ranks must have shape"):
        backend.unrank_batch(tables.graph, tables.rules, tables.components, tables.cum, [1],
                              np.zeros((2, 1, 1), dtype=np.uint64), (2, 1))
    with pytest.raises(ValueError, match="edge_pairs must index"):
        backend.make_graph(tables.graph.sizes, tables.graph.edge_ptr, tables.graph.edge_conv, tables.graph.edge_dst,
                            tables.graph.edge_mult, np.zeros(tables.graph.edges, dtype=np.int64),
                            np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


def test_an_empty_pair_column_means_every_pair_follows_the_rules():
    """edge_pairs of shape (0,) (what build_dimension_graph returns) and an explicit column of -1 agree."""
    from nasgen.space import backend as _backend

    tables = SpaceTables(SearchSpace((40, 28), (6, 5), 1, 3, pool=(2, 1)))
    graph = tables.graph
    assert graph.edge_pairs.shape == (0,)
    minus_one = graph._replace(edge_pairs=np.full(graph.edges, -1, dtype=np.int64))
    values, layer_cum, _ = tables.layer_tables()

    def draw(g, backend):
        if backend is _backend:
            return backend.sample_batch(g, tables.rules, tables.components, tables.cum, tables.g, values,
                                         layer_cum, 11, 50, 3, 2)[:3]
        layers = np.zeros(50, dtype=np.int64)
        k = np.zeros((50, 3, 2), dtype=np.int64)
        s = np.zeros_like(k)
        pykernel.sample_batch(g, tables.rules, tables.components, tables.cum, tables.g, values, layer_cum, 11, 0,
                               layers, k, s)
        return layers, k, s

    reference = draw(minus_one, pykernel)
    assert reference[1].any()
    for g, backend in ((graph, _backend), (graph, pykernel), (minus_one, _backend)):
        for a, b in zip(draw(g, backend), reference):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"edge_pairs must have shape \(\d+,\) or \(0,\)"):
        _backend.make_graph(graph.sizes, graph.edge_ptr, graph.edge_conv, graph.edge_dst, graph.edge_mult,
                            np.full(3, -1, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


def test_pure_python_switch_gives_same_results(tmp_path):
    import subprocess
    import sys

    code = (
        "import nasgen, nasgen.space.backend as b;"
        "s = nasgen.SearchSpace((20, 16), (5, 4), 1, 3, pool=(2, 1));"
        "print(b.COMPILED, nasgen.count(s), [a.to_json() for a in nasgen.SpaceTables(s).sample(5, seed=9)])"
    )
    env_fast = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    import os

    env = dict(os.environ, NASGEN_PURE_PYTHON="1")
    env_slow = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env=env).stdout
    assert env_fast.startswith("True ") and env_slow.startswith("False ")
    assert env_fast.split(" ", 1)[1] == env_slow.split(" ", 1)[1]


def test_import_nasgen_loads_neither_z3_nor_jax():
    import subprocess
    import sys

    code = "import sys, nasgen, nasgen.cli.main; print(sorted(m for m in ('z3', 'jax', 'flax', 'optax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
