"""nasgen bench: rows, resume, medians with ratios, the plot, local processes and a Dask LocalCluster."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nasgen.samplers.benchmark import BenchRun, read_rows, run_sweep
from nasgen.space.definition import SearchSpace

from ..conftest import run_cli

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


def test_torn_last_line_is_cut_before_appending(tmp_path):
    space = SearchSpace((30,), (20,), 2, 2).to_dict()
    runs = [BenchRun(space=space, method="exact", seed=s, repeat=s, samples=5) for s in range(3)]
    out = tmp_path / "rows.jsonl"
    run_sweep(runs[:2], out)
    first, second = out.read_text().splitlines()
    out.write_text(first + "\n" + second[:25])  # killed in the middle of the second row
    notices = []
    rows = run_sweep(runs, out, notice=notices.append)
    assert len(notices) == 1 and "cut a torn last line (25 bytes)" in notices[0]
    # every line is a whole row: the torn bytes are gone, nothing was glued onto them
    lines = out.read_text().splitlines()
    assert lines[0] == first and len(lines) == 3 and all(json.loads(line)["key"] for line in lines)
    assert sorted(r["seed"] for r in rows) == [0, 1, 2]
    # and the run after that reads the file and has nothing left to do
    assert sorted(r["seed"] for r in run_sweep(runs, out, notice=notices.append)) == [0, 1, 2]
    assert len(notices) == 1 and out.read_text().splitlines() == lines


def test_row_missing_only_its_newline_is_kept(tmp_path):
    runs = [BenchRun(space=SearchSpace((30,), (20,), 2, 2).to_dict(), method="exact", seed=s, repeat=s, samples=5)
            for s in range(2)]
    out = tmp_path / "rows.jsonl"
    run_sweep(runs[:1], out)
    whole = out.read_text()
    out.write_text(whole.rstrip("\n"))
    code, _, err = cli("bench", "-I", "30", "-O", "20", "-n", "2", "--methods", "exact", "--repeats", "2", "-M", "5",
                       "-o", str(out))
    assert code == 0 and "newline" in err, err
    lines = out.read_text().splitlines()
    assert lines[0] == whole.rstrip("\n") and len(lines) == 2


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` and that run a multiprocessing worker (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through /proc (Linux)")
def test_workers_end_when_the_parent_is_killed(tmp_path):
    # runs long enough that the workers are busy when their parent dies
    command = [sys.executable, "-m", "nasgen", "bench", "-I", "224,224", "-O", "7,7", "-n", "3", "-N", "5",
               "--methods", "uniwit", "--repeats", "2", "-M", "100000", "--timeout", "60", "--jobs", "2",
               "-o", str(tmp_path / "rows.jsonl")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    parent = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        workers = []
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            workers = _children(parent.pid)
        assert len(workers) == 2, "the workers did not start"
        time.sleep(1.0)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [w for w in workers if _alive(w)]
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    for w in left:  # only ours, by id, so that a failure does not leave them running
        os.kill(w, signal.SIGKILL)
    assert not left, f"workers {left} outlived their parent"


def _listener(behaviour: str):
    """A listener on 127.0.0.1 that accepts and then sends garbage or says nothing: (port, stop)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()
    connections = []

    def serve():
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            connections.append(connection)
            if behaviour == "garbage":
                try:
                    connection.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + bytes(range(256)) * 64)
                except OSError:
                    pass
        for connection in connections:
            connection.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def close():
        stop.set()
        thread.join()

    return server.getsockname()[1], close


@pytest.mark.parametrize("behaviour", ["garbage", "silent"])
def test_scheduler_that_does_not_speak_dask(tmp_path, behaviour):
    port, close = _listener(behaviour)
    try:
        started = time.monotonic()
        code, _, err = cli("bench", *SPACE, "--methods", "exact", "--scheduler", f"tcp://127.0.0.1:{port}",
                           "-o", str(tmp_path / "rows.jsonl"))
        elapsed = time.monotonic() - started
    finally:
        close()
    assert code == 2 and err.startswith("nasgen: error: cannot reach the Dask scheduler") and err.count("\n") == 1, err
    assert elapsed < 30, elapsed  # bounded (about 5 s), not the 240 s a silent listener used to hold it
    assert not (tmp_path / "rows.jsonl").exists()


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
        ("bench", *SPACE, "--methods", "exact", "--scheduler", "ucx://127.0.0.1:1", "-o", str(tmp_path / "e.jsonl")),
        ("bench", "--spaces", str(tmp_path / "spaces.jsonl"), "-o", str(tmp_path / "b.jsonl")),
        ("bench", "--spaces", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "c.jsonl")),
        ("bench", *SPACE, "--methods", "exact,nosuch", "-o", str(tmp_path / "d.jsonl")),
        ("bench", *SPACE, "--methods", "exact", "-o", str(tmp_path / "notrows.jsonl")),
    ]
    for args in cases:
        code, _, err = cli(*args)
        assert code == 2 and err.startswith("nasgen: error:") and err.count("\n") == 1, (args, err)
    for name in "abcde":
        assert not (tmp_path / f"{name}.jsonl").exists()
    assert json.loads((tmp_path / "notrows.jsonl").read_text().splitlines()[0]) == {"layers": 1}
