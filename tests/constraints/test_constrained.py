"""Constrained spaces: absorbed atoms against brute force, rejection's uniformity, the vectorised evaluator."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from nasgen.common.errors import RejectionBudgetError
from nasgen.common.stats import wilson_interval
from nasgen.constraints.constrained import ConstrainedSpace, split_atoms
from nasgen.space.encoding import arrays_to_architectures, to_arrays
from nasgen.space.tables import SpaceTables, space_structure
from nasgen.nn.spec import ModelSpec
from nasgen.common.errors import NasgenError
from nasgen.space.definition import Architecture, SearchSpace
from nasgen.common.errors import WhereError
from nasgen.constraints.costs import chain_costs
from nasgen.constraints.language import parse_where

from tests.conftest import brute_force_space, small_spaces

MODEL = types.SimpleNamespace(width=4, in_channels=3, num_classes=5, norm="batch", head="logits", pooling="max")


def _brute(space: SearchSpace, limit: int = 4000):
    # The exact count only bounds the brute force's cost; the brute force is the oracle.
    assume(0 < SpaceTables(space).count <= limit)
    return sorted(brute_force_space(space), key=lambda a: (a.kernel, a.stride))


# -- random expressions --------------------------------------------------------


def _variable(draw, space, layer=None, dims=None):
    name = draw(st.sampled_from(["k", "s", "size"]))
    layer = draw(st.integers(0, space.max_layers - 1)) if layer is None else layer
    dim = draw(st.sampled_from(dims if dims is not None else range(space.dims)))
    return f"{name}[{layer}][{dim}]"


@st.composite
def position_atoms(draw, space):
    """An atom over one layer position and one chain: always absorbable."""
    layer = draw(st.integers(0, space.max_layers - 1))
    dims = list(range(space.dims)) if space.square else [draw(st.integers(0, space.dims - 1))]
    a, b = _variable(draw, space, layer, dims), _variable(draw, space, layer, dims)
    c = draw(st.integers(0, 6))
    form = draw(st.integers(0, 5))
    op = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
    if form == 0:
        return f"{a} {op} {c}"
    if form == 1:
        return f"{a} {op} {draw(st.integers(1, 3))} * {b}"
    if form == 2:
        return f"{a} == {c} or {b} {op} {c}"
    if form == 3:
        return f"{c} <= {a} <= {c + draw(st.integers(0, 4))}"
    if form == 4:
        return f"not ({a} % 2 == {draw(st.integers(0, 1))})"
    return f"max(k[{layer}]) <= {c + 2}"


@st.composite
def any_atoms(draw, space):
    """Any expression: absorbable or not."""
    form = draw(st.integers(0, 6))
    if form <= 1:
        return draw(position_atoms(space))
    a, b = _variable(draw, space), _variable(draw, space)
    c = draw(st.integers(0, 12))
    if form == 2:
        return f"layers {draw(st.sampled_from(['<', '<=', '>', '>=', '==', '!=']))} {draw(st.integers(0, 4))}"
    if form == 3:
        return f"{a} + {b} <= {c}"
    if form == 4:
        return f"sum(k[0]) + prod(s[{space.max_layers - 1}]) {draw(st.sampled_from(['<', '>=']))} {c}"
    if form == 5:
        return f"{a} // ({b} + 1) >= {draw(st.integers(0, 3))} or layers == {draw(st.integers(1, 3))}"
    return f"params {draw(st.sampled_from(['<', '>=']))} {draw(st.integers(50, 3000))}"


# -- absorbed atoms: exact counts and enumeration against brute force ---------------


@given(st.data(), small_spaces(max_size=10))
@settings(max_examples=60)
def test_absorbed_counts_equal_brute_force(data, space):
    archs = _brute(space)
    exprs = [data.draw(position_atoms(space)) for _ in range(data.draw(st.integers(1, 3)))]
    if data.draw(st.booleans()):
        exprs.append(f"layers != {data.draw(st.integers(space.min_layers, space.max_layers))}")
    wheres = [parse_where(e) for e in exprs]
    constrained = ConstrainedSpace(space, wheres)
    assert constrained.all_absorbed, [a.text for a in constrained.atoms if a.kind == "rejected"]
    expected = [a for a in archs if all(w.evaluate(a, space) for w in wheres)]
    result = constrained.count()
    assert result.exact and result.count == len(expected)
    listed = [a for arrays in constrained.tables.enumerate_arrays() for a in arrays_to_architectures(*arrays)]
    assert sorted(listed, key=lambda a: (a.kernel, a.stride)) == expected


@given(st.data(), small_spaces(max_size=10))
# most small spaces are empty or have no mixed constraint to draw: some seeds filter most inputs (seed 5777...587593)
@settings(max_examples=40, suppress_health_check=[HealthCheck.filter_too_much])
def test_mixed_counts_equal_brute_force(data, space):
    archs = _brute(space)
    exprs = [data.draw(any_atoms(space)) for _ in range(data.draw(st.integers(1, 3)))]
    wheres = [parse_where(e) for e in exprs]
    constrained = ConstrainedSpace(space, wheres, model=MODEL)
    expected = sum(all(w.evaluate(a, space, MODEL) for w in wheres) for a in archs)
    result = constrained.count()
    assert result.exact and result.count == expected


def test_inactive_layer_forces_depth():
    space = SearchSpace((12,), (3,), 1, 4, rounding="floor")
    archs = brute_force_space(space)
    constrained = ConstrainedSpace(space, ["k[3][0] > 2"])
    assert constrained.all_absorbed
    assert constrained.count().count == sum(a.layers == 4 and a.kernel[3][0] > 2 for a in archs)
    # An atom that the inactive values satisfy leaves the shallow chains alone.
    constrained = ConstrainedSpace(space, ["k[3][0] <= 2"])
    assert constrained.count().count == sum(a.layers < 4 or a.kernel[3][0] <= 2 for a in archs)


def test_split_atoms_classifies():
    space = SearchSpace((30, 30), (20, 20), 1, 3)
    kinds = {a.text: a.kind for a in split_atoms(
        ["k[0][0] <= 7 and 2 <= s[1][0] <= 3", "max(k[0]) <= 11", "layers == 2", "k[0][0] + k[0][1] < 9",
         "flops < 1e9"], space, MODEL)}
    assert kinds == {
        "k[0][0] <= 7": "position", "2 <= s[1][0]": "position", "s[1][0] <= 3": "position",
        "k[0][0] <= 11": "position", "k[0][1] <= 11": "position", "layers == 2": "layers",
        "(k[0][0] + k[0][1]) < 9": "rejected", "flops < 1000000000": "rejected",
    }
    square = SearchSpace((30, 30), (20, 20), 1, 3, square=True)
    assert [a.kind for a in split_atoms(["k[0][0] + size[0][1] < 30"], square)] == ["position"]


# -- uniformity ---------------------------------------------------------------------


@pytest.mark.parametrize("space, exprs", [
    (SearchSpace((14,), (4,), 1, 3, rounding="floor", kernel_range=(1, 6)),
     ["k[0][0] <= 4", "k[0][0] + k[1][0] + k[2][0] >= 6"]),
    (SearchSpace((9, 8), (3, 2), 1, 2, rounding="floor"),
     ["s[0][1] == 1 or s[0][1] == 2", "size[0][0] >= 4", "k[0][0] != k[0][1]"]),
    (SearchSpace((10, 10), (3, 3), 1, 3, rounding="floor", square=True, kernel_range=(1, 5)),
     ["k[0][0] >= 2 * s[0][0]", "layers >= 2", "sum(k[0]) + sum(k[1]) <= 10"]),
])
@pytest.mark.parametrize("replace", [True, False])
@pytest.mark.parametrize("enumerate_limit", [0, 10**6], ids=["rejection", "filtered"])
def test_rejection_is_uniform(space, exprs, replace, enumerate_limit):
    wheres = [parse_where(e) for e in exprs]
    members = [a for a in brute_force_space(space) if all(w.evaluate(a, space) for w in wheres)]
    constrained = ConstrainedSpace(space, wheres)
    assert not constrained.all_absorbed and constrained.absorbed
    assert constrained.count().count == len(members)
    index = {a: i for i, a in enumerate(members)}
    if replace:
        draws = 60 * len(members)
        chunks = list(constrained.iter_sample_arrays(draws, seed=11, replace=True, enumerate_limit=enumerate_limit))
        counts = np.bincount([index[a] for c in chunks for a in arrays_to_architectures(*c)], minlength=len(members))
    else:
        # Distinct draws of half the space, repeated: each member's inclusion frequency is uniform.
        M = len(members) // 2
        counts = np.zeros(len(members), dtype=np.int64)
        for seed in range(120):
            got = [a for c in constrained.iter_sample_arrays(M, seed=seed, enumerate_limit=enumerate_limit)
                   for a in arrays_to_architectures(*c)]
            assert len(got) == len(set(got)) == M
            for a in got:
                counts[index[a]] += 1
    assert stats.chisquare(counts).pvalue > 0.001


def test_sampling_is_seeded_and_streams():
    space = SearchSpace((30, 30), (7, 7), 1, 3, rounding="floor")
    constrained = ConstrainedSpace(space, ["k[0][0] <= 7", "sum(k[0]) + sum(k[1]) <= 20"])
    a = [np.concatenate(x) for x in zip(*constrained.iter_sample_arrays(500, seed=3, chunk=100, enumerate_limit=0))]
    b = [np.concatenate(x) for x in zip(*constrained.iter_sample_arrays(500, seed=3, chunk=100, enumerate_limit=0))]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    archs = arrays_to_architectures(*a)
    assert len(set(archs)) == 500
    assert all(parse_where("k[0][0] <= 7 and sum(k[0]) + sum(k[1]) <= 20").evaluate(x, space) for x in archs)


def test_budget_runs_out_with_one_line():
    space = SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor")
    constrained = ConstrainedSpace(space, ["sum(k[0]) + sum(k[1]) + sum(k[2]) <= 8"])
    stats_seen = {}
    with pytest.raises(RejectionBudgetError, match=r"found \(acceptance .*--method unigen") as info:
        list(constrained.iter_sample_arrays(50, seed=0, max_draws=20000, statistics=stats_seen))
    assert "\n" not in str(info.value)
    assert stats_seen["draws"] == 20000


def test_empty_constrained_space():
    space = SearchSpace((30,), (20,), 1, 2)
    constrained = ConstrainedSpace(space, ["k[0][0] > 30"])
    assert constrained.count().count == 0 and constrained.count().exact
    with pytest.raises(NasgenError, match="constrained space is empty"):
        list(constrained.iter_sample_arrays(3))
    constrained = ConstrainedSpace(space, ["k[0][0] + k[1][0] > 60"])
    assert constrained.count().count == 0
    with pytest.raises(NasgenError, match="constrained space is empty"):
        list(constrained.iter_sample_arrays(3))
    with pytest.raises(RejectionBudgetError, match="with 0 of 3 architectures found"):
        list(constrained.iter_sample_arrays(3, max_draws=1000, enumerate_limit=0))


@pytest.mark.parametrize("budget", [0, -1, 2.5, True, "10"])
def test_bad_budget(budget):
    constrained = ConstrainedSpace(SearchSpace((30,), (20,), 1, 2), ["k[0][0] + k[1][0] > 6"])
    with pytest.raises(NasgenError, match="max_draws must be a positive integer"):
        list(constrained.iter_sample_arrays(3, max_draws=budget))


def test_estimate_interval_covers_the_truth():
    space = SearchSpace((28, 28), (7, 7), 1, 3, rounding="floor")  # 224,836 architectures, 54,171 accepted
    constrained = ConstrainedSpace(space, ["k[0][0] + k[0][1] + k[1][0] <= 14"])
    truth = constrained.count().count  # small enough to enumerate
    estimate = constrained.count(seed=5, draws=200_000, enumerate_limit=0)
    assert not estimate.exact and estimate.interval[0] <= truth <= estimate.interval[1]
    assert estimate.to_dict()["exact"] is False and len(estimate.to_dict()["interval"]) == 2


@pytest.mark.parametrize("accepted, draws", [(0, 100), (50, 100), (3, 10**6), (999, 1000)])
def test_wilson_interval_equals_scipy(accepted, draws):
    want = stats.binomtest(accepted, draws).proportion_ci(confidence_level=0.95, method="wilson")
    np.testing.assert_allclose(wilson_interval(accepted, draws), (want.low, want.high), rtol=1e-9, atol=1e-15)


def test_model_names_need_options():
    space = SearchSpace((30,), (20,), 2, 2)
    with pytest.raises(WhereError, match="needs the chain model.s options"):
        ConstrainedSpace(space, ["flops <= 2e9"])
    assert parse_where("flops <= 2e9").tree[3] == ("const", 2_000_000_000)
    with pytest.raises(WhereError, match="only integers"):
        parse_where("flops <= 2.5e0")


def test_structure_counts_match_the_known_figures():
    space = SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor")
    assert ConstrainedSpace(space, [], base=space_structure(space)).count().count == 33805340237948063635
    space = SearchSpace((224, 224), (7, 7), 1, 5, kernel_range=(1, 11))
    assert ConstrainedSpace(space, ["layers == 3"]).count().count == 44944


# -- the command line ----------------------------------------------------------------

BIG = ["-I", "224,224", "-O", "7,7", "-n", "1", "-N", "5", "--rounding", "floor"]


def test_cli_count_where_exact_and_estimated():
    from tests.test_cli import run

    out = run("count", "-I", "224,224", "-O", "7,7", "-n", "1", "-N", "5", "--kernel", "1:11", "--where", "layers == 3")
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "44944"
    out = run("count", *BIG, "--kernel", "1:11", "--where", "sum(k[0]) + sum(k[1]) <= 12", "--json", "--draws", "100000")
    payload = json.loads(out.stdout)
    assert payload["exact"] is False and payload["draws"] == 100000
    low, high = payload["interval"]
    assert low <= payload["count"] <= high and 0 < payload["acceptance"] < 1
    text = run("count", *BIG, "--kernel", "1:11", "--where", "sum(k[0]) + sum(k[1]) <= 12", "--draws", "100000")
    assert "estimate: 95% interval" in text.stdout
    empty = run("count", *BIG, "--where", "k[0][0] > 300", "--json")
    assert json.loads(empty.stdout)["count"] == 0 and json.loads(empty.stdout)["exact"] is True


def test_cli_sample_where_absorbed_and_rejected(tmp_path):
    from tests.test_cli import run

    target = tmp_path / "a.jsonl"
    out = run("sample", *BIG, "--where", "k[0][0] <= 7", "-M", "20", "--seed", "4", "-o", str(target))
    assert out.returncode == 0, out.stderr
    archs = [Architecture.from_json(line) for line in target.read_text().splitlines()]
    assert len(archs) == len(set(archs)) == 20 and all(a.kernel[0][0] <= 7 for a in archs)
    sidecar = json.loads((tmp_path / "a.jsonl.config.json").read_text())
    assert sidecar["sampling"]["where"] == ["k[0][0] <= 7"]
    target = tmp_path / "f.jsonl"
    out = run("sample", *BIG, "--kernel", "1:11", "--where", "flops <= 2e9", "--width", "64", "--in-channels", "3",
              "-M", "20", "-o", str(target))
    assert out.returncode == 0 and "draws accepted" in out.stderr
    model = types.SimpleNamespace(width=64, in_channels=3, num_classes=10, norm="batch", head="logits", pooling="max")
    space = SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor", kernel_range=(1, 11))
    layers, kernel, stride = to_arrays(space, [Architecture.from_json(x) for x in target.read_text().splitlines()])
    assert len(layers) == 20 and (chain_costs(layers, kernel, stride, space, model)[1] <= 2 * 10**9).all()


def test_cli_sample_budget_keeps_what_it_found(tmp_path):
    from tests.test_cli import run

    target = tmp_path / "b.jsonl"
    out = run("sample", *BIG, "--where", "sum(k[0]) + sum(k[1]) + sum(k[2]) <= 9", "-M", "50", "--max-draws",
              "70000", "-o", str(target))
    assert out.returncode == 0
    line = out.stderr.strip()
    assert "\n" not in line and "stopped: budget" in line and "--method unigen" in line and "acceptance" in line
    found = int(line.split("ran out with ")[1].split(" of")[0])
    assert len(target.read_text().splitlines()) == found


@pytest.mark.parametrize("args, message", [
    (["--where", "k[0][0] > 300"], "constrained space is empty"),
    (["--where", "k[9][0] > 1"], "layer index 9"),
    (["--where", "k[0][5] > 1"], "dimension index 5"),
    (["--where", "flops < 5"], "needs the chain model's options"),
    (["--where", "bogus > 1"], "unknown name 'bogus'"),
    (["--where", "k[0][0] + k[1][0] > 3", "--max-draws", "0"], "max_draws (--max-draws) must be a positive integer"),
    (["--width", "0", "--where", "params > 3"], "width"),
    (["--method", "uniwit", "--where", "params > 3"], "cannot express params"),
])
def test_cli_bad_where_input(tmp_path, args, message):
    from tests.test_cli import run

    target = tmp_path / "g.jsonl"
    target.write_text("keep\n")
    out = run("sample", *BIG, "-M", "3", "-o", str(target), *args, check=False)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("nasgen: error: ") and message in out.stderr
    assert target.read_text() == "keep\n" and not (tmp_path / "g.jsonl.config.json").exists()


def test_oversized_pair_tables_fall_back_to_rejection(monkeypatch):
    from nasgen.constraints import constrained

    monkeypatch.setattr(constrained, "MAX_EXPLICIT_PAIRS", 10)
    space = SearchSpace((12,), (3,), 1, 3, rounding="floor")
    wheres = [parse_where("k[1][0] <= 3"), parse_where("k[0][0] <= 4")]
    c = ConstrainedSpace(space, wheres)
    assert [a.kind for a in c.atoms] == ["rejected", "position"]
    assert c.count().count == sum(all(w.evaluate(a, space) for w in wheres) for a in brute_force_space(space))
