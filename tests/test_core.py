"""The exact counter, sampler and enumerator against brute force and against the plain-Python twin."""

from __future__ import annotations

import functools
from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

import nasgen
from nasgen import _pykernel, core
from nasgen.space import Architecture, ArchitectureError, NasgenError, SearchSpace, check_membership

from .conftest import brute_force_chains, brute_force_space, small_spaces

kernel = pytest.importorskip("nasgen._kernel", reason="the compiled kernel must be built (pip install .)")


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


def _graph_of(space):
    compiled = core.SpaceTables(space)
    return compiled


@given(small_spaces(max_size=12), st.integers(0, 2**63))
@settings(max_examples=30)
def test_kernel_equals_twin(space, seed):
    rules = core._rules(space)
    pk = space.pool[0] if space.pool else (0, 1)
    for size in set(space.input_shape):
        got = kernel.build_dimension_graph(size, space.output_shape[0], pk[0], pk[1], rules)
        want = _pykernel.build_dimension_graph(size, space.output_shape[0], pk[0], pk[1], rules)
        for x, y in zip(got, want):
            np.testing.assert_array_equal(x, y)
    if space.dims > 1:
        x = np.array(space.input_shape, dtype=np.int64)
        pks = np.array([p[0] for p in space.pool] if space.pool else [0] * space.dims, dtype=np.int64)
        pss = np.array([p[1] for p in space.pool] if space.pool else [1] * space.dims, dtype=np.int64)
        assert kernel.joint_edges(x, pks, pss, rules) == _pykernel.joint_edges(x, pks, pss, rules)
    compiled = core.SpaceTables(space)
    sizes, edge_ptr, conv, dst, mult, cum = compiled.graph
    ends = np.flatnonzero(compiled.g[0, :, 0])
    for W in (1, 2):
        g1, o1 = kernel.count_table(edge_ptr, dst, mult, ends, space.max_layers, W)
        g2, o2 = _pykernel.count_table(edge_ptr, dst, mult, ends, space.max_layers, W)
        np.testing.assert_array_equal(g1, g2)
        assert o1 == o2
        np.testing.assert_array_equal(kernel.cumulative_weights(edge_ptr, dst, mult, g1),
                                      _pykernel.cumulative_weights(edge_ptr, dst, mult, g2))
    for x in range(1, 8):
        for y in range(1, x + 1):
            xs, ys = np.array([x], dtype=np.int64), np.array([y], dtype=np.int64)
            n = kernel.pair_count(xs, ys, rules)
            assert n == _pykernel.pair_count(xs, ys, rules)
            for j in range(n):
                assert kernel.pair_at(xs, ys, rules, j) == _pykernel.pair_at(xs, ys, rules, j)
    if compiled.count == 0:
        return
    values, layer_cum, _ = compiled.layer_tables()
    outs = []
    for impl in (kernel, _pykernel):
        M = 25
        layers = np.zeros(M, dtype=np.int64)
        k = np.zeros((M, space.max_layers, space.dims), dtype=np.int64)
        s = np.zeros_like(k)
        state = impl.sample_batch(compiled.graph, compiled.rules, compiled.comp_start, compiled.comp_kd,
                                  compiled.comp_dim0, compiled.g, values, layer_cum, seed, layers, k, s)
        outs.append((layers, k, s, int(state)))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    layers, k, s, _ = outs[0]
    packed = kernel.encode_bits(layers, k, s, space.bit_width)
    np.testing.assert_array_equal(packed, _pykernel.encode_bits(layers, k, s, space.bit_width))
    assert kernel.adjacent_distance_sum(packed) == _pykernel.adjacent_distance_sum(packed)
    np.testing.assert_array_equal(kernel.hamming_matrix(packed), _pykernel.hamming_matrix(packed))


@given(small_spaces(max_size=12))
@settings(max_examples=20)
def test_unrank_twin_and_order(space):
    compiled = core.SpaceTables(space)
    if compiled.count == 0 or compiled.count > 3000:
        return
    ranks = range(compiled.count)
    layers, digits = [], []
    # the global split is shared code; compare the chain unranking of both implementations
    L_arr, k1, s1 = core._unrank(compiled, list(ranks))
    C, W = len(compiled.comp_start), compiled.g.shape[2]
    from nasgen.core import _limbs
    import bisect

    values = [L for L, c in compiled.by_layers.items() if c]
    prefix = np.cumsum([compiled.by_layers[L] for L in values]).tolist()
    for rank in ranks:
        li = bisect.bisect_right(prefix, rank)
        rest = rank - (prefix[li - 1] if li else 0)
        row = []
        for c in range(C - 1, -1, -1):
            rest, dgt = divmod(rest, compiled.chains[c][values[li]])
            row.append(_limbs(dgt, W))
        digits.append(row[::-1])
        layers.append(values[li])
    k2 = np.zeros_like(k1)
    s2 = np.zeros_like(s1)
    _pykernel.unrank_batch(compiled.graph, compiled.rules, compiled.comp_start, compiled.comp_kd,
                           compiled.comp_dim0, np.array(layers), np.array(digits, dtype=np.uint64).reshape(-1, C, W),
                           k2, s2)
    np.testing.assert_array_equal(k1, k2)
    np.testing.assert_array_equal(s1, s2)
    # the documented order: by number of layers first
    assert list(L_arr) == sorted(L_arr)


def test_pure_python_switch_gives_same_results(tmp_path):
    import subprocess
    import sys

    code = (
        "import nasgen, nasgen._backend as b;"
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

    code = "import sys, nasgen, nasgen.cli; print(sorted(m for m in ('z3', 'jax', 'flax', 'optax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sample_memory_guard():
    with pytest.raises(NasgenError, match="GiB"):
        core.sample_arrays(SearchSpace((30,), (20,), 1, 3), 10**12)
