"""nasgen check: exact marginals against enumeration, verdicts on uniform and biased samplers, the CLI.

Passing samplers are tested at level 0.001 (Holm over all tests), so a
uniform sampler fails with probability at most 0.001; the seeds are fixed, so
each outcome is deterministic. Power is stated against a concrete bias.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import chi2, ncx2

import nasgen
from nasgen.samplers.check import check_uniformity
from nasgen.samplers.registry import sample_arrays
from nasgen.space.definition import SearchSpace

from ..conftest import run_cli

LEVEL = 0.001


def cli(*args):
    return run_cli(*args)


@pytest.mark.parametrize("space", [
    SearchSpace((9, 8), (3, 2), 1, 3, rounding="floor", relation="any"),
    SearchSpace((30, 30), (20, 20), 2, 3, pool=(2, 1)),
    SearchSpace((12, 12), (4, 4), 1, 3, square=True),
])
def test_exact_marginals_match_enumeration(space):
    """The whole space, each architecture once, has exactly the expected marginal counts: every statistic is 0."""
    arrays = tuple(np.concatenate(p) for p in zip(*nasgen.space.tables.SpaceTables(space).enumerate_arrays(batch=100000)))
    result = check_uniformity(space, arrays, replace=False)
    for test in result.tests:
        assert test.statistic == pytest.approx(0.0, abs=1e-6), test
    assert result.uniform


def power_against_bias(space, draws, fraction=0.1, factor=2.0, tests=20):
    """Power of the whole-space chi-square against ``factor`` times the weight on ``fraction`` of the architectures.

    The noncentral chi-square approximation at level LEVEL / tests (Holm's first step with ``tests`` tests).
    """
    C = nasgen.count(space)
    p_hi = factor / (C * (1 + fraction * (factor - 1)))
    p_lo = 1 / (C * (1 + fraction * (factor - 1)))
    width = max(1, int(np.ceil(5 * C / draws)))
    # Worst case for the binned test: the favoured architectures spread evenly over bins.
    shift = fraction * (p_hi * C - 1) ** 2 + (1 - fraction) * (p_lo * C - 1) ** 2
    noncentrality = draws * shift / width if width > 1 else draws * shift
    df = int(np.ceil(C / width)) - 1
    return float(ncx2.sf(chi2.isf(LEVEL / tests, df), df, noncentrality))


def test_exact_sampler_passes():
    space = SearchSpace((14, 9), (3, 2), 1, 3, rounding="floor", relation="any")
    assert power_against_bias(SearchSpace((30, 30), (20, 20), 2, 3, pool=(2, 1)), 20000) > 0.99
    arrays = nasgen.sample_arrays(space, 20000, seed=11, replace=True)
    result = check_uniformity(space, arrays, level=LEVEL, replace=True)
    assert result.uniform, result
    distinct = nasgen.sample_arrays(space, 20000, seed=12, replace=False)
    assert check_uniformity(space, distinct, level=LEVEL, replace=False).uniform


SMALL = SearchSpace((30,), (20,), 2, 3)  # 45 architectures


@pytest.mark.slow
def test_uniwit_passes():
    """uniwit, 600 draws with replacement on 45 architectures: power > 0.9 against 3x weight on 20% of them."""
    assert power_against_bias(SMALL, 600, fraction=0.2, factor=3.0) > 0.9
    arrays = sample_arrays(SMALL, 600, method="uniwit", seed=5, replace=True)
    assert check_uniformity(SMALL, arrays, level=LEVEL, replace=True).uniform


def test_limited_is_flagged():
    """z3's order: the first 100 of 274 architectures as distinct draws (the marginals are far off)."""
    space = SearchSpace((30, 30), (20, 20), 2, 3, pool=(2, 1))
    arrays = sample_arrays(space, 100, method="limited", seed=1)
    result = check_uniformity(space, arrays, level=LEVEL, replace=False)
    assert not result.uniform and result.overall_p < 1e-6


def test_z3_first_solution_under_many_seeds_is_flagged():
    """The first model z3 finds, one run per seed, 150 seeds: a handful of architectures repeat over and over."""
    chunks = [sample_arrays(SMALL, 1, method="limited", seed=seed) for seed in range(150)]
    arrays = tuple(np.concatenate(p) for p in zip(*chunks))
    result = check_uniformity(SMALL, arrays, level=LEVEL, replace=True)
    assert not result.uniform and result.overall_p < 1e-6


def test_check_command_json_and_exit_codes(tmp_path):
    space_args = ["-I", "14,9", "-O", "3,2", "-n", "1", "-N", "3", "--rounding", "floor", "--relation", "any"]
    code, _, err = cli("sample", *space_args, "-M", "5000", "--with-replacement", "--seed", "3",
                       "-o", str(tmp_path / "u.jsonl"))
    assert code == 0, err
    code, out, _ = cli("check", str(tmp_path / "u.jsonl"), "--json")
    payload = json.loads(out)
    assert code == 0 and payload["uniform"] is True and payload["draws"] == 5000
    assert {"name", "statistic", "p_value"} <= set(payload["tests"][0])
    # the same file declared distinct has repeats: not uniform, exit 1
    code, out, _ = cli("check", str(tmp_path / "u.jsonl"), "--distinct")
    assert code == 1 and "NOT uniform" in out
    # npz input
    code, _, err = cli("sample", *space_args, "-M", "3000", "--seed", "4", "-o", str(tmp_path / "d.npz"))
    assert code == 0, err
    code, out, _ = cli("check", str(tmp_path / "d.npz"), *space_args, "--distinct")
    assert code == 0, out


def test_check_bad_input(tmp_path):
    space_args = ["-I", "30", "-O", "20", "-n", "2", "-N", "3"]
    code, _, err = cli("sample", *space_args, "-M", "20", "-o", str(tmp_path / "a.jsonl"))
    assert code == 0
    (tmp_path / "bad.jsonl").write_text('{"kernel": [[5]], "stride": [[1]]\n')
    cases = [
        ("check", str(tmp_path / "missing.jsonl"), *space_args),
        ("check", str(tmp_path / "bad.jsonl"), *space_args),
        ("check", str(tmp_path / "a.jsonl"), "-I", "30", "-O", "21", "-n", "2", "-N", "3"),  # another space
        ("check", str(tmp_path / "a.jsonl"), *space_args, "--level", "2"),
    ]
    for args in cases:
        code, out, err = cli(*args)
        assert code == 2 and err.startswith("nasgen: error:") and err.count("\n") == 1, (args, err)


# -- constrained spaces, streams and rows (issue 32) ---------------------------------------------

ABSORBED = SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor")
REJECTED_SPACE = SearchSpace((30, 30), (10, 10), 1, 3)
REJECTED = ["sum(k[0]) + sum(k[1]) == 9"]


@pytest.mark.parametrize("space, where", [
    (SearchSpace((30, 30), (20, 20), 2, 3, pool=(2, 1)), ["k[0][0] <= 3"]),          # absorbed
    (SearchSpace((12, 12), (4, 4), 1, 3, square=True), ["size[0][0] >= 8"]),         # absorbed, square
    (SearchSpace((30, 30), (20, 20), 2, 3, pool=(2, 1)), ["k[0][0] + k[1][1] <= 7"]),  # rejected
])
def test_constrained_marginals_match_enumeration(space, where):
    """The constrained space enumerated by brute force (filter every member): every statistic is 0."""
    from nasgen.constraints.language import evaluate_all_arrays, parse_where_all

    members = []
    for arrays in nasgen.space.tables.SpaceTables(space).enumerate_arrays(batch=100000):
        keep = evaluate_all_arrays(parse_where_all(where), *arrays, space)
        members.append(tuple(a[keep] for a in arrays))
    arrays = tuple(np.concatenate(p) for p in zip(*members))
    result = check_uniformity(space, arrays, replace=False, where=where)
    assert len(result.tests) > 3
    for test in result.tests:
        assert test.statistic == pytest.approx(0.0, abs=1e-6), test
    assert result.uniform


def contaminate(space, where, arrays, fraction, seed):
    """Replace ``fraction`` of the draws by copies of one architecture of the constrained space."""
    rng = np.random.default_rng(seed)
    M = len(arrays[0])
    chosen = rng.choice(M, size=int(fraction * M), replace=False)
    layers, kernel, stride = (a.copy() for a in arrays)
    layers[chosen], kernel[chosen], stride[chosen] = layers[0], kernel[0], stride[0]
    return layers, kernel, stride


@pytest.mark.slow
def test_constrained_sample_of_1e5_passes_and_3_percent_contamination_is_flagged():
    """The issue's case: 10^5 exact draws under an absorbed atom pass at 0.001 (the old check said p = 0)."""
    where = ["k[0][0] <= 7"]
    arrays = sample_arrays(ABSORBED, 100000, seed=0, replace=True, where=where)
    result = check_uniformity(ABSORBED, arrays, level=LEVEL, replace=True, where=where)
    assert result.uniform, [t for t in result.tests if t.p_adjusted <= LEVEL]
    bad = contaminate(ABSORBED, where, arrays, 0.03, seed=1)
    result = check_uniformity(ABSORBED, bad, level=LEVEL, replace=True, where=where)
    assert not result.uniform and result.overall_p < 1e-6
    # the unconstrained space's marginals would reject the honest sample: the constraint matters
    assert not check_uniformity(ABSORBED, arrays, level=LEVEL, replace=True).uniform


def test_rejected_atoms_use_the_enumerated_restriction():
    arrays = sample_arrays(REJECTED_SPACE, 20000, seed=2, replace=True, where=REJECTED)
    result = check_uniformity(REJECTED_SPACE, arrays, level=LEVEL, replace=True, where=REJECTED)
    assert result.uniform and any(t.name.startswith("whole space") for t in result.tests)
    assert not check_uniformity(REJECTED_SPACE, contaminate(REJECTED_SPACE, REJECTED, arrays, 0.03, 3),
                                level=LEVEL, replace=True, where=REJECTED).uniform
    # draws that violate the constraint: flagged by name, p = 0
    free = sample_arrays(REJECTED_SPACE, 2000, seed=4, replace=True)
    result = check_uniformity(REJECTED_SPACE, free, level=LEVEL, replace=True, where=REJECTED)
    assert not result.uniform and result.tests[0].name.startswith("--where holds") and result.tests[0].p_value == 0


def test_rejected_atoms_on_a_large_restriction_say_what_is_skipped():
    space = ABSORBED
    where = ["k[0][0] + k[0][1] <= 40"]  # two chains at once: applied by rejection on 10^19 candidates
    arrays = sample_arrays(space, 500, seed=0, replace=True, where=where)
    result = check_uniformity(space, arrays, replace=True, where=where)
    assert [t.name for t in result.tests] == ["--where holds (0 of 500 draws violate it)"]
    assert "every marginal, repeats and whole-space test" in result.skipped[0]


def test_deep_space_is_checked_in_linear_time():
    """N = 100000 layers allowed, chains of at most 10: the tests stop at the deepest possible layer."""
    space = SearchSpace((30,), (20,), 1, 100000)
    arrays = sample_arrays(space, 400, seed=1, replace=True)
    result = check_uniformity(space, arrays, replace=True)
    names = [t.name for t in result.tests] + list(result.skipped)
    assert result.uniform and max(int(n.split("layer ")[1].split(",")[0]) for n in names if n.startswith("pair")) == 9


def test_check_reads_the_sidecar_constraints_and_its_input_once(tmp_path):
    args = ["-I", "30,30", "-O", "10,10", "-n", "1", "-N", "3"]
    code, _, err = cli("sample", *args, "--where", REJECTED[0], "-M", "3000", "--with-replacement", "--seed", "5",
                       "-o", tmp_path / "c.jsonl")
    assert code == 0, err
    code, out, err = cli("check", tmp_path / "c.jsonl")
    assert code == 0 and "uniform of the space under sum(k[0]) + sum(k[1]) == 9" in out, out + err
    # without the constraint the same draws are far from uniform on the whole space
    code, out, _ = cli("check", tmp_path / "c.jsonl", "--where", "layers >= 1")
    assert code == 1 and "NOT uniform" in out
    # standard input (one read): the same verdict
    data = (tmp_path / "c.jsonl").read_bytes()
    code, out, err = run_cli("check", "-", *args, "--where", REJECTED[0], "--json", stdin=data)
    assert code == 0 and json.loads(out)["draws"] == 3000, err


def test_check_reads_a_fifo(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    args = ["-I", "30", "-O", "20", "-n", "2", "-N", "3"]
    code, _, _ = cli("sample", *args, "-M", "45", "-o", tmp_path / "a.jsonl")
    assert code == 0
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    checker = subprocess.Popen([sys.executable, "-m", "nasgen", "check", str(fifo), *args, "--distinct"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with open(fifo, "wb") as writer:
        writer.write((tmp_path / "a.jsonl").read_bytes())
    try:
        out, err = checker.communicate(timeout=60)
    finally:
        if checker.poll() is None:
            checker.kill()
            checker.wait()
    assert checker.returncode == 0 and "45 draws: uniform" in out, err


def test_check_refuses_rows_as_adj_does(tmp_path):
    args = ["-I", "30", "-O", "20", "-n", "1", "-N", "3"]
    rows = ['{"kernel": [["8"]], "stride": [[1]]}', '{"kernel": [[8.9]], "stride": [[1]]}',
            '{"layers": 2, "kernel": [[11]], "stride": [[1]]}', '{"kernel": [[11]], "stride": [[1]]}\n' * 3 + "[" * 5000]
    for row in rows:
        (tmp_path / "r.jsonl").write_text(row + "\n")
        checked = cli("check", tmp_path / "r.jsonl", *args)
        adj = cli("adj", tmp_path / "r.jsonl", *args)
        assert checked[0] == adj[0] == 2 and checked[2] == adj[2] and checked[2].count("\n") == 1, (row, checked)
    import zipfile

    empty = tmp_path / "empty.npz"
    np.savez(empty, layers=np.zeros(0, np.uint8), kernel=np.zeros((0, 3, 1), np.uint8),
             stride=np.zeros((0, 3, 1), np.uint8))
    code, _, err = cli("check", empty, *args)
    assert code == 2 and "holds no architectures" in err and err.count("\n") == 1
    with zipfile.ZipFile(tmp_path / "huge.npz", "w") as archive:
        header = b"\x93NUMPY\x01\x00v\x00{'descr': '|u1', 'fortran_order': False, 'shape': (10000000000000,), }"
        archive.writestr("layers.npy", header.ljust(127) + b"\n")
        archive.writestr("kernel.npy", header.ljust(127) + b"\n")
        archive.writestr("stride.npy", header.ljust(127) + b"\n")
    code, _, err = cli("check", tmp_path / "huge.npz", *args)
    assert code == 2 and err.startswith("nasgen: error:") and err.count("\n") == 1, err


# -- depth weights -----------------------------------------------------------------------

DEPTHS = SearchSpace((14, 9), (4, 3), 1, 3, pool=(2, 1), relation="ge")   # 3 depths of unequal sizes


def test_depth_balanced_draws_pass_against_their_own_distribution_and_fail_against_the_space():
    arrays = sample_arrays(DEPTHS, 20000, seed=3, replace=True, depth_weights="uniform")
    own = check_uniformity(DEPTHS, arrays, depth_weights="uniform")
    assert own.uniform and any(t.name.startswith("whole space") for t in own.tests)
    assert any(t.name.startswith("repeats") for t in own.tests)
    assert not check_uniformity(DEPTHS, arrays).uniform
    plain = sample_arrays(DEPTHS, 20000, seed=3, replace=True)
    assert check_uniformity(DEPTHS, plain).uniform and not check_uniformity(DEPTHS, plain, depth_weights="uniform").uniform


def test_depth_balanced_draws_under_absorbed_constraints_pass():
    where = ["k[0][0] % 2 == 1 or k[0][0] == 0"]
    arrays = sample_arrays(DEPTHS, 20000, seed=5, replace=True, where=where, depth_weights="uniform")
    assert check_uniformity(DEPTHS, arrays, where=where, depth_weights="uniform").uniform


def test_the_sidecar_records_depth_weights_and_check_reads_them(tmp_path):
    target = tmp_path / "d.npz"
    space = ["-I", "14,9", "-O", "4,3", "-n", "1", "-N", "3", "--pool", "2,1", "--relation", "ge"]
    code, _, err = cli("sample", *space, "-M", "20000", "--with-replacement", "--depth-weights", "uniform",
                       "--seed", "8", "-o", str(target))
    assert code == 0, err
    assert json.loads((tmp_path / "d.npz.config.json").read_text())["sampling"]["options"]["depth_weights"] == "uniform"
    code, out, _ = cli("check", str(target))
    assert code == 0 and "with uniform depth weights" in out
    code, out, _ = cli("check", str(target), "--depth-weights", "space")
    assert code == 1 and "NOT uniform" in out


def test_depth_weights_under_rejected_constraints_are_refused_in_one_line(tmp_path):
    space = ["-I", "14,9", "-O", "4,3", "-n", "1", "-N", "3", "--pool", "2,1", "--relation", "ge"]
    rejected = "sum(k[0]) + sum(k[1]) <= 12"
    code, out, err = cli("sample", *space, "-M", "5", "--where", rejected, "--depth-weights", "uniform")
    assert code == 2 and err.count("\n") == 1 and "applied by rejection" in err and out == ""
    code, _, err = cli("sample", *space, "-M", "5", "--method", "uniwit", "--depth-weights", "uniform")
    assert code == 2 and "--depth-weights does not apply to --method uniwit" in err
    arrays = sample_arrays(DEPTHS, 500, seed=1, replace=True, where=[rejected])
    with pytest.raises(nasgen.NasgenError, match="applied by rejection"):
        check_uniformity(DEPTHS, arrays, where=[rejected], depth_weights="uniform")
