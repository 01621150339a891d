"""``x in (...)``, ``all(...)``/``any(...)`` and the ``layers <= l`` guard: counts, absorption and uniformity.

Every expression is drawn together with an independent Python predicate on an
:class:`Architecture` (written here from the README's definition, not through
the language's evaluators), and counts are checked against brute-force
enumeration of small random spaces.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from nasgen.common.errors import WhereError
from nasgen.constraints.constrained import ConstrainedSpace
from nasgen.constraints.language import evaluate_all_arrays, parse_where, parse_where_all
from nasgen.space.definition import SearchSpace
from nasgen.space.encoding import arrays_to_architectures, to_arrays
from nasgen.space.tables import SpaceTables

from tests.conftest import brute_force_space, small_spaces

# Bodies of all(...)/any(...) and of guarded per-position atoms: (text with {k} {s} {size}, predicate(k, s, size)).
BODIES = [
    ("{k} % 2 == 1", lambda k, s, z, c, t: k % 2 == 1),
    ("{k} in {t}", lambda k, s, z, c, t: k in t),
    ("{s} not in {t}", lambda k, s, z, c, t: s not in t),
    ("{k} >= {s} + {c}", lambda k, s, z, c, t: k >= s + c),
    ("{size} % 2 == 0 or {k} <= {c}", lambda k, s, z, c, t: z % 2 == 0 or k <= c),
    ("max({k}, {s}) <= {c} + 1", lambda k, s, z, c, t: max(k, s) <= c + 1),
    ("not ({k} - {s} in {t})", lambda k, s, z, c, t: k - s not in t),
]


def _values(arch, space, layer, dim):
    """(k, s, size) at [layer][dim] by the definition: 0, 0 and the output size on an inactive layer."""
    if layer >= arch.layers:
        return 0, 0, space.output_shape[dim]
    return arch.kernel[layer][dim], arch.stride[layer][dim], arch.shapes(space)[layer + 1][dim]


@st.composite
def bodies(draw):
    text, predicate = draw(st.sampled_from(BODIES))
    c = draw(st.integers(0, 3))
    t = tuple(draw(st.lists(st.integers(-1, 6), min_size=1, max_size=4)))
    shown = f"({t[0]},)" if len(t) == 1 else str(t)
    return (lambda k, s, size: text.format(k=k, s=s, size=size, c=c, t=shown),
            lambda k, s, z: predicate(k, s, z, c, t))


@st.composite
def forms(draw, space, quantifiers=("all",)):
    """(expression, predicate on an architecture, whether the tables must absorb it)."""
    kind = draw(st.sampled_from(["in", "guard"] + list(quantifiers)))
    text, body = draw(bodies())
    if kind in ("all", "any"):
        cells = [(l, d) for l in range(space.max_layers) for d in range(space.dims)]
        test = all if kind == "all" else any
        return (f"{kind}({text('k', 's', 'size')})",
                lambda a: test(body(*_values(a, space, l, d)) for l, d in cells if l < a.layers), kind == "all")
    layer, dim = draw(st.integers(0, space.max_layers - 1)), draw(st.integers(0, space.dims - 1))
    indexed = text(f"k[{layer}][{dim}]", f"s[{layer}][{dim}]", f"size[{layer}][{dim}]")
    if kind == "in":
        name = draw(st.sampled_from(["k", "s", "size"]))
        values = tuple(sorted(set(draw(st.lists(st.integers(0, 8), min_size=1, max_size=4)))))
        negated = draw(st.booleans())
        position = ("k", "s", "size").index(name)
        return (f"{name}[{layer}][{dim}] {'not in' if negated else 'in'} {values if len(values) > 1 else f'({values[0]},)'}",
                lambda a: (_values(a, space, layer, dim)[position] in values) != negated, True)
    guard = draw(st.sampled_from([f"layers <= {layer}", f"{layer} >= layers", f"layers < {layer + 1}",
                                  f"k[{layer}][{dim}] == 0", f"not (layers > {layer})"]))
    return f"{guard} or {indexed}", lambda a: a.layers <= layer or body(*_values(a, space, layer, dim)), True


def _members(space, limit=3000):
    assume(0 < SpaceTables(space).count <= limit)
    return brute_force_space(space)


@given(st.data(), small_spaces(max_size=10))
@settings(max_examples=80, deadline=None)
def test_absorbed_forms_count_exactly_as_brute_force(data, space):
    members = _members(space)
    drawn = [data.draw(forms(space)) for _ in range(data.draw(st.integers(1, 3)))]
    constrained = ConstrainedSpace(space, [text for text, _, _ in drawn])
    assert constrained.all_absorbed, [a.text for a in constrained.atoms if a.kind == "rejected"]
    expected = {a for a in members if all(predicate(a) for _, predicate, _ in drawn)}
    result = constrained.count()
    assert result.exact and result.count == len(expected), [text for text, _, _ in drawn]
    listed = {a for arrays in constrained.tables.enumerate_arrays() for a in arrays_to_architectures(*arrays)}
    assert listed == expected


@given(st.data(), small_spaces(max_size=10))
@settings(max_examples=60, deadline=None)
def test_every_evaluator_agrees_with_the_definition(data, space):
    """any(...) too (applied by rejection): Where.evaluate and evaluate_arrays against the predicates."""
    members = sorted(_members(space, limit=1500), key=lambda a: (a.kernel, a.stride))
    drawn = [data.draw(forms(space, quantifiers=("all", "any"))) for _ in range(data.draw(st.integers(1, 2)))]
    wheres = parse_where_all([text for text, _, _ in drawn])
    expected = [all(predicate(a) for _, predicate, _ in drawn) for a in members]
    assert [all(w.evaluate(a, space) for w in wheres) for a in members] == expected
    arrays = to_arrays(space, members)
    assert evaluate_all_arrays(wheres, *arrays, space).tolist() == expected
    result = ConstrainedSpace(space, wheres).count()
    assert result.exact and result.count == sum(expected)
    if all(absorbed for _, _, absorbed in drawn):  # any(...) over one position is absorbed too
        assert ConstrainedSpace(space, wheres).all_absorbed


SPACE = SearchSpace((12, 11), (3, 2), 1, 3, rounding="floor", kernel_range=(1, 5))


@pytest.mark.parametrize("where, absorbed", [
    ("all(k % 2 == 1)", True),
    ("all(k % 2 == 1 or k == 0)", True),
    ("layers <= 1 or k[1][0] % 2 == 1", True),
    ("layers >= 2 or s[1][1] == 0", True),                      # layers >= 2 is "layer 1 is active"
    ("k[0][0] in (3, 5, 7) and k[1][1] not in (2, 4)", True),
    ("all(k in (1, 3) and s <= 2)", True),
    ("layers <= 0 or k[1][0] == 3", True),                      # layers <= 0 never holds here: dropped
    ("layers <= 1 or k[2][0] == 3", False),                     # the guard is about another layer
    ("layers == 2 or k[1][0] == 3", False),                      # layers == 2 needs two positions
    ("any(k == 5)", False),
    ("not all(k % 2 == 1)", False),
])
def test_which_forms_are_absorbed(where, absorbed):
    constrained = ConstrainedSpace(SPACE, [where])
    assert constrained.all_absorbed == absorbed
    expected = sum(parse_where(where).evaluate(a, SPACE) for a in brute_force_space(SPACE))
    assert constrained.count().count == expected and constrained.count().exact


def test_all_splits_into_one_absorbed_atom_per_position():
    atoms = ConstrainedSpace(SPACE, ["all(k % 2 == 1)"]).atoms
    assert [(a.kind, a.layer) for a in atoms] == [("position", l) for l in range(3) for _ in range(2)]
    assert atoms[0].text == "(k[0][0] == 0) or ((k[0][0] % 2) == 1)"


def test_sampling_under_the_new_forms_is_uniform():
    wheres = ["all(k in (1, 2, 3, 5))", "k[0][1] not in (3,)", "layers <= 1 or s[1][0] in (1, 2)"]
    constrained = ConstrainedSpace(SPACE, wheres)
    assert constrained.all_absorbed
    members = [a for a in brute_force_space(SPACE) if all(parse_where(w).evaluate(a, SPACE) for w in wheres)]
    assert constrained.count().count == len(members) > 100
    index = {a: i for i, a in enumerate(members)}
    draws = 60 * len(members)
    chunks = constrained.iter_sample_arrays(draws, seed=5, replace=True)
    counts = np.bincount([index[a] for c in chunks for a in arrays_to_architectures(*c)], minlength=len(members))
    assert counts.sum() == draws
    assert stats.chisquare(counts).pvalue > 0.001


@pytest.mark.parametrize("text, fragment", [
    ("k[0][0] in ()", "x in () is empty"),
    ("k[0][0] in (k[1][0], 3)", "'in' takes integer literals only"),
    ("k[0][0] in k[1]", "'in' needs a literal tuple of integers"),
    ("k[0][0] in (3)", "'in' needs a literal tuple of integers"),
    ("1 < k[0][0] in (3, 5)", "'in' cannot be chained"),
    ("k[0][0] in (2.5,)", "only integers"),
    ("all()", "all() is empty"),
    ("any()", "any() is empty"),
    ("all(k > 1, s > 1)", "all takes one condition"),
    ("all(k[0][0] > 1)", "write k, not k[0][0]"),
    ("all(layers > 1)", "layers is not per position"),
    ("all(flops < 10)", "flops is not per position"),
    ("all(sum(k[0]) > 1)", "write k, not k[0][0]"),
    ("all(1 == 1)", "reads none of k, s and size"),
    ("all(all(k > 1))", "cannot be nested"),
    ("all(k)", "an integer is used where a condition is needed"),
    ("all(k > 1) + 1 > 0", "is a condition"),
    ("k > 1", "bare k only inside all(...)"),
    ("all(k > 1 for k in (1, 2))", "a comprehension is not allowed"),
])
def test_bad_forms_are_one_line_errors(text, fragment):
    with pytest.raises(WhereError) as info:
        parse_where(text)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert "x in (a, b, ...)" in message and "all(...)" in message  # it names what is valid
