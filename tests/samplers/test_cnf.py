"""The CNF encoding: projected model counts against the exact count, decoding, bad input.

Needs z3 (the ``solver`` extra, part of ``test``): models of the CNF are
enumerated by z3 with blocking clauses over the sampling set, independently
of nasgen's own solver formula.
"""

from __future__ import annotations


import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

import nasgen
from nasgen.common.errors import CnfError
from nasgen.samplers.cnf import (
    decode_solutions,
    dimacs_text,
    encode_space,
    parse_solutions,
    read_dimacs,
    write_dimacs,
)
from nasgen.space.definition import Architecture, SearchSpace
from nasgen.constraints.language import evaluate_all, parse_where_all
from tests.conftest import small_spaces

from tests.conftest import run_cli


def cnf_models(cnf, project=True, limit=5000):
    """Models of the CNF by z3 enumeration, as canonical bit tuples (blocking the sampling set, or every variable)."""
    solver = z3.Solver()
    var = [None] + [z3.Bool(f"x{i}") for i in range(1, cnf.num_vars + 1)]
    for clause in cnf.clauses:
        solver.add(z3.Or([var[lit] if lit > 0 else z3.Not(var[-lit]) for lit in clause]))
    block = [var[i] for i in (cnf.sampling if project else range(1, cnf.num_vars + 1))]
    models = []
    while solver.check() == z3.sat and len(models) < limit:
        m = solver.model()
        values = [z3.is_true(m.eval(b, model_completion=True)) for b in block]
        models.append(tuple(values[: len(cnf.sampling)]) if project else tuple(values))
        solver.add(z3.Or([z3.Not(b) if v else b for b, v in zip(block, values)]))
    return models


def as_solution_lines(models, style="plain"):
    lines = []
    for values in models:
        lits = " ".join(str(i + 1 if v else -(i + 1)) for i, v in enumerate(values))
        lines.append({"plain": f"{lits} 0", "v": f"v {lits} 0", "unigen": f"v{lits} 0:1"}[style])
    return lines


WHERES = ["k[0][0] + s[0][0] > 4", "size[0][0] % 2 == 0 or layers == 1", "max(k[0]) - min(s[0]) != 3"]


@settings(max_examples=15, deadline=None)
@given(space=small_spaces(max_dims=2, max_size=12, max_layers=3), where=st.sampled_from([None] + WHERES))
def test_projected_models_are_exactly_the_space(space, where):
    """Decoded models = the exact enumeration (filtered by the where expression, evaluated in Python)."""
    if nasgen.count(space) == 0 or nasgen.count(space) > 150:
        return
    wheres = [] if where is None else [where]
    cnf = encode_space(space, wheres)
    expected = {a for a in nasgen.enumerate_architectures(space)
                if evaluate_all(parse_where_all(wheres), a, space)}
    models = cnf_models(cnf)
    header = read_dimacs_from_text(dimacs_text(cnf))
    decoded = list(decode_solutions(header, parse_solutions(as_solution_lines(models))))
    assert len(decoded) == len(models) == len(expected)
    assert set(decoded) == expected


def read_dimacs_from_text(text, tmp=None):
    import os
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".cnf")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    try:
        return read_dimacs(path)
    finally:
        os.unlink(path)


@pytest.mark.parametrize("space", [
    SearchSpace((30, 30), (20, 20), 2, 2, pool=(2, 1)),
    SearchSpace((12,), (3,), 1, 2, rounding="floor", relation="any", pool=(1, 1)),
    SearchSpace((12, 12), (4, 4), 1, 2, square=True),
])
@pytest.mark.parametrize("where", [None, "k[0][0] > s[0][0] + 1 or size[0][0] == 6"])
def test_every_auxiliary_variable_is_defined(space, where):
    """One model per architecture even without projection, so CMSGen (no sampling set) decodes correctly."""
    cnf = encode_space(space, [] if where is None else [where])
    projected = cnf_models(cnf)
    full = cnf_models(cnf, project=False)
    assert len(full) == len(projected) > 0


def test_approxmc_counts_the_cnf_exactly_on_small_spaces():
    """ApproxMC is exact below its threshold: the projected count equals nasgen.count (pyapproxmc, samplers extra)."""
    import pyapproxmc

    for space in [SearchSpace((30,), (20,), 2, 3), SearchSpace((30, 30), (20, 20), 2, 2, pool=(2, 1)),
                  SearchSpace((14,), (3,), 1, 3, rounding="floor")]:
        cnf = encode_space(space)
        counter = pyapproxmc.Counter(seed=1, epsilon=0.1, delta=0.05)
        counter.add_clauses(cnf.clauses)
        cell, hashes = counter.count(cnf.sampling)
        assert cell * 2 ** hashes == nasgen.count(space)


def test_sampling_set_is_the_canonical_vector():
    space = SearchSpace((30, 30), (20, 20), 2, 3, pool=(2, 1))
    cnf = encode_space(space)
    assert cnf.sampling == list(range(1, space.vector_bits + 1))
    text = dimacs_text(cnf)
    ind = [int(t) for line in text.splitlines() if line.startswith("c ind ") for t in line.split()[2:] if t != "0"]
    assert ind == cnf.sampling
    arch = nasgen.sample(space, 1, seed=3)[0]
    vector = nasgen.encode(space, [arch])[0]
    bits = [(int(vector[i // 64]) >> (i % 64)) & 1 for i in range(space.vector_bits)]
    header = read_dimacs_from_text(text)
    (decoded,) = decode_solutions(header, parse_solutions(as_solution_lines([[b == 1 for b in bits]], "v")))
    assert decoded == arch


@pytest.mark.parametrize("style", ["plain", "v", "unigen"])
def test_decode_command_round_trip(tmp_path, style):
    space = SearchSpace((30,), (20,), 2, 3)
    cnf = encode_space(space)
    write_dimacs(cnf, tmp_path / "s.cnf")
    models = cnf_models(cnf)
    (tmp_path / "sol.txt").write_text("s SATISFIABLE\nc comment\n" + "\n".join(as_solution_lines(models, style)) + "\n")
    code, out, err = cli("decode", str(tmp_path / "s.cnf"), str(tmp_path / "sol.txt"), "-o", str(tmp_path / "o.jsonl"))
    assert code == 0, err
    got = nasgen.read_architectures(tmp_path / "o.jsonl", space)
    assert set(got) == set(nasgen.enumerate_architectures(space)) and len(got) == nasgen.count(space)


def cli(*args):
    return run_cli(*args)


def test_cnf_command_writes_the_same_text(tmp_path):
    code, _, err = cli("cnf", "-I", "30,30", "-O", "20,20", "-n", "2", "--pool", "2,1", "--where", "k[0][0] > 2",
                       "-o", str(tmp_path / "s.cnf"))
    assert code == 0, err
    space = SearchSpace((30, 30), (20, 20), 2, 2, pool=(2, 1))
    assert (tmp_path / "s.cnf").read_text() == dimacs_text(encode_space(space, ["k[0][0] > 2"]))
    header = read_dimacs(tmp_path / "s.cnf")
    assert header.space == space and header.where == ("k[0][0] > 2",)


def bad_input_cases(tmp_path):
    space = SearchSpace((30,), (20,), 2, 2)
    good = tmp_path / "good.cnf"
    write_dimacs(encode_space(space), good)
    (tmp_path / "noheader.cnf").write_text("p cnf 2 1\n1 2 0\n")
    (tmp_path / "noproblem.cnf").write_text("c nasgen cnf 1\n1 2 0\n")
    (tmp_path / "binary.cnf").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "badtoken.txt").write_text("v 1 2 x 0\n")
    (tmp_path / "unterminated.txt").write_text("1 -2 3\n")
    (tmp_path / "short.txt").write_text("1 -2 0\n")
    # k[0][0] = 1 and s = 1 with both layers active: not in the space (k > s fails)
    bits = [0] * space.vector_bits
    bits[0] = bits[5] = 1
    bits[-1] = bits[-2] = 1
    (tmp_path / "outside.txt").write_text(" ".join(str(i + 1 if b else -(i + 1)) for i, b in enumerate(bits)) + " 0\n")
    return [
        ("decode", str(tmp_path / "missing.cnf"), str(tmp_path / "short.txt")),
        ("decode", str(tmp_path / "noheader.cnf"), str(tmp_path / "short.txt")),
        ("decode", str(tmp_path / "noproblem.cnf"), str(tmp_path / "short.txt")),
        ("decode", str(tmp_path / "binary.cnf"), str(tmp_path / "short.txt")),
        ("decode", str(good), str(tmp_path / "badtoken.txt")),
        ("decode", str(good), str(tmp_path / "unterminated.txt")),
        ("decode", str(good), str(tmp_path / "short.txt")),
        ("decode", str(good), str(tmp_path / "outside.txt")),
        ("decode", str(good), str(tmp_path / "nosuchfile.txt")),
        ("cnf", "-I", "30", "-O", "20", "-n", "2", "--where", "k[5][0] > 1"),
        ("cnf", "-I", "30", "-O", "29", "-n", "3"),
    ]


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path):
    for args in bad_input_cases(tmp_path):
        target = tmp_path / "out.file"
        code, out, err = cli(*args, "-o", str(target))
        assert code == 2, (args, err)
        assert err.startswith("nasgen: error:") and err.count("\n") == 1, (args, err)
        assert not target.exists(), args


def test_decode_rejects_a_model_that_fails_the_where(tmp_path):
    space = SearchSpace((30,), (20,), 2, 2)
    cnf_where = encode_space(space, ["k[0][0] > 5"])
    write_dimacs(cnf_where, tmp_path / "w.cnf")
    header = read_dimacs(tmp_path / "w.cnf")
    low = next(a for a in nasgen.enumerate_architectures(space) if a.kernel[0][0] <= 5)
    vector = nasgen.encode(space, [low])[0]
    bits = [bool((int(vector[i // 64]) >> (i % 64)) & 1) for i in range(space.vector_bits)]
    with pytest.raises(CnfError, match="where"):
        list(decode_solutions(header, parse_solutions(as_solution_lines([bits]))))
    assert Architecture(kernel=low.kernel, stride=low.stride) == low


def seeded_spaces(trials=60, limit=150):
    """Random small spaces (seeded) with 1..limit architectures, covering every option."""
    import random

    rng = random.Random(20261128)
    out = []
    while len(out) < trials:
        dims = rng.randint(1, 2)
        inp = [rng.randint(2, 12) for _ in range(dims)]
        outp = [rng.randint(1, i) for i in inp]
        n = rng.randint(1, 3)
        pool = rng.choice([None, (2, 1), (1, 1), (2, 2)])
        if pool and pool[0] > min(inp):
            pool = None
        space = SearchSpace(inp, outp, n, rng.randint(n, 3), pool=pool, rounding=rng.choice(["exact", "floor"]),
                            relation=rng.choice(["gt", "ge", "any"]), kernel_range=rng.choice([None, (1, 3), (2, 5)]),
                            stride_range=rng.choice([None, (1, 1), (1, 2), (2, 3)]),
                            square=dims > 1 and rng.random() < 0.3)
        if 1 <= nasgen.count(space) <= limit:
            out.append(space)
    return out


@pytest.mark.parametrize("space", seeded_spaces(20))
def test_projected_count_equals_exact_count_with_and_without_where(space):
    cnf = encode_space(space)
    assert len(cnf_models(cnf)) == nasgen.count(space)
    # The first goes through z3; the atoms of the others go into the tables (inactive layers included).
    for where in (["k[0][0] >= s[0][0] + 2 or size[0][0] % 2 == 1"],
                  ["k[0][0] <= 3 and s[0][0] != 2", "layers >= 2", f"size[0][{space.dims - 1}] > 2"],
                  [f"4 > k[{space.max_layers - 1}][0]",
                   f"size[{space.max_layers - 1}][0] != 1 and layers < 3 and k[0][0] > s[0][0]"]):
        expected = sum(1 for a in nasgen.enumerate_architectures(space)
                       if evaluate_all(parse_where_all(where), a, space))
        assert len(cnf_models(encode_space(space, where))) == expected, where
