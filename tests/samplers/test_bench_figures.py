"""nasgen bench's table and figure: baseline first, interquartile ranges, one panel per space, formats."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nasgen.samplers.benchmark import bench_figure, default_baseline, markdown_table, plot_times, quartiles
from nasgen.space.definition import SearchSpace

from ..conftest import run_cli

SPACES = [SearchSpace((30, 30), (20, 20), 2, 2), SearchSpace((8, 8), (2, 2), 1, 3)]
# seconds per run (encode + solve), per space and method, four repeats each
TIMES = {
    0: {"uniwit": [0.30, 0.31, 0.45, 0.29], "exact": [0.001, 0.002, 0.0011, 0.0013], "limited": [0.09, 0.08, 0.1, 0.2]},
    1: {"uniwit": [0.9, 1.1, 0.95, 1.0], "exact": [0.002, 0.0021, 0.0019, 0.003], "limited": [0.12, 0.13, 0.14, 0.5]},
}


def _rows(samples=10, found=None):
    rows = []
    for index, by_method in TIMES.items():
        space = SPACES[index]
        for method, times in by_method.items():
            for repeat, seconds in enumerate(times):
                rows.append({"key": json.dumps([index, method, repeat]), "method": method, "space": space.describe(),
                             "space_dict": space.to_dict(), "seed": repeat, "repeat": repeat, "samples": samples,
                             "encode_s": seconds / 4, "solve_s": seconds * 3 / 4,
                             "found": samples if found is None else found, "stop": "samples", "adj_t": 1.0,
                             "check_p": 0.5})
    return rows


def test_quartiles_are_numpys_percentiles():
    rng = np.random.default_rng(0)
    for size in (1, 2, 3, 4, 7, 10):
        values = list(rng.exponential(size=size))
        assert quartiles(values) == pytest.approx(tuple(np.percentile(values, [25, 50, 75])))


def test_default_baseline_is_exact_when_it_runs():
    assert default_baseline(["uniwit", "limited", "exact"]) == "exact"
    assert default_baseline(["uniwit", "limited"]) == "uniwit"


def test_markdown_table_puts_the_baseline_first_and_gives_the_interquartile_range():
    table = markdown_table(_rows(), "exact").splitlines()
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header[3:5] == ["median time (s)", "time IQR: Q1-Q3 (s)"] and header[-1] == "time / exact"
    body = [[cell.strip() for cell in line.strip("|").split("|")] for line in table[2:]]
    spaces = sorted(s.describe() for s in SPACES)
    assert [(row[0], row[1]) for row in body] == [(s, m) for s in spaces for m in ("exact", "limited", "uniwit")]
    for row in body:
        times = TIMES[[s.describe() for s in SPACES].index(row[0])][row[1]]
        q1, median, q3 = np.percentile(times, [25, 50, 75])
        assert float(row[3]) == pytest.approx(median, rel=1e-2)
        low, high = row[4].split("-")
        assert float(low) == pytest.approx(q1, rel=1e-2) and float(high) == pytest.approx(q3, rel=1e-2)
    assert all(row[-1] == "1.00x" for row in body if row[1] == "exact")


def test_bench_figure_has_one_panel_per_space_titled_with_m_and_the_space():
    figure = bench_figure(_rows(samples=10))
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert len(axes) == len(SPACES)
    assert "M = 10" in figure.get_suptitle() and "interquartile range" in figure.get_suptitle()
    by_title = {}
    for ax in axes:
        title = ax.get_title()
        index = next(i for i, s in enumerate(SPACES) if s.describe() in title)
        assert "M = 10" in title
        by_title[index] = ax
        assert [t.get_text() for t in ax.get_xticklabels()] == ["exact", "limited", "uniwit"]
        assert ax.get_yscale() == "log"
    assert sorted(by_title) == [0, 1]
    for index, ax in by_title.items():
        # every line holds one point: nothing joins methods, let alone spaces
        points = [line.get_xydata() for line in ax.get_lines() if line.get_marker() == "o"]
        assert all(len(p) == 1 for p in points)
        medians = {int(p[0][0]): p[0][1] for p in points}
        for x, method in enumerate(("exact", "limited", "uniwit")):
            assert medians[x] == pytest.approx(np.median(TIMES[index][method]))
        # the error bars run from the first to the third quartile of that space's runs only
        bars = sorted((segment[0][0], segment[0][1], segment[1][1])
                      for container in ax.containers for segment in container[2][0].get_segments())
        expected = sorted((x, *np.percentile(TIMES[index][m], [25, 75])) for x, m in enumerate(("exact", "limited", "uniwit")))
        assert np.allclose(bars, expected)


def test_bench_figure_marks_runs_that_stopped_before_m():
    rows = _rows(samples=10)
    for row in rows:
        if row["method"] == "uniwit":
            row.update(found=3, stop="timeout")
    axes = [ax for ax in bench_figure(rows).axes if ax.get_visible()]
    notes = [text.get_text() for ax in axes for text in ax.texts]
    assert notes == ["timeout\n3 of 10"] * 2


@pytest.mark.parametrize("figure_format,magic", [("png", b"\x89PNG\r\n\x1a\n"), ("pdf", b"%PDF-"), ("svg", b"<?xml")])
def test_plot_times_writes_the_format(tmp_path, figure_format, magic):
    path = tmp_path / f"times.{figure_format}"
    plot_times(_rows(), path, figure_format)
    data = path.read_bytes()
    assert data.startswith(magic)
    if figure_format == "svg":
        assert b"<svg" in data[:1000]
    if figure_format == "pdf":
        assert data.rstrip().endswith(b"%%EOF")


def test_cli_two_spaces_baseline_first_and_a_pdf(tmp_path):
    spaces = tmp_path / "spaces.jsonl"
    spaces.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in SPACES))
    code, table, err = run_cli("bench", "--spaces", spaces, "--methods", "limited,exact", "-M", "5", "--repeats", "2",
                               "-o", tmp_path / "rows.jsonl", "--plot", tmp_path / "times", "--figure-format", "pdf",
                               "--markdown", tmp_path / "table.md")
    assert code == 0, err
    methods = [line.split("|")[2].strip() for line in table.splitlines()[2:]]
    assert methods == ["exact", "limited", "exact", "limited"] and "time / exact" in table
    assert (tmp_path / "times").read_bytes().startswith(b"%PDF-")
    assert (tmp_path / "table.md").read_text() == table


@pytest.mark.parametrize("extra,message", [
    (["--plot", "t.png", "--figure-format", "jpg"], "--figure-format"),
    (["--plot", "t.png", "--figure-format", "pdf"], "ends in .png but --figure-format is pdf"),
    (["--figure-format", "svg"], "give --plot too"),
])
def test_cli_bad_figure_format_is_one_line(tmp_path, extra, message):
    code, out, err = run_cli("bench", "-I", "8,8", "-O", "2,2", "-n", "1", "-N", "3", "--methods", "exact",
                             "-o", tmp_path / "rows.jsonl", *extra)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "rows.jsonl").exists()
