"""``x in (...)``, ``all(...)``, ``any(...)`` and layer guards through z3: solver counts and CNF models.

The solver's model count (``count_solutions``) and the CNF's models (enumerated by
z3 with blocking clauses, then decoded) must equal brute-force enumeration
filtered by the reference evaluator, on small spaces of one, two and square dimensions.
"""

from __future__ import annotations

import json

import pytest

from nasgen.constraints.constrained import ConstrainedSpace
from nasgen.constraints.language import parse_where_all
from nasgen.samplers.cnf import decode_solutions, dimacs_text, encode_space, parse_solutions
from nasgen.samplers.solver import count_solutions
from nasgen.space.definition import SearchSpace

from tests.conftest import brute_force_space, run_cli
from tests.samplers.test_cnf import as_solution_lines, cnf_models, read_dimacs_from_text

SPACES = [
    SearchSpace((12,), (3,), 1, 3, rounding="floor", kernel_range=(1, 5)),
    SearchSpace((9, 8), (3, 2), 1, 2, rounding="floor", kernel_range=(1, 4)),
    SearchSpace((10, 10), (3, 3), 1, 3, rounding="floor", square=True, kernel_range=(1, 5)),
]
FORMS = [
    ["all(k % 2 == 1)"],
    ["k[0][0] in (1, 3, 5)", "s[0][0] not in (2,)"],
    ["all(k in (1, 2, 4) and s <= k)"],
    ["layers <= 1 or k[1][0] % 2 == 1"],
    ["any(k == 3)", "not all(s == 1)"],
    ["all(size % 2 == 0 or k - s in (0, 2))", "layers in (2, 3)"],
]


def _expected(space, texts):
    wheres = parse_where_all(texts)
    return {a for a in brute_force_space(space) if all(w.evaluate(a, space) for w in wheres)}


@pytest.mark.parametrize("space", SPACES, ids=["1d", "2d", "square"])
@pytest.mark.parametrize("texts", FORMS, ids=lambda t: " & ".join(t))
def test_solver_count_and_exact_count_equal_brute_force(space, texts):
    expected = _expected(space, texts)
    assert count_solutions(space, where=texts) == len(expected)
    assert ConstrainedSpace(space, texts).count().count == len(expected)


@pytest.mark.parametrize("space", SPACES, ids=["1d", "2d", "square"])
@pytest.mark.parametrize("texts", FORMS, ids=lambda t: " & ".join(t))
def test_cnf_models_decode_to_the_constrained_space(space, texts):
    expected = _expected(space, texts)
    cnf = encode_space(space, texts)
    models = cnf_models(cnf)
    decoded = list(decode_solutions(read_dimacs_from_text(dimacs_text(cnf)), parse_solutions(as_solution_lines(models))))
    assert len(decoded) == len(models) == len(expected)
    assert set(decoded) == expected


def test_cli_counts_every_layer_odd_exactly_on_the_224_space():
    args = ["-I", "224,224", "-O", "7,7", "-n", "1", "-N", "5", "--rounding", "floor"]
    code, out, _ = run_cli("count", *args, "--where", "all(k % 2 == 1)", "--json")
    spelled = [f"k[{l}][{d}] % 2 == 1 or k[{l}][{d}] == 0" for l in range(5) for d in range(2)]
    code2, out2, _ = run_cli("count", *args, *[x for w in spelled for x in ("--where", w)], "--json")
    assert code == code2 == 0
    result, spelled_out = json.loads(out), json.loads(out2)
    assert result["exact"] and result["count"] == spelled_out["count"] > 0
    assert result["by_layers"] == spelled_out["by_layers"]


@pytest.mark.parametrize("where", ["k[0][0] in ()", "all()", "all(layers > 1)"])
@pytest.mark.parametrize("method", ["exact", "all"])
def test_cli_bad_forms_are_one_line_exit_2(where, method):
    code, out, err = run_cli("count", "-I", "12", "-O", "3", "-N", "2", "--method", method, "--where", where)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "where expression" in err
