"""UniGen3, CMSGen and ApproxMC on the CNF (the samplers extra, part of the test extra: never skipped)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nasgen
from nasgen.samplers.check import check_uniformity
from nasgen.common.errors import HashingError
from nasgen.samplers.hashing import HashingSampler, approx_count
from nasgen.samplers.registry import sample_arrays
from nasgen.space.definition import SearchSpace, check_membership
from nasgen.constraints.language import evaluate_all, parse_where_all

from tests.conftest import run_cli

LEVEL = 0.001


def cli(*args):
    return run_cli(*args)


@pytest.mark.parametrize("method", ["unigen", "cmsgen"])
def test_draws_are_members_distinct_and_satisfy_where(method):
    space = SearchSpace((30, 30), (20, 20), 2, 3, pool=(2, 1))
    where = ["k[0][0] > s[0][0] + 2"]
    archs = nasgen.samplers.registry.sample(space, 40, method=method, seed=3, where=where)
    assert len(archs) == len(set(archs)) == 40
    for arch in archs:
        check_membership(space, arch)
        assert evaluate_all(parse_where_all(where), arch, space)


def test_unigen_is_reproducible_and_passes_check():
    """2000 draws with replacement on 49 architectures (power > 0.99 against doubling 10% of them)."""
    from tests.samplers.test_check import power_against_bias

    space = SearchSpace((30, 30), (20, 20), 2, 2, pool=(2, 1))
    assert power_against_bias(space, 2000) > 0.99
    a = sample_arrays(space, 2000, method="unigen", seed=1, replace=True)
    b = sample_arrays(space, 2000, method="unigen", seed=1, replace=True)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert check_uniformity(space, a, level=LEVEL, replace=True).uniform


def test_cmsgen_is_flagged():
    """CMSGen on a floor-rounding space: 3000 draws, far from uniform (overall p below 1e-6)."""
    space = SearchSpace((14, 9), (3, 2), 1, 3, rounding="floor", relation="any")
    arrays = sample_arrays(space, 3000, method="cmsgen", seed=1, replace=True)
    result = check_uniformity(space, arrays, level=LEVEL, replace=True)
    assert not result.uniform and result.overall_p < 1e-6


def test_approxmc_within_its_bounds():
    for space in [SearchSpace((30,), (20,), 2, 3), SearchSpace((30, 30, 30), (20, 20, 20), 3, 3)]:
        result = approx_count(space, epsilon=0.8, delta=0.2, seed=1)
        low, high = result.bounds
        assert low <= nasgen.count(space) <= high
    assert approx_count(SearchSpace((30,), (20,), 2, 3), where=["k[0][0] > 5"]).estimate == \
        sum(1 for a in nasgen.enumerate_architectures(SearchSpace((30,), (20,), 2, 3)) if a.kernel[0][0] > 5)


def test_timeout_stops_and_keeps_what_was_drawn():
    space = SearchSpace((30, 30, 30), (20, 20, 20), 4, 4)
    with HashingSampler(space, "unigen", 10**6, seed=1, timeout=1.0) as sampler:
        chunks = list(sampler.draw())
    assert sampler.stop_reason == "timeout"
    for layers, kernel, stride in chunks:
        for arch in nasgen.space.encoding.arrays_to_architectures(layers, kernel, stride):
            check_membership(space, arch)


def test_missing_package_is_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyunigen", None)  # import pyunigen now raises ImportError
    with pytest.raises(HashingError, match=r'pip install "nasgen\[samplers\]"'):
        HashingSampler(SearchSpace((30,), (20,), 2, 2), "unigen", 5)
    code, _, err = cli("sample", "-I", "30", "-O", "20", "-n", "2", "--method", "unigen", "-M", "5")
    assert code == 2 and "nasgen[samplers]" in err and err.count("\n") == 1


def test_cli_sample_and_count(tmp_path):
    args = ["-I", "30,30", "-O", "20,20", "-n", "2", "--pool", "2,1"]
    code, _, err = cli("sample", *args, "--method", "unigen", "-M", "10", "--seed", "2", "-o", str(tmp_path / "u.jsonl"))
    assert code == 0, err
    archs = nasgen.read_architectures(tmp_path / "u.jsonl", SearchSpace((30, 30), (20, 20), 2, 2, pool=(2, 1)))
    assert len(set(archs)) == 10
    code, out, err = cli("count", *args, "--method", "approxmc", "--epsilon", "0.5", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["exact"] is False and payload["bounds"][0] <= 49 <= payload["bounds"][1]
    code, _, err = cli("count", *args, "--method", "approxmc", "--delta", "1.5")
    assert code == 2 and err.count("\n") == 1


def _canonical_bits(space, cnf):
    """(C, V) canonical bits of every architecture, from the library's enumeration (independent of the CNF)."""
    layers, kernel, stride = nasgen.space.encoding.to_arrays(space, list(nasgen.enumerate_architectures(space)))
    bits = np.zeros((len(layers), space.vector_bits), dtype=np.uint8)
    for l in range(space.max_layers):
        for d in range(space.dims):
            for b in range(space.bit_width):
                bits[:, cnf.kernel_var(l, d, b) - 1] = kernel[:, l, d] >> b & 1
                bits[:, cnf.stride_var(l, d, b) - 1] = stride[:, l, d] >> b & 1
        bits[:, cnf.active_var(l) - 1] = layers > l
    return bits


@pytest.mark.parametrize("space", [SearchSpace((30, 30), (20, 20), 3, 3),
                                   SearchSpace((14, 9), (3, 2), 1, 2, rounding="floor", relation="any")])
def test_independent_support_determines_every_canonical_bit(space):
    """Projection on the support is one-to-one on the enumerated architectures (so UniGen's cells are unchanged)."""
    from nasgen.samplers.cnf import encode_space
    from nasgen.samplers.hashing import independent_support

    cnf = encode_space(space)
    support = independent_support(cnf)
    assert set(support) <= set(cnf.sampling) and len(support) < len(cnf.sampling)
    bits = _canonical_bits(space, cnf)
    assert len({row[np.array(support) - 1].tobytes() for row in bits}) == len(bits) == nasgen.count(space)


def test_cell_hash_pair_keeps_the_count():
    from nasgen.samplers.hashing import cell_hash_of

    for count in [1, 7, 2**20 - 1, 2**20, 592704, 33805340237948063635, 10**18 + 12345]:
        cell, hashes = cell_hash_of(count)
        assert cell < 2**21 and abs(cell * 2**hashes - count) <= 2**hashes // 2


def test_exact_count_source_and_approxmc_fallback(monkeypatch):
    """Exact count with and without an absorbed --where; ApproxMC where the tables cannot count."""
    import nasgen.samplers.hashing as hashing

    space = SearchSpace((30, 30), (20, 20), 2, 3, pool=(2, 1))
    where = ["k[0][0] > s[0][0] + 2"]
    expected = sum(1 for a in nasgen.enumerate_architectures(space) if evaluate_all(parse_where_all(where), a, space))
    assert hashing.exact_count(space, where) == expected and hashing.exact_count(space) == nasgen.count(space)
    assert hashing.exact_count(SearchSpace((30,) * 3, (20,) * 3, 4, 4), ["k[0][0] + k[1][1] > 5"]) is None
    with HashingSampler(space, "unigen", 5, seed=1, where=where) as sampler:
        list(sampler.draw())
    assert sampler.statistics.count_source == "exact"
    monkeypatch.setattr(hashing, "exact_count", lambda space, where=(): None)
    with HashingSampler(space, "unigen", 30, seed=1, where=where) as sampler:
        archs = [a for chunk in sampler.draw() for a in nasgen.space.encoding.arrays_to_architectures(*chunk)]
    assert sampler.statistics.count_source == "approxmc" and len(set(archs)) == 30
    for arch in archs:
        check_membership(space, arch)
        assert evaluate_all(parse_where_all(where), arch, space)


def test_round_size_flag(tmp_path):
    """--round-size reaches UniGen (one chunk per round); a bad value or another method is one line, exit 2."""
    args = ["-I", "30,30", "-O", "20,20", "-n", "2", "--pool", "2,1", "-M", "10", "--seed", "2"]
    out = tmp_path / "u.jsonl"
    code, _, err = cli("sample", *args, "--method", "unigen", "--round-size", "4", "-o", str(out))
    assert code == 0, err
    sidecar = json.loads(next(tmp_path.glob("u.jsonl*.json")).read_text())
    assert sidecar["statistics"]["rounds"] >= 3 and len(set(out.read_text().splitlines())) == 10
    for bad, message in [(["--method", "unigen", "--round-size", "0"], "round_size"),
                         (["--method", "cmsgen", "--round-size", "5"], "--round-size")]:
        code, _, err = cli("sample", *args, *bad, "-o", str(tmp_path / "bad.jsonl"))
        assert code == 2 and message in err and err.count("\n") == 1
        assert not (tmp_path / "bad.jsonl").exists()
