"""``nasgen search``: streamed rows, resuming a study, failing objectives and bad input."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("optuna")

from nasgen import SearchSpace  # noqa: E402
from nasgen.search.optuna import NasgenSampler  # noqa: E402
from tests.conftest import run_cli  # noqa: E402

SPACE = ["-I", "12,10", "-O", "6,5", "-n", "1", "-N", "3", "--rounding", "floor", "--kernel", "2:4", "--stride", "1:2"]
OBJECTIVES = '''
def depth(arch):
    return arch.layers + sum(sum(row) for row in arch.kernel) / 100

def flaky(arch):
    if arch.layers == 3:
        raise RuntimeError("three layers are refused")
    return float(arch.layers)
'''


@pytest.fixture
def objectives(tmp_path, monkeypatch):
    name = f"objectives_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(OBJECTIVES)
    monkeypatch.chdir(tmp_path)
    return name


def _rows(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_streams_rows_and_resumes_a_journal_study(objectives, tmp_path):
    journal = str(tmp_path / "study.log")
    code, out, err = run_cli("search", *SPACE, "--trials", "4", "--objective", f"{objectives}:depth",
                             "--storage", journal, "--study", "s", "--seed", "7")
    assert code == 0, err
    first = _rows(out)
    code, out, err = run_cli("search", *SPACE, "--trials", "7", "--objective", f"{objectives}:depth",
                             "--storage", journal, "--study", "s", "--seed", "7")
    assert code == 0, err
    second = _rows(out)
    assert [r["trial"] for r in first + second] == list(range(7))
    sampler = NasgenSampler(SearchSpace((12, 10), (6, 5), 1, 3, rounding="floor", kernel_range=(2, 4),
                                        stride_range=(1, 2)), seed=7)
    for row in first + second:
        assert row["state"] == "COMPLETE"
        assert row["architecture"] == sampler.uniform_architecture(row["trial"]).to_dict()
    assert "7 of 7 trials finished (3 run now" in err


def test_a_failing_objective_fails_its_trial_and_the_study_goes_on(objectives):
    code, out, err = run_cli("search", *SPACE, "--trials", "30", "--objective", f"{objectives}:flaky",
                             "--strategy", "evolution", "--population", "5", "--tournament", "2")
    assert code == 0, err
    rows = _rows(out)
    assert len(rows) == 30
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert failed and all(r["error"] == "RuntimeError: three layers are refused" and r["architecture"]["layers"] == 3
                          for r in failed)
    assert any(r["state"] == "COMPLETE" for r in rows)


@pytest.mark.parametrize("extra, message", [
    (["--trials", "0"], "argument --trials: must be a positive integer"),
    (["--trials", "x"], "argument --trials: must be a positive integer"),
    (["--trials", "2", "--storage", "/nonexistent-folder/s.log"], "cannot open the storage"),
    (["--trials", "2", "--storage", "sqlite:////nonexistent-folder/s.db"], "cannot open the storage"),
    (["--trials", "2", "--where", "k[0][0] > 40"], "is empty"),
    (["--trials", "2", "--objective", "no_such_module_here:f"], "cannot import the objective's module"),
    (["--trials", "2", "--objective", "nocolon"], "must be MODULE:FUNCTION"),
])
def test_bad_input_is_one_line_and_exit_2(objectives, extra, message):
    args = ["search", *SPACE, "--objective", f"{objectives}:depth", *extra]
    code, out, err = run_cli(*args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("nasgen: error:") and message in err, err
