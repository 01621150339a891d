"""The --where language: parsing, whitelist errors, and the pure-Python semantics."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nasgen.common.errors import NasgenError
from nasgen.space.definition import Architecture, SearchSpace
from nasgen.common.errors import WhereError
from nasgen.constraints.language import evaluate_all, floor_div, floor_mod, parse_where
from nasgen.space.encoding import to_arrays
from nasgen.space.tables import SpaceTables

from tests.conftest import brute_force_space, small_spaces

SPACE = SearchSpace((30, 30), (20, 20), min_layers=1, max_layers=3, pool=(2, 1))
# Two active layers of three. Dimension 0: 30 -k4-> 27 -pool-> 26 -k3-> 24 -pool-> 23;
# dimension 1: 30 -k3-> 28 -pool-> 27 -k4-> 24 -pool-> 23.
TWO_LAYERS = Architecture(kernel=((4, 3), (3, 4)), stride=((1, 1), (1, 1)))
TWO_LAYER_SPACE = SearchSpace((30, 30), (23, 23), min_layers=1, max_layers=3, pool=(2, 1))


def test_fixture_shapes():
    assert TWO_LAYERS.shapes(TWO_LAYER_SPACE) == [(30, 30), (26, 27), (23, 23)]


@pytest.mark.parametrize("text, expected", [
    ("k[0][0] == 4 and k[0][1] == 3", True),
    ("layers == 2", True),
    ("k[2][0] == 0 and s[2][1] == 0", True),            # inactive layer: kernel and stride are 0
    ("size[2][0] == size[1][0]", True),                  # inactive layer passes the size through
    ("sum(k[0]) == 7 and max(k[1]) == 4 and min(k[1]) == 3", True),
    ("sum([k[0][0], k[1][0], k[2][0]]) == 7", True),
    ("max(k[0][0], s[0][0], 2) == 4", True),
    ("abs(k[0][0] - 10) == 6", True),
    ("-k[0][0] // 3 == -2", True),                       # floor division, as in Python
    ("k[0][0] % -3 == -2", True),                        # modulo takes the divisor's sign
    ("7 // s[2][0] == 0 and 7 % s[2][0] == 7", True),    # x // 0 == 0 and x % 0 == x
    ("1 < k[0][0] <= 3", False),                         # chained comparison
    ("not (layers == 2) or k[0][0] > 9", False),
    ("+k[0][0] * 2 - 1 == 7 != 8", True),
])
def test_evaluate_against_hand_computed_values(text, expected):
    space = TWO_LAYER_SPACE
    assert parse_where(text).evaluate(TWO_LAYERS, space) is expected


def test_size_is_the_shape_after_conv_and_pool():
    space = TWO_LAYER_SPACE
    shapes = TWO_LAYERS.shapes(space)
    where = parse_where(f"size[0][0] == {shapes[1][0]} and size[1][1] == {shapes[2][1]}")
    assert where.evaluate(TWO_LAYERS, space)


def test_evaluate_all_is_a_conjunction():
    space = TWO_LAYER_SPACE
    wheres = [parse_where("layers == 2"), parse_where("k[0][0] == 4")]
    assert evaluate_all(wheres, TWO_LAYERS, space)
    assert not evaluate_all(wheres + [parse_where("k[0][0] == 5")], TWO_LAYERS, space)


def test_names_lists_the_variables_used():
    assert parse_where("size[0][0] > layers and sum(s[1]) < 3").names() == ["layers", "s", "size"]


@pytest.mark.parametrize("text, fragment", [
    ("foo > 1", "unknown name 'foo'"),
    ("k.real > 1", "attribute access"),
    ("open('x') == 1", "function 'open' is not allowed"),
    ("__import__('os') == 1", "function '__import__' is not allowed"),
    ("k[0][0].bit_length() > 1", "calling attribute access is not allowed"),
    ("k[0][0] >", "syntax error"),
    ("k[0][0] = 3", "syntax error"),
    ("k[0][0]", "condition is needed"),
    ("k[0] > 1", "whole layer"),
    ("k > 1", "needs a layer and a dimension index"),
    ("k[-1][0] > 0", "index must be a non-negative integer literal"),
    ("k[layers][0] > 0", "index must be a non-negative integer literal"),
    ("k[0][0] / 2 > 1", "use // for integer division"),
    ("k[0][0] ** 2 > 1", "Pow is not allowed"),
    ("k[0][0] > 1.5", "only integers"),
    ("k[0][0] == 'a'", "only integers"),
    ("(k[0][0] > 1) + 1 > 0", "condition is used where an integer is needed"),
    ("[x for x in k] == 1", "comprehension"),
    ("lambda: 1", "lambda"),
    ("sum(1, 2) > 0", "sum takes one argument"),
    ("max(k[0][0]) > 0", "needs a list or a whole layer"),
    ("abs(1, 2) > 0", "abs takes exactly one argument"),
    ("max(key=1) > 0", "plain positional arguments"),
    ("", "empty"),
    ("   ", "empty"),
])
def test_bad_expressions_get_one_line_errors(text, fragment):
    with pytest.raises(WhereError) as info:
        parse_where(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert isinstance(info.value, NasgenError) and isinstance(info.value, ValueError)


def test_multiline_expression_is_shown_on_one_line():
    with pytest.raises(WhereError) as info:
        parse_where("k[0][0] >\n foo")
    assert "\n" not in str(info.value) and "unknown name 'foo'" in str(info.value)


@pytest.mark.parametrize("text, fragment", [
    ("k[3][0] > 1", "layer index 3"),
    ("sum(s[5]) > 1", "layer index 5"),
    ("size[0][2] > 1", "dimension index 2"),
])
def test_indices_are_checked_against_the_space(text, fragment):
    where = parse_where(text)  # parses: the space is not known yet
    with pytest.raises(WhereError, match=fragment):
        where.check(SPACE)


def test_magnitude_bounds_every_intermediate():
    space = SearchSpace((30,), (20,), min_layers=1, max_layers=2)
    assert parse_where("k[0][0] * s[1][0] - 7 > 0").magnitude(space) == 30 * 30 + 7
    assert parse_where("sum(k[0]) + layers > 0").magnitude(space) == 30 + 2


@pytest.mark.parametrize("a", range(-7, 8))
@pytest.mark.parametrize("b", [-3, -1, 0, 2, 5])
def test_division_rules(a, b):
    assert floor_div(a, b) == (0 if b == 0 else a // b)
    assert floor_mod(a, b) == (a if b == 0 else a % b)
    if b:
        assert floor_div(a, b) * b + floor_mod(a, b) == a


def test_importing_where_does_not_import_z3_or_jax():
    code = "import nasgen.constraints.language, sys; print('z3' in sys.modules, 'jax' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


# -- the vectorised evaluator ---------------------------------------------------------------


def _brute(space: SearchSpace, limit: int = 4000):
    # The exact count only bounds the brute force's cost; the brute force is the oracle.
    assume(0 < SpaceTables(space).count <= limit)
    return sorted(brute_force_space(space), key=lambda a: (a.kernel, a.stride))


@st.composite
def expressions(draw, space, depth=2):
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.one_of(
            st.integers(-5, 40).map(str),
            st.just("layers"),
            st.just("params"),
            st.just("flops"),
            st.builds(lambda n, l, d: f"{n}[{l}][{d}]", st.sampled_from(["k", "s", "size"]),
                      st.integers(0, space.max_layers - 1), st.integers(0, space.dims - 1)),
        ))
    form = draw(st.integers(0, 5))
    a, b = draw(expressions(space, depth - 1)), draw(expressions(space, depth - 1))
    if form == 0:
        return f"({a} {draw(st.sampled_from(['+', '-', '*', '//', '%']))} {b})"
    if form == 1:
        return f"{draw(st.sampled_from(['sum', 'prod', 'max', 'min']))}([{a}, {b}])"
    if form == 2:
        layer = draw(st.integers(0, space.max_layers - 1))
        return f"{draw(st.sampled_from(['sum', 'prod', 'max', 'min']))}({draw(st.sampled_from(['k', 's', 'size']))}[{layer}])"
    if form == 3:
        return f"abs({a})"
    if form == 4:
        return f"-{a}"
    return f"max({a}, {b})"


@st.composite
def conditions(draw, space):
    a, b = draw(expressions(space)), draw(expressions(space))
    text = f"{a} {draw(st.sampled_from(['<', '<=', '>', '>=', '==', '!=']))} {b}"
    if draw(st.booleans()):
        c, d = draw(expressions(space, 1)), draw(expressions(space, 1))
        text = f"not ({text}) {draw(st.sampled_from(['and', 'or']))} {c} < {d}"
    return text


@given(st.data(), small_spaces(max_size=12))
@settings(max_examples=60)
def test_evaluate_arrays_equals_evaluate(data, space):
    archs = _brute(space)[:200]
    where = parse_where(data.draw(conditions(space)))
    model = types.SimpleNamespace(width=data.draw(st.integers(1, 9)), in_channels=data.draw(st.integers(1, 4)),
                                  num_classes=data.draw(st.integers(1, 11)),
                                  norm=data.draw(st.sampled_from(["batch", None])),
                                  head=data.draw(st.sampled_from(["logits", "features"])),
                                  pooling=data.draw(st.sampled_from(["max", "avg"])))
    got = where.evaluate_arrays(*to_arrays(space, archs), space, model)
    assert got.tolist() == [where.evaluate(a, space, model) for a in archs]


def test_evaluate_arrays_with_huge_values_uses_exact_integers():
    space = SearchSpace((30,), (20,), 2, 2)
    archs = sorted(brute_force_space(space), key=lambda a: a.kernel)
    where = parse_where(f"k[0][0] * {10**30} - {10**31} > {-5 * 10**30}")
    got = where.evaluate_arrays(*to_arrays(space, archs), space)
    assert got.tolist() == [where.evaluate(a, space) for a in archs] and any(got) and not all(got)
