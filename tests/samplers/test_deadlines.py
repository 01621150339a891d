"""Deadlines of exact rejection sampling and constrained counting; ``cnf -o``'s file mode.

No timing is asserted here (bench/bench_harden.py measures T + 2 s): a deadline already past must
stop the work after one batch, keep what was found, say why, and give bounds that hold.
"""

from __future__ import annotations

import os
import stat
import time

import numpy as np

from nasgen.constraints.constrained import ConstrainedSpace
from nasgen.constraints.language import evaluate_all_arrays, parse_where_all
from nasgen.samplers.registry import SamplingConfig, draw
from nasgen.space.definition import SearchSpace

from ..conftest import run_cli

# more restricted members than one enumeration batch (65536), so that a deadline can cut the enumeration
SPACE = SearchSpace((30, 30), (10, 10), 1, 4)
WHERE = ["sum(k[0]) + sum(k[1]) == 9"]


def exact_count() -> int:
    return ConstrainedSpace(SPACE, WHERE).count().count


def test_count_cut_by_the_deadline_gives_hard_bounds():
    constrained = ConstrainedSpace(SPACE, WHERE)
    truth = exact_count()
    result = constrained.count(deadline=time.monotonic())
    assert result.stop == "timeout" and not result.exact
    assert 0 < result.enumerated < result.restricted
    low, high = result.interval
    assert low <= truth <= high and high - low == result.restricted - result.enumerated
    assert result.to_dict()["stop"] == "timeout"


def test_estimate_cut_by_the_deadline_keeps_its_draws():
    constrained = ConstrainedSpace(SPACE, WHERE)
    truth = exact_count()
    result = constrained.count(enumerate_limit=0, draws=10**6, deadline=time.monotonic())
    assert result.stop == "timeout" and 0 < result.draws < 10**6
    low, high = result.interval
    assert low <= truth <= high  # the seeded draws' 95% interval holds here
    assert constrained.count(enumerate_limit=0, draws=65536).stop == "complete"


def test_rejection_sampling_stops_at_the_deadline_with_what_it_found():
    constrained = ConstrainedSpace(SPACE, WHERE)
    statistics = {}
    chunks = list(constrained.iter_sample_arrays(10**6, seed=3, replace=True, enumerate_limit=0,
                                                 statistics=statistics, deadline=time.monotonic()))
    assert statistics["stop"] == "timeout" and statistics["draws"] == 65536
    layers, kernel, stride = (np.concatenate(p) for p in zip(*chunks))
    assert 0 < len(layers) < 10**6 and len(layers) == statistics["accepted"]
    assert evaluate_all_arrays(parse_where_all(WHERE), layers, kernel, stride, SPACE).all()
    # the enumerate-and-filter path cannot draw uniformly before it knows every member: it stops with nothing
    statistics = {}
    assert list(constrained.iter_sample_arrays(5, statistics=statistics, enumerate_limit=10**7,
                                               deadline=time.monotonic())) == []
    assert statistics["stop"] == "timeout"


def test_exact_method_reports_the_timeout():
    config = SamplingConfig(method="exact", samples=10**6, seed=0, replace=True, timeout=1e-9, where=tuple(WHERE),
                            options={"max_draws": 10**9})
    with draw(SPACE, config) as run:
        found = sum(len(c[0]) for c in run.draw())
    assert run.stop_reason == "timeout" and found < 10**6 and "stop" not in run.statistics
    config = SamplingConfig(method="exact", samples=5, seed=0, where=tuple(WHERE))
    with draw(SPACE, config) as run:
        assert sum(len(c[0]) for c in run.draw()) == 5
    assert run.stop_reason == "complete"


def test_count_cli_says_it_stopped():
    code, out, err = run_cli("count", "-I", "30,30", "-O", "10,10", "-n", "1", "-N", "4", "--where", WHERE[0],
                             "--timeout", "1e-9")
    assert code == 0, err
    assert "not exact: stopped at the --timeout" in out and "certainly in [" in out
    code, _, err = run_cli("count", "-I", "30,30", "-O", "10,10", "-N", "4", "--where", WHERE[0], "--timeout", "-1")
    assert code == 2 and err.startswith("nasgen: error: --timeout") and err.count("\n") == 1


def test_cnf_output_keeps_an_existing_mode_and_uses_the_umask(tmp_path):
    target = tmp_path / "space.cnf"
    mask = os.umask(0o027)
    try:
        assert run_cli("cnf", "-I", "30", "-O", "20", "-N", "2", "-o", target)[0] == 0
        assert stat.S_IMODE(target.stat().st_mode) == 0o640
        target.chmod(0o604)
        assert run_cli("cnf", "-I", "30", "-O", "20", "-N", "2", "-o", target)[0] == 0
        assert stat.S_IMODE(target.stat().st_mode) == 0o604
        assert target.read_text().startswith("c nasgen cnf")
    finally:
        os.umask(mask)


def test_the_npz_writer_estimates_its_closing_time_and_sample_stops_in_time_to_write(tmp_path):
    from nasgen.space.arrays_io import ArchitectureWriter, read_arrays
    from nasgen.space.tables import SpaceTables

    space = SearchSpace((224, 224), (7, 7), 1, 5, rounding="floor")
    chunk = SpaceTables(space).sample_arrays(50000, seed=1, replace=True)
    with ArchitectureWriter(tmp_path / "a.npz") as npz, ArchitectureWriter(tmp_path / "a.jsonl") as jsonl:
        npz.write(*chunk)
        first = npz.closing_estimate()
        npz.write(*chunk)
        jsonl.write(*chunk)
        assert 0 < first < npz.closing_estimate() and jsonl.closing_estimate() == 0
    target = tmp_path / "t.npz"
    code, _, err = run_cli("sample", "-I", "224,224", "-O", "7,7", "-n", "1", "-N", "5", "--rounding", "floor",
                           "-M", "1000000000", "--with-replacement", "--timeout", "1", "-o", str(target))
    assert code == 0 and "stopped: timeout" in err
    written = int(err.split(" architectures")[0].split()[-1])
    assert written > 0 and len(read_arrays(target)[0]) == written
