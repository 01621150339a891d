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

from .conftest import run_cli

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
