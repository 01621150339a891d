"""nasgen bench: rows, resume, medians with ratios, the plot, local processes and a Dask LocalCluster."""

from __future__ import annotations

import json

from nasgen.samplers.benchmark import BenchRun, read_rows, run_sweep
from nasgen.space.definition import SearchSpace

from .conftest import run_cli

SPACE = ["-I", "30,30", "-O", "20,20", "-n", "2", "--pool", "2,1"]


def cli(*args):
    return run_cli(*args)


def test_sweep_rows_table_plot_and_resume(tmp_path):
    out = tmp_path / "rows.jsonl"
    code, table, err = cli("bench", *SPACE, "--methods", "exact,limited,cmsgen", "--repeats", "2", "-M", "10",
                           "--jobs", "2", "-o", str(out), "--plot", str(tmp_path / "t.png"),
                           "--markdown", str(tmp_path / "t.md"))
    assert code == 0, err
    rows = read_rows(out)
    assert len(rows) == 6
    for row in rows:
        assert {"method", "space", "seed", "encode_s", "solve_s", "found", "stop", "adj_t", "check_p"} <= set(row)
        assert row["found"] == 10
    assert {(r["method"], r["seed"]) for r in rows} == {(m, s) for m in ("exact", "limited", "cmsgen") for s in (0, 1)}
    assert "| exact | 2 |" in table and "1.00x" in table and (tmp_path / "t.md").read_text() == table
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # resume: a third repeat runs only the three new cells; the old rows stay as they were
    before = out.read_text()
    code, _, err = cli("bench", *SPACE, "--methods", "exact,limited,cmsgen", "--repeats", "3", "-M", "10",
                       "-o", str(out))
    assert code == 0, err
    assert out.read_text().startswith(before)
    assert len(read_rows(out)) == 9 and err.count("found") == 3


def test_torn_last_line_is_redone(tmp_path):
    out = tmp_path / "rows.jsonl"
    runs = [BenchRun(space=SearchSpace((30,), (20,), 2, 2).to_dict(), method="exact", seed=s, repeat=s, samples=5)
            for s in range(2)]
    run_sweep(runs, out)
    lines = out.read_text().splitlines()
    out.write_text(lines[0] + "\n" + lines[1][:20])  # interrupted in the middle of the second row
    rows = run_sweep(runs, out)
    assert sorted(r["seed"] for r in rows) == [0, 1]


def test_dask_local_cluster(tmp_path):
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        code, table, err = cli("bench", *SPACE, "--methods", "exact,limited", "--repeats", "2", "-M", "5",
                               "--scheduler", cluster.scheduler_address, "-o", str(tmp_path / "d.jsonl"))
    assert code == 0, err
    rows = read_rows(tmp_path / "d.jsonl")
    assert len(rows) == 4 and all(r["found"] == 5 for r in rows)


def test_bad_input(tmp_path):
    (tmp_path / "spaces.jsonl").write_text('{"input_shape": [30]}\n')
    (tmp_path / "notrows.jsonl").write_text('{"layers": 1}\n{"layers": 2}\n')
    cases = [
        ("bench", *SPACE, "--methods", "exact", "--scheduler", "tcp://127.0.0.1:9", "-o", str(tmp_path / "a.jsonl")),
        ("bench", "--spaces", str(tmp_path / "spaces.jsonl"), "-o", str(tmp_path / "b.jsonl")),
        ("bench", "--spaces", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "c.jsonl")),
        ("bench", *SPACE, "--methods", "exact,nosuch", "-o", str(tmp_path / "d.jsonl")),
        ("bench", *SPACE, "--methods", "exact", "-o", str(tmp_path / "notrows.jsonl")),
    ]
    for args in cases:
        code, _, err = cli(*args)
        assert code == 2 and err.startswith("nasgen: error:") and err.count("\n") == 1, (args, err)
    for name in "abcd":
        assert not (tmp_path / f"{name}.jsonl").exists()
    assert json.loads((tmp_path / "notrows.jsonl").read_text().splitlines()[0]) == {"layers": 1}
