"""The exact tables (nasgen.space.tables): counts, enumeration, ranks and layer domains against brute force."""

from __future__ import annotations

import functools
from collections import Counter

import numpy as np
import pytest
from hypothesis import assume, given, settings

import nasgen
from nasgen.common.errors import ArchitectureError, NasgenError
from nasgen.space import tables as core
from nasgen.space.definition import Architecture, SearchSpace, check_membership
from nasgen.space.tables import SpaceTables

from ..conftest import brute_force_chains, brute_force_space, small_spaces


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
    for arch in SpaceTables(space).sample(50, seed=7):
        check_membership(space, arch)
    total = nasgen.count(space)
    last = nasgen.architecture_at(space, total - 1)
    check_membership(space, last)


def test_large_real_space_counts_match_reference():
    space = SearchSpace((224, 224), (7, 7), 1, 5)
    ref = _memo_count(SearchSpace((224,), (7,), 1, 5), 0)
    expected = sum(ref(224, L) ** 2 for L in range(1, 6))
    assert nasgen.count(space) == expected > 10**18


def test_memory_guard():
    with pytest.raises(NasgenError, match="GiB"):
        nasgen.count(SearchSpace((200_000,), (1,), 1, 3))


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



def test_the_space_tier_count_equals_the_public_count_and_takes_no_constraints():
    space = SearchSpace((30, 30), (20, 20), 2, 3, pool=(2, 1))
    assert core.count(space) == nasgen.count(space) == sum(core.count_by_layers(space).values())
    with pytest.raises(TypeError):
        core.count(space, where="k[0][0] <= 3")  # constraints are the constraints tier's (nasgen.count)


# -- ranks -------------------------------------------------------------------------


@given(small_spaces(max_size=12))
@settings(max_examples=40)
def test_rank_inverts_unrank_and_matches_enumeration(space):
    tables = SpaceTables(space)
    if tables.count == 0 or tables.count > 3000:
        return
    ranks = list(range(tables.count))
    assert tables.rank(*tables.unrank(ranks)) == ranks
    listed = list(nasgen.enumerate_architectures(space))
    for r in sorted({0, tables.count - 1, tables.count // 2}):
        assert nasgen.rank(space, listed[r]) == r


def test_rank_refuses_architectures_outside_the_space():
    space = SearchSpace((30,), (20,), 2, 3)
    with pytest.raises(ArchitectureError):
        nasgen.rank(space, Architecture(kernel=[[5], [8]], stride=[[1], [1]]))  # ends at 19, not 20
    with pytest.raises(ArchitectureError):
        nasgen.rank(SearchSpace((30,), (20,), 2, 3, kernel_range=(1, 6)), Architecture([[5], [7]], [[1], [1]]))


def test_unrank_refuses_out_of_range():
    tables = SpaceTables(SearchSpace((30,), (20,), 2, 2))
    with pytest.raises(NasgenError, match="outside 0..8"):
        tables.unrank([9])
