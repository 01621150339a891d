"""Uniform conditional draws against brute-force enumeration (chi-square at level 0.001)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from nasgen import Architecture, SearchSpace, SpaceTables
from nasgen.common.errors import ArchitectureError, EmptySpaceError, NasgenError
from nasgen.constraints.conditional import conditional_space
from nasgen.constraints.language import parse_where
from nasgen.space.conditional import ConditionalSpace
from tests.conftest import brute_force_space

LEVEL = 0.001

SPACES = {
    "1d-exact": SearchSpace((30,), (20,), 1, 4),
    "2d-floor": SearchSpace((12, 10), (4, 3), 1, 4, rounding="floor", kernel_range=(1, 4), stride_range=(1, 2)),
    "2d-square-pool": SearchSpace((24, 24), (4, 4), 1, 4, pool=(2, 1), square=True, kernel_range=(2, 6)),
}
#: an absorbed position atom and an atom applied by rejection (it reads two positions)
WHERE = {
    "1d-exact": ["k[1][0] <= 4", "k[0][0] + k[1][0] <= 9"],
    "2d-floor": ["s[0][1] == 1", "k[0][0] + k[1][1] <= 6"],
    "2d-square-pool": ["k[0][0] >= 3", "k[0][0] + k[1][0] <= 8"],
}


def _agrees_outside(a: Architecture, b: Architecture, start: int, stop: int, max_layers: int) -> bool:
    """The definition, position by position: both have the layer or neither does, and then the same one."""
    for position in range(max_layers):
        if start <= position < stop:
            continue
        if (position < a.layers) != (position < b.layers):
            return False
        if position < a.layers and (a.kernel[position] != b.kernel[position] or a.stride[position] != b.stride[position]):
            return False
    return True


def _members(space: SearchSpace, where: list[str]) -> list[Architecture]:
    wheres = [parse_where(w) for w in where]
    return [a for a in brute_force_space(space) if all(w.evaluate(a, space) for w in wheres)]


def _windows(space: SearchSpace, parent: Architecture) -> list[tuple[int, int]]:
    """A window at the start, one in the middle (when the parent has one) and one at the end."""
    N, L = space.max_layers, parent.layers
    out = [(0, 2)]
    out.append((1, 3) if L >= 4 else (1, 2))
    out.append((max(0, L - 2), N))
    return out


def _check_uniform(conditional: ConditionalSpace, members, parent, start, stop, seed):
    space = conditional.space
    expected = [b for b in members if _agrees_outside(parent, b, start, stop, space.max_layers)]
    assert parent in expected
    assert conditional.count(parent, start, stop) == len(expected)
    index = {b: i for i, b in enumerate(expected)}
    draws = 60 * len(expected) + 200
    drawn = conditional.sample(parent, start, stop, samples=draws, seed=seed)
    observed = np.zeros(len(expected))
    for b in drawn:
        assert b in index, f"{b} is outside the conditional set"
        observed[index[b]] += 1
    if len(expected) > 1:
        assert chisquare(observed).pvalue > LEVEL, (parent, start, stop, observed)
    return len(expected)


@pytest.mark.parametrize("name", sorted(SPACES))
@pytest.mark.parametrize("with_where", [False, True], ids=["no-where", "where"])
def test_conditional_draws_are_uniform_on_the_enumerated_conditional_set(name, with_where):
    space = SPACES[name]
    where = WHERE[name] if with_where else []
    members = _members(space, where)
    conditional = conditional_space(space, where)
    if with_where:
        assert conditional.accept is not None  # the second atom is applied by rejection
    rng = np.random.default_rng(7)
    sizes = []
    deepest = max(members, key=lambda a: a.layers)
    for parent in [deepest] + [members[i] for i in rng.choice(len(members), 3, replace=False)]:
        for start, stop in _windows(space, parent):
            sizes.append(_check_uniform(conditional, members, parent, start, stop, seed=len(sizes)))
    assert max(sizes) > 5  # the windows exercised sets with real choice, not only singletons


@pytest.mark.parametrize("name", sorted(SPACES))
def test_completing_a_prefix_is_uniform_over_its_completions(name):
    space = SPACES[name]
    members = brute_force_space(space)
    conditional = ConditionalSpace(SpaceTables(space))
    parent = max(members, key=lambda a: a.layers)
    prefix = Architecture(kernel=parent.kernel[:1], stride=parent.stride[:1])
    completions = [b for b in members if b.layers >= 1 and b.kernel[:1] == prefix.kernel and b.stride[:1] == prefix.stride]
    index = {b: i for i, b in enumerate(completions)}
    observed = np.zeros(len(completions))
    for b in conditional.complete(prefix, samples=60 * len(completions), seed=3):
        observed[index[b]] += 1
    assert len(completions) > 1 and chisquare(observed).pvalue > LEVEL


def test_uniform_draws_of_the_whole_constrained_space_match_enumeration():
    space = SPACES["2d-floor"]
    members = _members(space, WHERE["2d-floor"])
    conditional = conditional_space(space, WHERE["2d-floor"])
    index = {b: i for i, b in enumerate(members)}
    layers, kernel, stride = conditional.sample_space_arrays(40 * len(members), seed=5)
    observed = np.zeros(len(members))
    for L, k, s in zip(layers.tolist(), kernel.tolist(), stride.tolist()):
        observed[index[Architecture(kernel=k[:L], stride=s[:L])]] += 1
    assert chisquare(observed).pvalue > LEVEL


def test_same_seed_same_draws_and_different_seed_different_draws():
    space = SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor")
    conditional = ConditionalSpace(SpaceTables(space))
    parent = conditional.sample(conditional.tables.architecture_at(0), 0, 5, seed=1)[0]
    a = conditional.sample_arrays(parent, 1, 3, samples=50, seed=11)
    b = conditional.sample_arrays(parent, 1, 3, samples=50, seed=11)
    c = conditional.sample_arrays(parent, 1, 3, samples=50, seed=12)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_bad_input_is_one_named_error():
    space = SPACES["1d-exact"]
    conditional = ConditionalSpace(SpaceTables(space))
    outside = Architecture(kernel=((3,),), stride=((1,),))  # 30 -> 28, not 20
    with pytest.raises(ArchitectureError, match="is not in the space"):
        conditional.sample(outside, 0, 1)
    inside = Architecture(kernel=((11,),), stride=((1,),))
    with pytest.raises(NasgenError, match="0 <= start < stop <= 4"):
        conditional.sample(inside, 1, 1)
    with pytest.raises(NasgenError, match="0 <= start < stop"):
        conditional.sample(inside, 0, 5)
    with pytest.raises(ArchitectureError, match="dimensions"):
        conditional.sample(Architecture(kernel=((11, 11),), stride=((1, 1),)), 0, 1)
    with pytest.raises(ArchitectureError, match="starts with the prefix"):
        conditional.complete(Architecture(kernel=((2,), (3,)), stride=((1,), (2,))))  # 30 -> 29 -> 14 < 20
    with pytest.raises(ArchitectureError, match="fails the constraints"):
        conditional_space(space, ["k[0][0] + k[1][0] <= 9"]).sample(
            Architecture(kernel=((5,), (7,)), stride=((1,), (1,))), 0, 1)
    with pytest.raises(EmptySpaceError, match="empty"):
        conditional_space(space, ["k[0][0] > 40"])


@pytest.mark.parametrize("name", sorted(SPACES))
@pytest.mark.parametrize("with_where", [False, True], ids=["no-where", "where"])
def test_count_matches_enumeration_for_every_member_and_window(name, with_where):
    # every (member, window) pair, so every suffix, end-state set and cached window table is exercised,
    # in the order a search would meet them (caches warm, shared across parents)
    space = SPACES[name]
    where = WHERE[name] if with_where else []
    members = _members(space, where)
    conditional = conditional_space(space, where)
    N = space.max_layers
    rng = np.random.default_rng(3)
    parents = [members[i] for i in rng.choice(len(members), min(40, len(members)), replace=False)]
    for parent in parents:
        for start in range(N):
            for stop in range(start + 1, N + 1):
                expected = sum(_agrees_outside(parent, b, start, stop, N) for b in members)
                assert conditional.count(parent, start, stop) == expected, (parent, start, stop)
                assert conditional.restricted_count(parent, start, stop) >= expected


@pytest.mark.parametrize("with_where", [False, True], ids=["no-where", "where"])
def test_redrawing_one_dimension_is_uniform_on_its_enumerated_set(with_where):
    # the set, by definition: agree outside the window, and in the other dimension everywhere (so the depth stays)
    space = SPACES["2d-floor"]
    where = WHERE["2d-floor"] if with_where else []
    members = _members(space, where)
    conditional = conditional_space(space, where)
    rng = np.random.default_rng(11)
    sizes = []
    for parent in [members[i] for i in rng.choice(len(members), 4, replace=False)]:
        for dim in (0, 1):
            for start, stop in [(0, 1), (0, 2), (max(0, parent.layers - 1), space.max_layers)]:
                expected = [b for b in members if _agrees_outside(parent, b, start, stop, space.max_layers)
                            and b.layers == parent.layers
                            and all(b.kernel[l][1 - dim] == parent.kernel[l][1 - dim]
                                    and b.stride[l][1 - dim] == parent.stride[l][1 - dim] for l in range(b.layers))]
                assert conditional.count(parent, start, stop, dims=(dim,)) == len(expected)
                index = {b: i for i, b in enumerate(expected)}
                observed = np.zeros(len(expected))
                for b in conditional.sample(parent, start, stop, samples=60 * len(expected) + 100, seed=len(sizes),
                                            dims=[dim]):
                    assert b in index, f"{b} is outside the conditional set"
                    observed[index[b]] += 1
                if len(expected) > 1:
                    assert chisquare(observed).pvalue > LEVEL, (parent, start, stop, dim, observed)
                sizes.append(len(expected))
    assert max(sizes) > 2  # some sets with real choice


def test_dims_must_be_whole_chains():
    square = ConditionalSpace(SpaceTables(SPACES["2d-square-pool"]))
    parent = square.sample_space_arrays(1, seed=0)
    parent = Architecture(kernel=parent[1][0, :parent[0][0]].tolist(), stride=parent[2][0, :parent[0][0]].tolist())
    with pytest.raises(NasgenError, match="one chain"):
        square.sample(parent, 0, 1, dims=(0,))
    assert square.count(parent, 0, 1, dims=(0, 1)) == square.count(parent, 0, 1)
    with pytest.raises(NasgenError, match="dimensions 0..1"):
        square.sample(parent, 0, 1, dims=(2,))
