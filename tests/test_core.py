"""The exact counter, sampler and enumerator against brute force and against the plain-Python twin."""

from __future__ import annotations

import bisect
import functools
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import stats

import nasgen
from nasgen.space import pykernel
from nasgen.space import tables as core
from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.space.definition import Architecture, SearchSpace, check_membership

from .conftest import brute_force_chains, brute_force_space, small_spaces

kernel = pytest.importorskip("nasgen.space._kernel", reason="the compiled kernel must be built (pip install .)")


# -- the public examples of the spec ------------------------------------------------


def test_public_examples():
    assert nasgen.count(SearchSpace((30,), (20,), 2, 2)) == 9
    assert nasgen.count(SearchSpace((30, 30), (20, 20), 2, 2)) == 81
    assert nasgen.count_by_layers(SearchSpace((30,), (20,), 2, 5, pool=(2, 1))) == {2: 7, 3: 15, 4: 10, 5: 1}
    assert nasgen.count_by_layers(SearchSpace((30,) * 3, (20,) * 3, 2, 5, pool=(2, 1))) == {
        2: 343, 3: 3375, 4: 1000, 5: 1}


def test_figure4_counts_depend_on_difference_only():
    # The paper's Figure 4: with n = N = 2 the 1-D count is I - O - 1, and K-D is its K-th power.
    for diff in range(2, 11):
        for dims in (1, 2, 3):
            space = SearchSpace((30,) * dims, (30 - diff,) * dims, 2, 2)
            assert nasgen.count(space) == (diff - 1) ** dims


# -- counting and enumeration against brute force ----------------------------------


@given(small_spaces())
def test_enumeration_equals_brute_force(space):
    # keep the brute force affordable: bound the product of per-dimension chain counts, found by brute force too
    bound = sum(
        int(np.prod([len(brute_force_chains(space, d, space.input_shape[d], L)) for d in range(space.dims)]))
        for L in range(space.min_layers, space.max_layers + 1)
    )
    assume(bound <= 20000)
    expected = brute_force_space(space)
    listed = list(nasgen.enumerate_architectures(space))
    assert len(listed) == len(set(listed)), "enumeration repeated an architecture"
    assert set(listed) == expected
    assert nasgen.count(space) == len(expected)
    by_layers = Counter(a.layers for a in expected)
    assert nasgen.count_by_layers(space) == {L: by_layers.get(L, 0) for L in range(space.min_layers,
                                                                                   space.max_layers + 1)}


@given(small_spaces(), st.integers(0, 2**32))
def test_samples_are_members(space, seed):
    if nasgen.count(space) == 0:
        with pytest.raises(NasgenError, match="empty"):
            nasgen.sample(space, 3, seed=seed)
        return
    for arch in nasgen.sample(space, 20, seed=seed):
        check_membership(space, arch)
        # an independent shape computation agrees
        assert arch.shapes(space)[-1] == space.output_shape


def _memo_count(space: SearchSpace, dim: int):
    """Pure-Python memoised DP over every (k, s) pair: the independent big-number reference."""

    @functools.lru_cache(maxsize=None)
    def chains(size: int, layers: int) -> int:
        if layers == 0:
            return int(size == space.output_shape[dim])
        total = 0
        for k, s in space.layer_pairs(size):
            nxt = space.apply_layer(size, k, s, dim)
            if nxt is not None and nxt >= space.output_shape[dim]:
                total += chains(nxt, layers - 1)
        return total

    return chains


@pytest.mark.parametrize(
    "space",
    [
        SearchSpace((32,), (1,), 1, 40, relation="any", rounding="floor"),
        SearchSpace((48, 40), (2, 3), 1, 12, relation="ge"),
    ],
)
def test_counts_beyond_64_bits_are_exact(space):
    refs = [_memo_count(space, d) for d in range(space.dims)]
    expected = {L: int(np.prod([r(space.input_shape[d], L) for d, r in enumerate(refs)], dtype=object))
                for L in range(space.min_layers, space.max_layers + 1)}
    assert max(expected.values()) >= 2**64, "this case is meant to overflow 64 bits"
    assert nasgen.count_by_layers(space) == expected
    # sampling and unranking still work in multi-limb arithmetic
    for arch in nasgen.sample(space, 50, seed=7):
        check_membership(space, arch)
    total = nasgen.count(space)
    last = core.architecture_at(space, total - 1)
    check_membership(space, last)


def test_large_real_space_counts_match_reference():
    space = SearchSpace((224, 224), (7, 7), 1, 5)
    ref = _memo_count(SearchSpace((224,), (7,), 1, 5), 0)
    expected = sum(ref(224, L) ** 2 for L in range(1, 6))
    assert nasgen.count(space) == expected > 10**18


def test_memory_guard():
    with pytest.raises(NasgenError, match="GiB"):
        nasgen.count(SearchSpace((200_000,), (1,), 1, 3))


# -- exact sampling ----------------------------------------------------------------


def test_sampler_is_uniform_chi_square():
    space = SearchSpace((14, 9), (4, 3), 1, 3, pool=(2, 1), relation="ge")
    members = list(nasgen.enumerate_architectures(space))
    assert 200 <= len(members) <= 600
    index = {a: i for i, a in enumerate(members)}
    draws = 40 * len(members)
    counts = np.bincount([index[a] for a in nasgen.sample(space, draws, seed=12345)], minlength=len(members))
    # H0: uniform; a fixed seed makes this deterministic; level 0.001.
    assert stats.chisquare(counts).pvalue > 1e-3
    # the same statistic rejects a mildly skewed sampler (the test has power)
    skew = counts.copy()
    skew[: len(skew) // 4] += 10
    assert stats.chisquare(skew).pvalue < 1e-3


def test_same_seed_same_samples_and_chunking_does_not_matter():
    space = SearchSpace((64, 48), (5, 4), 1, 4)
    a = core.sample_arrays(space, 5000, seed=3)
    b = [np.concatenate(p) for p in zip(*core.iter_sample_arrays(space, 5000, seed=3, chunk=333))]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = core.sample_arrays(space, 5000, seed=4)
    assert not np.array_equal(a[1], c[1])


@pytest.mark.parametrize("samples", [10, 150, 400, 1000])
def test_without_replacement_distinct_and_complete(samples):
    space = SearchSpace((20, 12), (6, 4), 1, 2, rounding="floor")
    total = nasgen.count(space)
    assert 200 < total < 1000
    archs = nasgen.sample(space, samples, seed=1, replace=False)
    assert len(archs) == min(samples, total)
    assert len(set(archs)) == len(archs)
    for a in archs:
        check_membership(space, a)
    if samples >= total:
        assert set(archs) == set(nasgen.enumerate_architectures(space))


def test_without_replacement_is_uniform_over_first_draw():
    # The first of M distinct draws must itself be uniform.
    space = SearchSpace((12,), (3,), 1, 3)
    members = list(nasgen.enumerate_architectures(space))
    index = {a: i for i, a in enumerate(members)}
    firsts = [index[nasgen.sample(space, 2, seed=s, replace=False)[0]] for s in range(30 * len(members))]
    assert stats.chisquare(np.bincount(firsts, minlength=len(members))).pvalue > 1e-3


# -- domains for the solver ----------------------------------------------------


@given(small_spaces(max_layers=3))
@settings(max_examples=25)
def test_layer_domains_are_exactly_the_values_on_some_chain(space):
    domains = nasgen.layer_domains(space)
    seen = [[(set(), set(), set()) for _ in range(space.dims)] for _ in range(space.max_layers)]
    for arch in brute_force_space(space):
        shapes = arch.shapes(space)
        for l in range(arch.layers):
            for d in range(space.dims):
                sizes_in, pairs, sizes_out = seen[l][d]
                sizes_in.add(shapes[l][d])
                pairs.add((arch.kernel[l][d], arch.stride[l][d]))
                sizes_out.add(shapes[l + 1][d])
    for l in range(space.max_layers):
        for d in range(space.dims):
            dom = domains[l][d]
            sizes_in, pairs, sizes_out = seen[l][d]
            assert dom.sizes_in == sizes_in
            assert dom.sizes_out == sizes_out
            if not space.square:
                assert dom.pairs == pairs
            else:
                assert pairs <= dom.pairs


# -- Adj_T and bit-vectors -------------------------------------------------------


def test_bit_vector_layout_by_hand():
    space = SearchSpace((30,), (20,), 2, 3)  # B = 5, length 3*1*2*5 + 3 = 33
    arch = Architecture(kernel=[[5], [7]], stride=[[1], [1]])
    bits = "".join(str((int(w) >> i) & 1) for w in nasgen.encode(space, [arch])[0] for i in range(64))[:33]
    expected = "10100" + "10000" + "11100" + "10000" + "00000" + "00000" + "110"
    assert bits == expected
    assert space.vector_bits == 33


def test_adj_t_hand_computed():
    space = SearchSpace((30,), (20,), 2, 2)
    a = Architecture(kernel=[[5], [7]], stride=[[1], [1]])  # k=5: 10100, k=7: 11100
    b = Architecture(kernel=[[7], [5]], stride=[[1], [1]])
    c = Architecture(kernel=[[2], [10]], stride=[[1], [1]])  # 2: 01000, 10: 01010
    # d(a,b) = 1 + 1 = 2; d(b,c) = popcount(11100^01000) + popcount(10100^01010) = 2 + 4 = 6;
    # d(a,c) = popcount(10100^01000) + popcount(11100^01010) = 3 + 3 = 6
    assert nasgen.adj_t(space, [a, b]) == 2.0
    assert nasgen.adj_t(space, [a, b, c]) == (2 + 6) / 2
    assert nasgen.adj_t(space, [a]) == 0.0
    assert nasgen.adj_t(space, []) == 0.0
    h = nasgen.hamming_matrix(space, [a, b, c])
    np.testing.assert_array_equal(h, [[0, 2, 6], [2, 0, 6], [6, 6, 0]])


def test_inactive_layers_are_zero_and_activation_bits_count_layers():
    space = SearchSpace((30,), (20,), 1, 3)
    one = Architecture(kernel=[[11]], stride=[[1]])
    vec = nasgen.encode(space, [one])[0]
    bits = [(int(vec[p // 64]) >> (p % 64)) & 1 for p in range(space.vector_bits)]
    assert bits[-3:] == [1, 0, 0]
    assert sum(bits[10:30]) == 0


def test_encode_refuses_foreign_architecture():
    space = SearchSpace((30,), (20,), 1, 2)
    with pytest.raises(ArchitectureError):
        nasgen.encode(space, [Architecture(kernel=[[3], [3], [3]], stride=[[1], [1], [1]])])


# -- compiled kernel == plain-Python twin -----------------------------------------


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
    return core.SpaceTables(space)


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


# Only the spaces with at most 3,000 members are kept (the test unranks all of
# them); some seeds draw six large ones for every small one, which is intended.
@given(restricted_tables())
@settings(max_examples=20, suppress_health_check=[HealthCheck.filter_too_much])
def test_twin_unrank_batch_and_order(tables):
    from nasgen.space import backend

    assume(0 < tables.count <= 3000)
    ranks = list(range(tables.count))
    L_arr, k1, s1 = core._unrank(tables, ranks)
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
                 tables.space.max_layers, tables.space.dims)
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

    tables = core.SpaceTables(SearchSpace((12,), (3,), 1, 2))
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
                              np.zeros((2, 1, 1), dtype=np.uint64), 2, 1)
    with pytest.raises(ValueError, match="edge_pairs must index"):
        backend.make_graph(tables.graph.sizes, tables.graph.edge_ptr, tables.graph.edge_conv, tables.graph.edge_dst,
                            tables.graph.edge_mult, np.zeros(tables.graph.edges, dtype=np.int64),
                            np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))



def test_an_empty_pair_column_means_every_pair_follows_the_rules():
    """edge_pairs of shape (0,) (what build_dimension_graph returns) and an explicit column of -1 agree."""
    from nasgen.space import backend as _backend

    tables = core.SpaceTables(SearchSpace((40, 28), (6, 5), 1, 3, pool=(2, 1)))
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
        pykernel.sample_batch(g, tables.rules, tables.components, tables.cum, tables.g, values, layer_cum, 11,
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
        "print(b.COMPILED, nasgen.count(s), [a.to_json() for a in nasgen.sample(s, 5, seed=9)])"
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


def test_sample_memory_guard():
    with pytest.raises(NasgenError, match="GiB"):
        core.sample_arrays(SearchSpace((30,), (20,), 1, 3), 10**12)
