"""nasgen.train.rundir: the resume rule against brute force, signals during a save, the directory lock."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nasgen.train import report

from .conftest import ROOT, cli_main, run_numbers, tiny_cli_args


def test_resume_epoch_agrees_with_a_brute_force_rule():
    from itertools import combinations

    from nasgen.train.rundir import resume_epoch

    # Independent statement: the largest checkpoint c such that the log starts
    # with exactly the records 1..c.
    for logged_count in range(5):
        logged = list(range(1, logged_count + 1))
        for size in range(4):
            for checkpoints in combinations(range(1, 5), size):
                expected = max([c for c in checkpoints if logged[:c] == list(range(1, c + 1))], default=0)
                assert resume_epoch(logged, checkpoints) == expected
    assert resume_epoch([1, 3], [1, 3]) == 1  # a gap in the log stops at the gap


# -- signals and concurrent runs, through the CLI in-process ----------------------------------


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_during_a_save_ends_in_one_line_and_resumes(uninterrupted, tmp_path, capsys, monkeypatch,
                                                             terminal_sigint, signum):
    import os
    import signal

    import nasgen.train.checkpoint as checkpoint
    from nasgen.train.checkpoint import all_steps

    real_save = checkpoint.save

    def save(directory, step, state, **options):
        if step == 2:
            os.kill(os.getpid(), getattr(signal, signum))  # arrives while orbax writes
        return real_save(directory, step, state, **options)

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "save", save)
        code, _, err = cli_main(tiny_cli_args(tmp_path) + ["--output-dir", str(out)], capsys)
    lines = [line for line in err.splitlines() if not line.startswith("nasgen: epoch ")]
    assert code == 130 and len(lines) == 1 and "interrupted" in lines[0] and "--resume" in lines[0], err
    assert "Traceback" not in err
    assert all_steps(out / "checkpoints") == [1, 2]  # the save finished before the signal acted
    assert [r["epoch"] for r in report.read_log(out / "log.jsonl")] == [1, 2]
    code, _, err = cli_main(["train", "--resume", str(out), "--no-progress", "--no-compile-cache"], capsys)
    assert code == 0, err
    assert run_numbers(out) == run_numbers(uninterrupted[0])


def test_a_second_run_into_a_locked_directory_is_refused(tmp_path, capsys):
    import fcntl

    from nasgen.train.rundir import LOCK_FILE

    out = tmp_path / "run"
    out.mkdir()
    with open(out / LOCK_FILE, "a") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds it
        code, _, err = cli_main(tiny_cli_args(tmp_path) + ["--output-dir", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1 and "another nasgen run is using" in err
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]


@pytest.mark.slow
def test_two_runs_started_at_once_one_wins(tmp_path):
    args = tiny_cli_args(tmp_path)
    args[args.index("--epochs") + 1] = "1"
    command = [sys.executable, "-m", "nasgen", *args, "--output-dir", str(tmp_path / "same")]
    runs = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = sorted((run.wait(timeout=600), run.stderr.read()) for run in runs)
    for run in runs:
        run.stdout.close(), run.stderr.close()
    (won, _), (lost, err) = results
    assert (won, lost) == (0, 2)
    assert err.count("\n") == 1 and err.startswith("nasgen: error:") and "Traceback" not in err
    assert [r["epoch"] for r in report.read_log(tmp_path / "same" / "log.jsonl")] == [1]
