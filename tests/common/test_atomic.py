"""Staged writes (nasgen.common.atomic): a killed writer's .part files go at the next run, a live writer's stay."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nasgen.common.atomic import StagedFile, remove_stale_staged_files, write_atomic

HOLD = """
import sys, time
from nasgen.common.atomic import StagedFile
staged = StagedFile(sys.argv[1])
staged.write("half of it")
print(staged.temp, flush=True)
time.sleep(600)
"""


def _parts(folder):
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


def _hold(target):
    """A live process with a staged file of ``target`` open; (process, its .part path)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def test_a_killed_writers_part_file_goes_and_a_live_writers_stays(tmp_path):
    target = tmp_path / "out.jsonl"
    live, live_part = _hold(target)
    killed, killed_part = _hold(target)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=60)
        (tmp_path / ".other.jsonl.abcd1234.part").write_text("another target's: never touched")
        (tmp_path / ".out.jsonl.x.abcd1234.part").write_text("the staged file of 'out.jsonl.x'")
        assert os.path.basename(killed_part) in _parts(tmp_path) and os.path.basename(live_part) in _parts(tmp_path)
        write_atomic(target, "new contents")  # a new run of the same target cleans up first
        assert target.read_text() == "new contents"
        assert _parts(tmp_path) == sorted([".other.jsonl.abcd1234.part", ".out.jsonl.x.abcd1234.part",
                                           os.path.basename(live_part)])
    finally:
        live.kill()
        live.communicate(timeout=60)
    assert [p.name for p in remove_stale_staged_files(target)] == [os.path.basename(live_part)]


def test_a_part_file_being_created_is_left_alone_until_it_is_old(tmp_path):
    target = tmp_path / "a.npz"
    fresh = tmp_path / ".a.npz.abcd1234.part.new"
    fresh.write_text("")
    assert remove_stale_staged_files(target) == [] and fresh.exists()
    old = time.time() - 120
    os.utime(fresh, (old, old))
    assert remove_stale_staged_files(target) == [fresh] and not fresh.exists()


def test_commit_and_discard_leave_no_part_file(tmp_path):
    staged = StagedFile(tmp_path / "x.txt")
    staged.write("abc")
    staged.commit()
    dropped = StagedFile(tmp_path / "y.txt")
    dropped.write("abc")
    dropped.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


@pytest.mark.slow
def test_kill_9_of_sample_then_a_new_run_leaves_no_part_file(tmp_path):
    target = tmp_path / "m.npz"
    args = [sys.executable, "-m", "nasgen", "sample", "-I", "224,224", "-O", "7,7", "-n", "1", "-N", "5",
            "--rounding", "floor"]
    proc = subprocess.Popen(args + ["-M", "100000000", "--with-replacement", "-o", str(target)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any(p.name.endswith(".part") for p in tmp_path.iterdir()):
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert any(p.name.endswith(".part") for p in tmp_path.iterdir()), "the run never staged its file"
    subprocess.run(args + ["-M", "10", "-o", str(target)], check=True, capture_output=True, timeout=120)
    assert _parts(tmp_path) == []
    with np.load(target) as npz:
        assert len(npz["layers"]) == 10
