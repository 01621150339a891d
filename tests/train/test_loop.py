"""nasgen.train.loop: whole runs on the digits: outputs, resume after a kill, crash consistency, guards, logs, devices."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nasgen.common.errors import NasgenError, RunError
from nasgen.samplers.registry import sample
from nasgen.train import report
from nasgen.train.config import DIGITS_BASELINE, DIGITS_SPACE, RunOptions
from nasgen.train.loop import train

from .conftest import (
    ARCHS,
    ROOT,
    cli_main,
    run_numbers,
    run_quietly,
    snapshot,
    tiny_cli_args,
    tiny_config,
    without_timings,
)


def test_run_writes_log_reports_and_plots(uninterrupted):
    out, summary = uninterrupted
    records = report.read_log(out / "log.jsonl")
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for r in records:
        assert len(r["alpha"]) == len(r["test_accuracy"]) == len(r["train_loss"]) == 3
        assert sum(r["softmax_alpha"]) == pytest.approx(1.0)
        assert r["alpha_deviation"] == pytest.approx(report.alpha_deviation(r["alpha"]))
    assert "NaN" not in (out / "log.jsonl").read_text()
    assert summary["accuracies"] == records[-1]["test_accuracy"]
    assert json.loads((out / "summary.json").read_text()) == summary
    assert "| Baseline (c0) | digits |" in (out / "summary.md").read_text()
    for name in report.PLOT_FILES.values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Training did something: the mixture's loss fell and accuracies beat chance (0.1).
    assert records[-1]["mixture_train_loss"] < records[0]["mixture_train_loss"]
    assert max(summary["accuracies"]) > 0.3
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["baseline"] == DIGITS_BASELINE.to_dict() and config["architectures"] == ARCHS


def test_same_seed_same_numbers(uninterrupted, tmp_path, digits):
    out, _ = uninterrupted
    run_quietly(tiny_config(), tmp_path / "again", dataset=digits)
    assert run_numbers(tmp_path / "again") == run_numbers(out)
    # plots=False: the same summary, no PNG files.
    assert json.loads((tmp_path / "again" / "summary.json").read_text())["accuracies"] == \
        json.loads((out / "summary.json").read_text())["accuracies"]
    assert not list((tmp_path / "again").glob("*.png")) and len(list(out.glob("*.png"))) == len(report.PLOT_FILES)


_KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from nasgen.train.config import RunOptions, TrainConfig
    from nasgen.train.loop import train
    config = TrainConfig.from_dict({config!r})
    def die(record):
        if record["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, like a crash
    train(config, sys.argv[1], RunOptions(progress=False, plots=False, on_epoch_end=die))
    """
)


@pytest.mark.slow
def test_resume_after_kill_reproduces_the_uninterrupted_run(uninterrupted, tmp_path, digits):
    full, summary = uninterrupted
    out = tmp_path / "killed"
    script = _KILLED_RUN.format(config=tiny_config().to_dict())
    done = subprocess.run([sys.executable, "-c", script, str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    assert [r["epoch"] for r in report.read_log(out / "log.jsonl")] == [1, 2]
    assert not (out / "summary.json").exists()
    resumed = run_quietly(tiny_config(), out, resume=True, dataset=digits)
    assert run_numbers(out) == run_numbers(full)
    assert without_timings(resumed) == without_timings(summary)


def test_resume_drops_log_lines_past_the_checkpoint(uninterrupted, tmp_path, digits):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(uninterrupted[0], out)
    # As if the process died after logging epoch 3 but before its checkpoint landed.
    shutil.rmtree(out / "checkpoints" / "3")
    run_quietly(tiny_config(), out, resume=True, dataset=digits)
    assert run_numbers(out) == run_numbers(uninterrupted[0])


def test_output_dir_guards(uninterrupted, tmp_path, digits):
    out, _ = uninterrupted
    before = snapshot(out)
    with pytest.raises(RunError, match="already holds this run.*--resume"):
        run_quietly(tiny_config(), out, dataset=digits)
    with pytest.raises(RunError, match="holds a different run"):
        run_quietly(tiny_config(seed=8), out, dataset=digits)
    with pytest.raises(RunError, match="settings differ: seed"):
        run_quietly(tiny_config(seed=8), out, resume=True, dataset=digits)
    assert snapshot(out) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty and holds no nasgen run"):
        run_quietly(tiny_config(), other, dataset=digits)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    with pytest.raises(RunError, match="no training run"):
        run_quietly(tiny_config(), tmp_path / "nothing", resume=True, dataset=digits)


def test_probability_mixing_runs(tmp_path, digits):
    summary = run_quietly(tiny_config(mixing="probabilities", epochs=1, optimizer="adamw"), tmp_path / "p", dataset=digits)
    assert 0.0 <= summary["mixture_accuracy"] <= 1.0 and len(summary["accuracies"]) == 3


@pytest.mark.slow
def test_digits_quick_run_quality(tmp_path):
    """The README's quick run: the best network reaches 0.9 test accuracy on the 8x8 digits.

    Run as the README runs it, ``nasgen train`` in a process of its own, with
    XLA's default optimisation level: this test is bound by the steps' speed,
    not by compiling (conftest.py lowers the level for the others).
    """
    import os

    archs = tmp_path / "archs.jsonl"
    archs.write_text("".join(json.dumps(a.to_dict()) + "\n" for a in sample(DIGITS_SPACE, 3, seed=1, replace=False)))
    flags = os.environ.get("XLA_FLAGS", "").replace("--xla_backend_optimization_level=0", "").strip()
    done = subprocess.run([sys.executable, "-m", "nasgen", "train", "--architectures", str(archs), "--no-progress",
                           "--output-dir", str(tmp_path / "quick")], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, XLA_FLAGS=flags))
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "quick" / "summary.json").read_text())
    assert max(summary["accuracies"]) >= 0.9


# -- crash consistency: a failure at every boundary of an epoch's commit ----------------------


class _Crash(BaseException):
    """Stands for a kill: nothing in nasgen catches a BaseException it does not know."""


_BOUNDARIES = ("before-log", "torn-log", "after-log", "during-save", "after-save", "after-prune")


def _inject_crash(monkeypatch, tmp_path, boundary, epoch):
    """Make epoch ``epoch``'s commit fail at ``boundary`` (the commit writes log, checkpoint, then prunes)."""
    import shutil

    import nasgen.train.checkpoint as checkpoint
    import nasgen.train.rundir as rundir

    real_append, real_save, real_prune = report.append_log, checkpoint.save, rundir.Checkpoints.prune

    def append_log(path, record):
        if record["epoch"] == epoch and boundary == "before-log":
            raise _Crash
        if record["epoch"] == epoch and boundary == "torn-log":
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record)[:40])  # the line the kill tore
            raise _Crash
        real_append(path, record)
        if record["epoch"] == epoch and boundary == "after-log":
            raise _Crash

    def save(directory, step, state, **options):
        if step == epoch and boundary == "during-save":
            # What orbax leaves when killed mid-write: a partial temporary directory.
            scratch = tmp_path / "scratch"
            real_save(scratch, step, state, **options)
            partial = Path(directory).resolve() / f"{step}.orbax-checkpoint-tmp-1700000000"
            shutil.copytree(scratch / str(step), partial)
            for i, f in enumerate(sorted(p for p in partial.rglob("*") if p.is_file())):
                if i % 2 == 0:
                    f.unlink()
            raise _Crash
        saved = real_save(directory, step, state, **options)
        if step == epoch and boundary == "after-save":
            raise _Crash
        return saved

    def prune(self, newest):
        real_prune(self, newest)
        if newest == epoch and boundary == "after-prune":
            raise _Crash

    monkeypatch.setattr(report, "append_log", append_log)
    monkeypatch.setattr(checkpoint, "save", save)
    monkeypatch.setattr(rundir.Checkpoints, "prune", prune)


@pytest.mark.parametrize("epoch", [2, 3])
@pytest.mark.parametrize("boundary", _BOUNDARIES)
def test_a_failure_at_any_commit_boundary_resumes_to_the_uninterrupted_run(
    uninterrupted, tmp_path, digits, monkeypatch, boundary, epoch
):
    from nasgen.train.checkpoint import all_steps

    full, summary = uninterrupted
    out = tmp_path / "crashed"
    with monkeypatch.context() as patch:
        _inject_crash(patch, tmp_path, boundary, epoch)
        with pytest.raises(_Crash):
            run_quietly(tiny_config(), out, dataset=digits)
    assert not (out / "summary.json").exists()
    resumed = run_quietly(tiny_config(), out, resume=True, dataset=digits)
    assert run_numbers(out) == run_numbers(full)
    assert without_timings(resumed) == without_timings(summary)
    assert json.loads((out / "summary.json").read_text()) == resumed
    assert all_steps(out / "checkpoints") == all_steps(full / "checkpoints") == [2, 3]


def test_resume_redoes_an_epoch_whose_record_is_missing(uninterrupted, tmp_path, digits):
    """The issue's reproduction: checkpoints 2 and 3 on disk, the log cut after epoch 2."""
    import shutil

    out = tmp_path / "cut"
    shutil.copytree(uninterrupted[0], out)
    lines = (out / "log.jsonl").read_text().splitlines(keepends=True)
    (out / "log.jsonl").write_text("".join(lines[:2]))
    for name in ("summary.json", "summary.md"):
        (out / name).unlink()
    summary = run_quietly(tiny_config(), out, resume=True, dataset=digits)
    assert run_numbers(out) == run_numbers(uninterrupted[0])
    assert summary["epochs"] == 3 and without_timings(summary) == without_timings(uninterrupted[1])


# -- run-level bad input: one line, exit 2, nothing changed ----------------------------------


def _damage(kind, run_dir: Path):
    if kind == "checkpoint":
        for f in (run_dir / "checkpoints" / "3").rglob("*"):
            if f.is_file():
                f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    elif kind == "config-list":
        (run_dir / "config.json").write_text("[1, 2]\n")
    elif kind == "config-not-utf8":
        (run_dir / "config.json").write_bytes(b"\xff\xfe{\"config\": 1}")
    elif kind == "log-not-json":
        (run_dir / "log.jsonl").write_text("{\"epoch\": 1}\nnot json\n")
    elif kind == "log-no-epoch":
        lines = (run_dir / "log.jsonl").read_text().splitlines()
        record = json.loads(lines[1])
        del record["epoch"]
        (run_dir / "log.jsonl").write_text("\n".join([lines[0], json.dumps(record), lines[2]]) + "\n")


@pytest.mark.parametrize("kind", ["checkpoint", "config-list", "config-not-utf8", "log-not-json", "log-no-epoch"])
def test_resuming_a_damaged_run_is_one_line_and_changes_nothing(uninterrupted, tmp_path, capsys, kind):
    import shutil

    out = tmp_path / "damaged"
    shutil.copytree(uninterrupted[0], out)
    (out / "summary.json").unlink()  # so that the resume has work to do
    _damage(kind, out)
    before = snapshot(out)
    code, _, err = cli_main(["train", "--resume", str(out), "--no-progress", "--no-compile-cache"], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("nasgen: error:"), err
    assert snapshot(out) == before


def test_new_run_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    args = tiny_cli_args(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    cases = [
        (["--output-dir", str(blocker / "run")], "which is a file"),
        (["--output-dir", str(blocker)], "is a file"),
        (["--output-dir", "/sys/nasgen-run"], "cannot create output directory"),
        (["--output-dir", str(tmp_path / "r"), "--space", "[8, 8]"], "--space: a search space must be a JSON object"),
        (["--output-dir", str(tmp_path / "r"), "--space", '{"input_shape": [8, 8]}'], "lacks output_shape"),
        (["--output-dir", str(tmp_path / "r"), "--width", "100000"], "GiB per device"),
        (["--output-dir", str(tmp_path / "r"), "--devices", "64"], "more than the"),
        (["--output-dir", str(tmp_path / "r"), "--devices", "0"], "positive integer"),
        (["--output-dir", str(tmp_path / "r"), "--seeds", "1,x"], "--seeds must be"),
        (["--output-dir", str(tmp_path / "r"), "--seeds", "1,1"], "each once"),
        (["--output-dir", str(tmp_path / "r"), "--seeds", "1,2"], "--seed or --seeds"),
        (["--output-dir", str(tmp_path / "r"), "--width-multiplier", "inf"], "width multiplier"),
        (["--output-dir", str(tmp_path / "r"), "--step-programs", "0"], "--step-programs must be an integer"),
        (["--output-dir", str(tmp_path / "r"), "--step-programs", "4"], "number of networks (3)"),
    ]
    for extra, message in cases:
        code, _, err = cli_main(args + extra, capsys)
        assert code == 2 and err.count("\n") == 1 and message in err, (extra, err)
    assert blocker.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "archs.jsonl"]


def test_non_finite_data_is_refused_and_divergence_fails(tmp_path, digits):
    import dataclasses

    poisoned = digits.train_images.copy()
    poisoned[3, 2, 2, 0] = np.nan
    with pytest.raises(NasgenError, match="non-finite training images"):
        run_quietly(tiny_config(), tmp_path / "nan", dataset=dataclasses.replace(digits, train_images=poisoned))
    assert not (tmp_path / "nan").exists()
    # Finite but enormous pixels overflow float32 inside the networks: the
    # run must fail in one line, not report alpha = NaN.
    huge = dataclasses.replace(digits, train_images=digits.train_images * np.float32(3e38))
    with pytest.raises(RunError, match="training diverged in epoch 1"):
        run_quietly(tiny_config(), tmp_path / "huge", dataset=huge)
    assert not (tmp_path / "huge" / "log.jsonl").read_text()
    assert not (tmp_path / "huge" / "checkpoints").exists()


# -- progress, logs and the recorded environment -----------------------------------------------


def test_epoch_lines_are_logged_and_compile_time_is_separate(uninterrupted, tmp_path, digits, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="nasgen.train.loop"):
        train(tiny_config(epochs=2), tmp_path / "logged", RunOptions(progress=None), dataset=digits)  # stderr is no terminal here
    lines = [r.getMessage() for r in caplog.records if r.name == "nasgen.train.loop"]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    records = report.read_log(tmp_path / "logged" / "log.jsonl")
    assert records[0]["compile_seconds"] >= 0 and records[1]["compile_seconds"] == 0
    assert all(r["images_per_second"] > 0 for r in records)


def test_config_records_data_versions_devices_and_times(uninterrupted, digits):
    import hashlib
    from datetime import datetime

    out, _ = uninterrupted
    stored = json.loads((out / "config.json").read_text())
    data = stored["dataset"]
    assert (data["name"], data["train_size"], data["test_size"], data["image_shape"]) == ("digits", 256, 100, [8, 8, 1])
    digest = hashlib.sha256()
    for array in (digits.train_images[:256], digits.train_labels[:256], digits.test_images[:100], digits.test_labels[:100]):
        digest.update(f"{array.dtype.str}{array.shape}".encode() + np.ascontiguousarray(array).tobytes())
    assert data["sha256"] == digest.hexdigest()
    assert stored["devices"] == 1
    session = stored["sessions"][-1]
    assert datetime.fromisoformat(session["ended"]) >= datetime.fromisoformat(session["started"])
    assert set(session["versions"]) >= {"nasgen", "jax", "flax", "optax"} and session["devices"] == 1


def test_summary_per_network_table(uninterrupted):
    from nasgen.nn.spec import ModelSpec
    from nasgen.nn.summary import model_stats

    out, summary = uninterrupted
    config = tiny_config()
    for entry, arch in zip(summary["per_network"], [config.baseline_architecture(), *config.generated_architectures()]):
        assert entry["architecture"] == arch.to_dict()
        total = model_stats(ModelSpec.from_options("chain", width=4), DIGITS_SPACE, arch)[-1]
        assert (entry["params"], entry["flops"]) == (total["params"], total["flops"])
        assert entry["accuracy_low"] <= entry["accuracy"] <= entry["accuracy_high"]
    md = (out / "summary.md").read_text()
    assert "| Network | Architecture (kernel/stride per layer) | Parameters | FLOPs / image |" in md
    assert "100 test images: one image is 0.0100 of accuracy" in md


# -- data parallelism over forced host devices --------------------------------------------------

_DEVICES_RUN = textwrap.dedent(
    """
    import json, os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax
    from nasgen.train.data import load_digits
    from nasgen.train.config import RunOptions, TrainConfig
    from nasgen.train.loop import train
    assert jax.device_count() == 4, jax.devices()
    config = TrainConfig.from_dict(json.loads(sys.argv[1]))
    data = load_digits()
    for n in (1, 2, 4):
        train(config, os.path.join(sys.argv[2], f"d{n}"), RunOptions(progress=False, plots=False, devices=n), dataset=data)
    # The step split into programs, sharded the same way.
    train(config, os.path.join(sys.argv[2], "d4s"), RunOptions(progress=False, plots=False, devices=4, step_programs=3),
          dataset=data)
    # The whole test set (359 images, odd) on 2 devices, then 1 device from the same step cache (issue 32: the
    # evaluation died on an indivisible batch, and a 1-device run after a 2-device one died on the cached step).
    whole = TrainConfig.from_dict(dict(json.loads(sys.argv[1]), test_limit=None, epochs=1))
    cache = os.path.join(sys.argv[2], "cache")
    for n in (2, 1):
        train(whole, os.path.join(sys.argv[2], f"w{n}"),
              RunOptions(progress=False, plots=False, devices=n, compilation_cache=cache), dataset=data)
    """
)


@pytest.mark.slow
def test_one_two_and_four_devices_give_the_same_numbers(tmp_path):
    config = tiny_config(epochs=2)
    done = subprocess.run([sys.executable, "-c", _DEVICES_RUN, json.dumps(config.to_dict()), str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = {n: run_numbers(tmp_path / f"d{n}") for n in (1, 2, 4, "4s")}
    for n in (2, 4, "4s"):
        assert json.loads((tmp_path / f"d{n}" / "config.json").read_text())["devices"] == (4 if n == "4s" else n)
        for one, many in zip(runs[1], runs[n]):
            assert one["epoch"] == many["epoch"]
            for key in ("alpha", "train_loss", "softmax_alpha"):
                np.testing.assert_allclose(many[key], one[key], rtol=1e-4, atol=1e-5, err_msg=f"{key}, {n} devices")
            np.testing.assert_allclose(many["mixture_train_loss"], one["mixture_train_loss"], rtol=1e-4)
            # Accuracies are counts of 100 test images: a logit that ties
            # within float error may flip one image.
            np.testing.assert_allclose(many["test_accuracy"], one["test_accuracy"], atol=0.011)
    whole = {n: run_numbers(tmp_path / f"w{n}") for n in (1, 2)}
    assert json.loads((tmp_path / "w1" / "summary.json").read_text())["test_size"] == 359
    np.testing.assert_allclose(whole[2][0]["train_loss"], whole[1][0]["train_loss"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(whole[2][0]["test_accuracy"], whole[1][0]["test_accuracy"], atol=1 / 359 + 1e-9)
